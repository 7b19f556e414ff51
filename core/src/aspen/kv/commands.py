"""Validate client params (protocol.md) into internal commands and read requests.

Commands are plain msgpack-able dicts with an ``"op"`` field; they are what the proposer
puts into the log and what :meth:`KVStateMachine.apply` executes. Everything random or
time-based (lease ids) is decided here, by the proposer, and travels inside the command.
Invalid input raises :class:`~aspen.errors.InvalidArgumentError` naming the field and
the bound from :mod:`aspen.limits`.

Internal shapes::

    {"op": "put", "key": b, "value": b, "lease": int, "prev_kv": bool}
    {"op": "delete", "key": b, "end": b | None, "prev_kv": bool}
    {"op": "range", "key": b, "end": b | None, "limit": int, "revision": int,
     "keys_only": bool, "count_only": bool, "count": bool}       (inside a txn only;
        a command without "count", proposed before it existed, counts: it did then)
    {"op": "txn", "compare": [cmp], "success": [op], "failure": [op]}
        cmp = {"key": b, "end": b | None, "target": str, "op": str, "value": b | int}
    {"op": "publish", "name": str, "subject": str, "payload": b, "time": float}
        (inside a txn only: an event appended to the journal, see aspen.journal.commands)
    {"op": "compact", "revision": int}
    {"op": "lease_grant", "id": int, "ttl": int}
    {"op": "lease_revoke", "id": int, "writable": [b], "max_keys": int, "max_bytes": int}
        ("writable", when a capability token revokes: its kv:write prefixes; the apply
        refuses the command, deleting nothing, if any key it would delete lies outside
        them. With the bounds, a lease with more keys loses a slice and stays: the result
        says ``remaining`` and the proposer revokes again; a command without them, proposed
        before they existed, deletes every key)
    {"op": "lease_expire", "ids": [int], "max_keys": int, "max_bytes": int}
        (a command without the bounds, proposed before they existed, expires every id)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aspen import limits
from aspen.errors import InvalidArgumentError
from aspen.journal.commands import publish_op
from aspen.kv.keys import prefix_end

__all__ = [
    "COMPARE_OPS",
    "COMPARE_TARGETS",
    "WATCH_FILTERS",
    "RangeRequest",
    "WatchRequest",
    "compact_command",
    "delete_command",
    "is_read_only",
    "lease_expire_command",
    "lease_grant_command",
    "lease_id_param",
    "lease_revoke_command",
    "prefix_end",
    "put_command",
    "range_request",
    "txn_command",
    "watch_request",
]

#: Fields a compare may test.
COMPARE_TARGETS = frozenset({"value", "version", "create_revision", "mod_revision", "lease"})
#: Compare operators.
COMPARE_OPS = frozenset({"==", "!=", "<", ">"})
#: Watch filters (event types a watch does not want).
WATCH_FILTERS = frozenset({"noput", "nodelete"})

_MAX_I64 = 2**63 - 1
#: A deleted range: (key, end) with range end semantics.
_Span = tuple[bytes, bytes | None]
_TXN_OP_KINDS = ("put", "delete", "range", "txn", "publish")


# ---------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class RangeRequest:
    """A validated range read; ``limit`` 0 means ``DEFAULT_RANGE_LIMIT``.

    The total ``count`` of the range is computed only when asked for (``count`` or
    ``count_only``): it costs a read of the whole range, a page only what it returns.
    """

    key: bytes
    end: bytes | None = None
    limit: int = 0
    revision: int = 0
    keys_only: bool = False
    count_only: bool = False
    serializable: bool = False
    count: bool = False

    def to_command(self) -> dict[str, Any]:
        """The internal ``range`` op of a txn."""
        return {
            "op": "range",
            "key": self.key,
            "end": self.end,
            "limit": self.limit,
            "revision": self.revision,
            "keys_only": self.keys_only,
            "count_only": self.count_only,
            "count": self.count,
        }

    @classmethod
    def from_command(cls, op: dict[str, Any]) -> RangeRequest:
        """Rebuild from an internal ``range`` op."""
        return cls(
            op["key"],
            op["end"],
            op["limit"],
            op["revision"],
            op["keys_only"],
            op["count_only"],
            count=op.get("count", True),
        )


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """A validated watch: key range, start revision (0 = from now) and options."""

    key: bytes
    end: bytes | None = None
    start_revision: int = 0
    prev_kv: bool = False
    progress_notify: bool = False
    filters: frozenset[str] = frozenset()


def range_request(params: Any) -> RangeRequest:
    """Validate ``kv.range`` params."""
    p = _params(params, "range")
    return _range_request(p, "")


def watch_request(params: Any) -> WatchRequest:
    """Validate ``kv.watch`` params."""
    p = _params(params, "watch")
    filters = p.get("filters")
    if filters is None:
        filters = []
    if not isinstance(filters, list | tuple):
        raise InvalidArgumentError("filters must be a list of strings")
    for f in filters:
        if f not in WATCH_FILTERS:
            raise InvalidArgumentError(
                f"unknown watch filter {f!r}; known: {', '.join(sorted(WATCH_FILTERS))}"
            )
    return WatchRequest(
        key=_key(p, "key", ""),
        end=_end(p, ""),
        start_revision=_int(p, "start_revision", "", 0, 0, _MAX_I64),
        prev_kv=_bool(p, "prev_kv", ""),
        progress_notify=_bool(p, "progress_notify", ""),
        filters=frozenset(filters),
    )


# ---------------------------------------------------------------------------- commands
def put_command(params: Any) -> dict[str, Any]:
    """Validate ``kv.put`` params into a ``put`` command."""
    return _put(_params(params, "put"), "")


def delete_command(params: Any) -> dict[str, Any]:
    """Validate ``kv.delete`` params into a ``delete`` command."""
    return _delete(_params(params, "delete"), "")


def txn_command(params: Any) -> dict[str, Any]:
    """Validate ``kv.txn`` params into a ``txn`` command (bounds, nesting, duplicate keys)."""
    budget = _TxnBudget()
    cmd = _txn(_params(params, "txn"), "", 0, budget)
    for branch in ("success", "failure"):
        _check_duplicates(cmd[branch], f"{branch}")
    most = _answer_kvs(cmd)
    if most > limits.MAX_RESPONSE_KVS:
        raise InvalidArgumentError(
            f"the txn may answer up to {most} key-values (the limits of its ranges, 1 per "
            f"single-key read or prev_kv), over MAX_RESPONSE_KVS ({limits.MAX_RESPONSE_KVS}); "
            "give its ranges smaller limits, or read with kv.range outside the txn"
        )
    return cmd


def is_read_only(cmd: dict[str, Any]) -> bool:
    """True if a ``txn`` command only compares and reads (in both branches, nested txns
    included): it can be answered from a linearizable read, without entering the log."""
    return all(
        op["op"] == "range" or (op["op"] == "txn" and is_read_only(op))
        for branch in ("success", "failure")
        for op in cmd[branch]
    )


def compact_command(params: Any) -> dict[str, Any]:
    """Validate ``kv.compact`` params into a ``compact`` command."""
    p = _params(params, "compact")
    revision = _int(p, "revision", "", None, 1, _MAX_I64)
    return {"op": "compact", "revision": revision}


def lease_grant_command(params: Any, new_id: int) -> dict[str, Any]:
    """Validate ``lease.grant`` params; ``new_id`` (random, non-zero) is used when id is 0."""
    p = _params(params, "lease.grant")
    ttl = _int(p, "ttl", "", None, 1, limits.MAX_LEASE_TTL_SECONDS, "MAX_LEASE_TTL_SECONDS")
    lease_id = _int(p, "id", "", 0, 0, _MAX_I64) or new_id
    if not 0 < lease_id <= _MAX_I64:
        raise InvalidArgumentError(f"lease id must be in 1..{_MAX_I64}, got {lease_id}")
    return {"op": "lease_grant", "id": lease_id, "ttl": max(ttl, limits.MIN_LEASE_TTL_SECONDS)}


def lease_revoke_command(
    params: Any,
    writable: list[bytes] | None = None,
    *,
    max_keys: int | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Validate ``lease.revoke`` params into a ``lease_revoke`` command; ``writable``: the
    caller's ``kv:write`` prefixes (``None``: the root token, no check). One command deletes
    at most ``max_keys`` keys and ``max_bytes`` bytes (``LEASE_EXPIRY_SLICE_KEYS`` /
    ``LEASE_EXPIRY_SLICE_BYTES`` by default), as an expiry does: a lease with more loses
    them over several commands (the apply answers ``remaining``)."""
    command: dict[str, Any] = {
        "op": "lease_revoke",
        "id": lease_id_param(params),
        "max_keys": limits.LEASE_EXPIRY_SLICE_KEYS if max_keys is None else max_keys,
        "max_bytes": limits.LEASE_EXPIRY_SLICE_BYTES if max_bytes is None else max_bytes,
    }
    if writable is not None:
        command["writable"] = writable
    return command


def lease_expire_command(
    ids: list[int], *, max_keys: int | None = None, max_bytes: int | None = None
) -> dict[str, Any]:
    """The command expiring leases the node decided ran out (their keys are deleted): at
    most ``max_keys`` keys and ``max_bytes`` bytes (``LEASE_EXPIRY_SLICE_KEYS`` /
    ``LEASE_EXPIRY_SLICE_BYTES`` by default) per command; the rest go in later ones."""
    if len(ids) > limits.MAX_LEASES_EXPIRED_PER_COMMAND:
        raise InvalidArgumentError(
            f"{len(ids)} leases in one expiry, over MAX_LEASES_EXPIRED_PER_COMMAND "
            f"({limits.MAX_LEASES_EXPIRED_PER_COMMAND})"
        )
    for i in ids:
        if not _is_int(i) or not 0 < i <= _MAX_I64:
            raise InvalidArgumentError(f"lease id must be an integer in 1..{_MAX_I64}, got {i!r}")
    return {
        "op": "lease_expire",
        "ids": list(ids),
        "max_keys": limits.LEASE_EXPIRY_SLICE_KEYS if max_keys is None else max_keys,
        "max_bytes": limits.LEASE_EXPIRY_SLICE_BYTES if max_bytes is None else max_bytes,
    }


def lease_id_param(params: Any) -> int:
    """Validate the ``id`` of ``lease.revoke``/``keepalive``/``ttl`` params."""
    return _int(_params(params, "lease"), "id", "", None, 1, _MAX_I64)


# ---------------------------------------------------------------------------- fields
def _params(params: Any, method: str) -> dict[str, Any]:
    """Check that params are a map."""
    if not isinstance(params, dict):
        raise InvalidArgumentError(f"{method} params must be a map, got {type(params).__name__}")
    return params


def _is_int(v: Any) -> bool:
    """True for ints that are not bools."""
    return isinstance(v, int) and not isinstance(v, bool)


def _bytes(p: dict[str, Any], field: str, where: str, *, required: bool, key: bool) -> bytes:
    """A bytes (or UTF-8 str) field within MAX_KEY_BYTES (``key``) or MAX_VALUE_BYTES."""
    v = p.get(field)
    if type(v) is bytes and len(v) <= (limits.MAX_KEY_BYTES if key else limits.MAX_VALUE_BYTES):
        return v  # the common case
    name = where + field
    if v is None:
        if required:
            raise InvalidArgumentError(f"{name} is required")
        return b""
    if isinstance(v, str):
        v = v.encode()
    elif isinstance(v, (bytearray, memoryview)):
        v = bytes(v)
    elif not isinstance(v, bytes):
        raise InvalidArgumentError(f"{name} must be bytes or str, got {type(v).__name__}")
    bound, most = (
        ("MAX_KEY_BYTES", limits.MAX_KEY_BYTES)
        if key
        else ("MAX_VALUE_BYTES", limits.MAX_VALUE_BYTES)
    )
    if len(v) > most:
        raise InvalidArgumentError(f"{name} is {len(v)} bytes, over {bound} ({most})")
    return v


def _key(p: dict[str, Any], field: str, where: str) -> bytes:
    """A required, non-empty key of at most MAX_KEY_BYTES."""
    key = _bytes(p, field, where, required=True, key=True)
    if not key:
        raise InvalidArgumentError(f"{where}{field} must not be empty")
    return key


def _end(p: dict[str, Any], where: str) -> bytes | None:
    """An optional range end; nil or empty means the single key."""
    return _bytes(p, "end", where, required=False, key=True) or None


def _value(p: dict[str, Any], field: str, where: str) -> bytes:
    """A required value of at most MAX_VALUE_BYTES."""
    return _bytes(p, field, where, required=True, key=False)


def _int(
    p: dict[str, Any],
    field: str,
    where: str,
    default: int | None,
    lo: int,
    hi: int,
    bound: str = "",
) -> int:
    """An integer in [lo, hi] (``bound`` names hi's constant); required when no default."""
    name = where + field
    v = p.get(field)
    if v is None:
        if default is None:
            raise InvalidArgumentError(f"{name} is required")
        return default
    if not _is_int(v):
        raise InvalidArgumentError(f"{name} must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        named = f" ({bound})" if bound else ""
        raise InvalidArgumentError(f"{name} must be in {lo}..{hi}{named}, got {v}")
    return v


def _bool(p: dict[str, Any], field: str, where: str) -> bool:
    """An optional boolean (nil = false)."""
    v = p.get(field)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise InvalidArgumentError(f"{where}{field} must be a boolean, got {type(v).__name__}")
    return v


def _range_request(p: dict[str, Any], where: str) -> RangeRequest:
    """Validate range params (also inside a txn)."""
    return RangeRequest(
        key=_key(p, "key", where),
        end=_end(p, where),
        limit=_int(p, "limit", where, 0, 0, limits.MAX_RANGE_LIMIT, "MAX_RANGE_LIMIT")
        or limits.DEFAULT_RANGE_LIMIT,
        revision=_int(p, "revision", where, 0, 0, _MAX_I64),
        keys_only=_bool(p, "keys_only", where),
        count_only=_bool(p, "count_only", where),
        serializable=_bool(p, "serializable", where),
        count=_bool(p, "count", where),
    )


def _put(p: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate put params."""
    return {
        "op": "put",
        "key": _key(p, "key", where),
        "value": _value(p, "value", where),
        "lease": _int(p, "lease", where, 0, 0, _MAX_I64),
        "prev_kv": _bool(p, "prev_kv", where),
    }


def _delete(p: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate delete params."""
    return {
        "op": "delete",
        "key": _key(p, "key", where),
        "end": _end(p, where),
        "prev_kv": _bool(p, "prev_kv", where),
    }


# ---------------------------------------------------------------------------- txn
class _TxnBudget:
    """Counts ops and compares across a whole txn, nested ones included."""

    __slots__ = ("compares", "ops")

    def __init__(self) -> None:
        self.ops = 0
        self.compares = 0

    def add_ops(self, n: int, where: str) -> None:
        """Count ``n`` more ops."""
        self.ops += n
        if self.ops > limits.MAX_TXN_OPS:
            raise InvalidArgumentError(
                f"{where}: txn has more than MAX_TXN_OPS ({limits.MAX_TXN_OPS}) ops "
                "across all branches"
            )

    def add_compares(self, n: int, where: str) -> None:
        """Count ``n`` more compares."""
        self.compares += n
        if self.compares > limits.MAX_TXN_COMPARES:
            raise InvalidArgumentError(
                f"{where}compare: txn has more than MAX_TXN_COMPARES "
                f"({limits.MAX_TXN_COMPARES}) compares"
            )


def _list(p: dict[str, Any], field: str, where: str) -> list[Any]:
    """An optional list field (nil = empty)."""
    v = p.get(field)
    if v is None:
        return []
    if not isinstance(v, list | tuple):
        raise InvalidArgumentError(f"{where}{field} must be a list, got {type(v).__name__}")
    return list(v)


def _txn(p: dict[str, Any], where: str, depth: int, budget: _TxnBudget) -> dict[str, Any]:
    """Validate txn params at nesting ``depth`` (0 = the top-level txn)."""
    if depth > limits.MAX_TXN_DEPTH:
        raise InvalidArgumentError(
            f"{where.rstrip('.')}: txn nesting deeper than MAX_TXN_DEPTH ({limits.MAX_TXN_DEPTH})"
        )
    compares = _list(p, "compare", where)
    budget.add_compares(len(compares), where)
    cmd: dict[str, Any] = {
        "op": "txn",
        "compare": [_compare(c, f"{where}compare[{i}].") for i, c in enumerate(compares)],
    }
    for branch in ("success", "failure"):
        ops = _list(p, branch, where)
        budget.add_ops(len(ops), f"{where}{branch}")
        cmd[branch] = [
            _txn_op(op, f"{where}{branch}[{i}].", depth, budget) for i, op in enumerate(ops)
        ]
    return cmd


def _txn_op(op: Any, where: str, depth: int, budget: _TxnBudget) -> dict[str, Any]:
    """Validate one ``{"put"|"delete"|"range"|"txn": params}`` op."""
    if not isinstance(op, dict) or len(op) != 1 or next(iter(op)) not in _TXN_OP_KINDS:
        raise InvalidArgumentError(
            f"{where.rstrip('.')}: an op is a map with exactly one of {', '.join(_TXN_OP_KINDS)}"
        )
    kind, params = next(iter(op.items()))
    where = f"{where}{kind}."
    if not isinstance(params, dict):
        raise InvalidArgumentError(f"{where.rstrip('.')} params must be a map")
    if kind == "put":
        return _put(params, where)
    if kind == "delete":
        return _delete(params, where)
    if kind == "range":
        return _range_request(params, where).to_command()
    if kind == "publish":
        return publish_op(params, where)
    return _txn(params, where, depth + 1, budget)


def _compare(c: Any, where: str) -> dict[str, Any]:
    """Validate one compare."""
    if not isinstance(c, dict):
        raise InvalidArgumentError(f"{where.rstrip('.')} must be a map")
    target = c.get("target")
    if target not in COMPARE_TARGETS:
        raise InvalidArgumentError(
            f"{where}target {target!r} is unknown; known: {', '.join(sorted(COMPARE_TARGETS))}"
        )
    op = c.get("op")
    if op not in COMPARE_OPS:
        raise InvalidArgumentError(
            f"{where}op {op!r} is unknown; known: {', '.join(sorted(COMPARE_OPS))}"
        )
    value: bytes | int
    if target == "value":
        value = _value(c, "value", where)
    else:
        value = _int(c, "value", where, None, -_MAX_I64 - 1, _MAX_I64)
    return {
        "key": _key(c, "key", where),
        "end": _end(c, where),
        "target": target,
        "op": op,
        "value": value,
    }


def _answer_kvs(cmd: dict[str, Any]) -> int:
    """Most key-values a txn's answer can carry, as far as the request tells: a range its
    limit (1 for a single key), a put or single-key delete with prev_kv 1; the branch that
    answers more counts. A range delete's prev_kv is counted when applied."""
    most = 0
    for branch in ("success", "failure"):
        total = 0
        for op in cmd[branch]:
            kind = op["op"]
            if kind == "range" and not op["count_only"]:
                total += op["limit"] if op["end"] else 1
            elif kind in ("put", "delete") and op["prev_kv"] and not op.get("end"):
                total += 1
            elif kind == "txn":
                total += _answer_kvs(op)
        most = max(most, total)
    return most


def _check_duplicates(ops: list[dict[str, Any]], where: str) -> tuple[set[bytes], list[_Span]]:
    """Refuse a key put twice, or put and deleted, in one branch (etcd's ``checkIntervals``).

    Returns the keys put and the ranges deleted by the branch, nested txns included; puts
    of the two branches of one nested txn may overlap, as only one of them runs.
    """
    dels: list[_Span] = [(op["key"], op["end"]) for op in ops if op["op"] == "delete"]
    puts: set[bytes] = set()
    for op in ops:
        if op["op"] != "txn":
            continue
        then_puts, then_dels = _check_duplicates(op["success"], where)
        else_puts, else_dels = _check_duplicates(op["failure"], where)
        for key in then_puts:
            _refuse(key in puts or _deleted(dels, key), key, where)
        for key in else_puts:
            _refuse((key in puts and key not in then_puts) or _deleted(dels, key), key, where)
        puts |= then_puts | else_puts
        dels += then_dels + else_dels
    for op in ops:
        if op["op"] == "put":
            key = op["key"]
            _refuse(key in puts or _deleted(dels, key), key, where)
            puts.add(key)
    return puts, dels


def _deleted(dels: list[_Span], key: bytes) -> bool:
    """True if ``key`` falls in one of the deleted ranges."""
    for start, end in dels:
        if (key == start) if end is None else (start <= key and (end == b"\0" or key < end)):
            return True
    return False


def _refuse(duplicate: bool, key: bytes, where: str) -> None:
    """Raise etcd's duplicate-key error."""
    if duplicate:
        raise InvalidArgumentError(
            f"{where}: duplicate key given in txn request: {key!r} is put twice or put and deleted"
        )
