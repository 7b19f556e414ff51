"""Which keys a KV request touches, and whether a token's ``kv:*`` prefixes cover them.

A request is reduced to *spans*: ``(operation, key, end)`` with etcd's range semantics
(``end`` ``None`` = the single key, ``b"\\0"`` = every key from ``key`` on). A span is
allowed when **one** capability's prefix holds the whole span (a span straddling two
granted prefixes is refused: ask for each part). A txn's compares are reads (they reveal
values), its puts and deletes writes, its ranges reads, nested txns likewise; one span
refused refuses the whole request.

Keys under :data:`RESERVED_PREFIX` (``/_aspen/``, the plugins' and the core's own state)
are covered only by a capability whose prefix itself starts there, never by ``kv:read:/``;
and :data:`TOKEN_STORE_PREFIX` (issued and revoked tokens) by no capability at all: only the
root token reaches it, so no scoped token can un-revoke itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from aspen.auth.capability import Capability
from aspen.kv import commands
from aspen.kv.keys import prefix_end

__all__ = [
    "RESERVED_PREFIX",
    "TOKEN_STORE_PREFIX",
    "Span",
    "first_outside",
    "key_allowed",
    "kv_prefixes",
    "kv_spans",
    "prefixes_for",
    "span_allowed",
]

#: Keys of the core's and the plugins' own state.
RESERVED_PREFIX = b"/_aspen/"
#: Keys of the token store (issued tokens, revocations): root only.
TOKEN_STORE_PREFIX = b"/_aspen/tokens/"

#: ``(operation, key, end)``: ``operation`` is ``read`` or ``write``.
Span = tuple[str, bytes, bytes | None]

_ALL = b"\x00"


#: A granted prefix with its range end (``b"\0"``: to the end of the keyspace).
_Prefix = tuple[bytes, bytes]


def _within(key: bytes, end: bytes | None, prefix: _Prefix) -> bool:
    """Whether the span ``[key, end)`` lies inside the keys starting with ``prefix``."""
    start, limit = prefix
    if not key.startswith(start):
        return False
    if end is None or limit == _ALL:
        return True
    return end != _ALL and end <= limit


def _touches(key: bytes, end: bytes | None, prefix: _Prefix) -> bool:
    """Whether the span ``[key, end)`` holds any key starting with ``prefix``."""
    start, limit = prefix
    if end is None:
        return key.startswith(start)
    return (limit == _ALL or key < limit) and (end == _ALL or end > start)


_TOKEN_STORE = (TOKEN_STORE_PREFIX, prefix_end(TOKEN_STORE_PREFIX))
_RESERVED = (RESERVED_PREFIX, prefix_end(RESERVED_PREFIX))


def kv_prefixes(caps: Iterable[Capability]) -> dict[str, tuple[_Prefix, ...]]:
    """The ``kv`` prefixes of ``caps`` (with their range ends) by operation: what
    :func:`span_allowed` takes."""
    out: dict[str, list[_Prefix]] = {}
    for cap in caps:
        if cap.resource == "kv":
            scope = cap.scope.encode()
            out.setdefault(cap.operation, []).append((scope, prefix_end(scope)))
    return {op: tuple(prefixes) for op, prefixes in out.items()}


def span_allowed(prefixes: dict[str, tuple[_Prefix, ...]], span: Span) -> bool:
    """Whether one of the ``kv:<operation>`` prefixes (:func:`kv_prefixes`) holds the span."""
    operation, key, end = span
    if _touches(key, end, _TOKEN_STORE):
        return False
    reserved = _touches(key, end, _RESERVED)
    for prefix in prefixes.get(operation, ()):
        if reserved and not prefix[0].startswith(RESERVED_PREFIX):
            continue
        if _within(key, end, prefix):
            return True
    return False


def key_allowed(prefixes: dict[str, tuple[_Prefix, ...]], operation: str, key: bytes) -> bool:
    """:func:`span_allowed` for one key (the hot path of gets and puts)."""
    if key.startswith(TOKEN_STORE_PREFIX):
        return False
    reserved = key.startswith(RESERVED_PREFIX)
    for start, _ in prefixes.get(operation, ()):
        if key.startswith(start) and (not reserved or start.startswith(RESERVED_PREFIX)):
            return True
    return False


def prefixes_for(operation: str, prefixes: Iterable[bytes]) -> dict[str, tuple[_Prefix, ...]]:
    """What :func:`kv_prefixes` gives for plain ``kv:<operation>`` prefixes (as a command
    carries them to the state machine)."""
    return {operation: tuple((p, prefix_end(p)) for p in prefixes)}


def first_outside(
    prefixes: dict[str, tuple[_Prefix, ...]], operation: str, keys: Iterable[bytes]
) -> bytes | None:
    """The first of ``keys`` that no ``kv:<operation>`` prefix covers, or ``None``."""
    for key in keys:
        if not key_allowed(prefixes, operation, key):
            return key
    return None


def _as_key(value: Any) -> bytes | None:
    """A key field as the handler will read it, or ``None`` if it is not a plain one."""
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode()
    return None


def kv_spans(method: str, params: dict[str, Any]) -> list[Span | str]:
    """The spans ``method`` (``kv.put`` …) would touch with ``params`` (and, for a txn that
    publishes events, the ``events:write:<name>`` capability of each); raises
    ``invalid_argument`` (as the handler would) when they are malformed.

    Single-key and range requests with plain ``bytes``/``str`` keys take a fast path: the
    handler validates the rest, and would touch exactly these keys if it accepts them."""
    if method != "kv.txn":
        key = _as_key(params.get("key"))
        raw_end = params.get("end")
        end = _as_key(raw_end) if raw_end is not None else None
        if key and (raw_end is None or end is not None):
            operation = "write" if method in _WRITES else "read"
            return [(operation, key, end or None)]
    if method == "kv.put":
        return [("write", commands.put_command(params)["key"], None)]
    if method == "kv.delete":
        cmd = commands.delete_command(params)
        return [("write", cmd["key"], cmd["end"])]
    if method == "kv.range":
        request = commands.range_request(params)
        return [("read", request.key, request.end)]
    if method == "kv.watch":
        watch = commands.watch_request(params)
        return [("read", watch.key, watch.end)]
    if method == "kv.txn":
        return list(_txn_spans(commands.txn_command(params)))
    raise ValueError(f"{method} is not a KV method with key scopes")


#: KV methods that write (their spans are ``write`` spans).
_WRITES = frozenset({"kv.put", "kv.delete"})


def _txn_spans(cmd: dict[str, Any]) -> Iterator[Span | str]:
    """Every span of a validated ``txn`` command, nested txns included; a ``publish`` op
    needs ``events:write:<name>``."""
    for compare in cmd["compare"]:
        yield ("read", compare["key"], compare["end"])
    for branch in ("success", "failure"):
        for op in cmd[branch]:
            kind = op["op"]
            if kind == "txn":
                yield from _txn_spans(op)
            elif kind == "range":
                yield ("read", op["key"], op["end"])
            elif kind == "publish":
                yield f"events:write:{op['name']}"
            else:
                yield ("write", op["key"], op.get("end"))
