"""What one request may read: keys visited, key-values returned and their bytes.

A :class:`ReadBudget` is charged while a command is applied (a txn's ranges and compares,
the ``prev_kv`` of deletes and puts) and while a read-only txn is answered. Its charges
depend only on the stored state and the request, so in ``apply`` every replica reaches the
same verdict: a request over a bound fails as a whole, with nothing applied, on all of them.

Bytes are counted as stored (the msgpack record: key, value, revisions, lease), or the key
alone for a ``keys_only`` range: cheap to measure without decoding, and within a small
per-record overhead of the answer's size.
"""

from __future__ import annotations

from aspen import limits
from aspen.errors import ResourceExhaustedError

__all__ = ["ReadBudget"]


class ReadBudget:
    """Counts one request's reads against MAX_TXN_SCAN_KEYS, MAX_RESPONSE_KVS and _KV_BYTES."""

    __slots__ = ("hint", "kv_bytes", "kvs", "visited")

    def __init__(self, hint: str) -> None:
        """``hint`` ends the error message: what the caller can do instead."""
        self.hint = hint
        self.visited = 0
        self.kvs = 0
        self.kv_bytes = 0

    def visit(self) -> None:
        """Count one key visited by a range or compare."""
        self.visited += 1
        if self.visited > limits.MAX_TXN_SCAN_KEYS:
            self._refuse(f"visits more than MAX_TXN_SCAN_KEYS ({limits.MAX_TXN_SCAN_KEYS}) keys")

    def take(self, size: int) -> None:
        """Count one key-value of ``size`` bytes put into the answer."""
        self.kvs += 1
        self.kv_bytes += size
        if self.kvs > limits.MAX_RESPONSE_KVS:
            self._refuse(
                f"would answer more than MAX_RESPONSE_KVS ({limits.MAX_RESPONSE_KVS}) key-values"
            )
        if self.kv_bytes > limits.MAX_RESPONSE_KV_BYTES:
            self._refuse(
                f"would answer more than MAX_RESPONSE_KV_BYTES ({limits.MAX_RESPONSE_KV_BYTES}) "
                "bytes of key-values"
            )

    def _refuse(self, what: str) -> None:
        raise ResourceExhaustedError(f"the request {what}; nothing was applied; {self.hint}")
