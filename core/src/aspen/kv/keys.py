"""Key helpers shared by the state machine and the client (no heavy imports here)."""

from __future__ import annotations

__all__ = ["prefix_end", "prefix_range"]


def prefix_end(prefix: bytes) -> bytes:
    """Return the range end that covers every key starting with ``prefix`` (etcd semantics).

    The prefix with its last byte below 0xff incremented and any trailing 0xff bytes dropped;
    ``b"\\0"`` (meaning "to the end of the keyspace") for an empty or all-0xff prefix.
    ``prefix_end(b"a/") == b"a0"``, ``prefix_end(b"a\\xff") == b"b"``.
    """
    for i in range(len(prefix) - 1, -1, -1):
        byte = prefix[i]
        if byte < 0xFF:
            return prefix[:i] + bytes((byte + 1,))
    return b"\0"


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """Return (key, end) covering every key that starts with ``prefix``; an empty prefix
    means the whole keyspace (``(b"\\0", b"\\0")``, as etcd spells it)."""
    if not prefix:
        return b"\0", b"\0"
    return prefix, prefix_end(prefix)
