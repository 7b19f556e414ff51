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
    "kv_spans",
    "span_allowed",
]

#: Keys of the core's and the plugins' own state.
RESERVED_PREFIX = b"/_aspen/"
#: Keys of the token store (issued tokens, revocations): root only.
TOKEN_STORE_PREFIX = b"/_aspen/tokens/"

#: ``(operation, key, end)``: ``operation`` is ``read`` or ``write``.
Span = tuple[str, bytes, bytes | None]

_ALL = b"\x00"


def _within(key: bytes, end: bytes | None, prefix: bytes) -> bool:
    """Whether the span ``[key, end)`` lies inside the keys starting with ``prefix``."""
    if not key.startswith(prefix):
        return False
    if end is None:
        return True
    limit = prefix_end(prefix)
    if limit == _ALL:
        return True
    return end != _ALL and end <= limit


def _touches(key: bytes, end: bytes | None, prefix: bytes) -> bool:
    """Whether the span ``[key, end)`` holds any key starting with ``prefix``."""
    if end is None:
        return key.startswith(prefix)
    limit = prefix_end(prefix)
    return (limit == _ALL or key < limit) and (end == _ALL or end > prefix)


def span_allowed(caps: Iterable[Capability], span: Span) -> bool:
    """Whether one ``kv:<operation>`` capability of ``caps`` holds the whole span."""
    operation, key, end = span
    if _touches(key, end, TOKEN_STORE_PREFIX):
        return False
    reserved = _touches(key, end, RESERVED_PREFIX)
    for cap in caps:
        if cap.resource != "kv" or cap.operation != operation:
            continue
        prefix = cap.scope.encode()
        if reserved and not prefix.startswith(RESERVED_PREFIX):
            continue
        if _within(key, end, prefix):
            return True
    return False


def kv_spans(method: str, params: dict[str, Any]) -> list[Span]:
    """The spans ``method`` (``kv.put`` …) would touch with ``params``; raises
    ``invalid_argument`` (as the handler would) when they are malformed."""
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


def _txn_spans(cmd: dict[str, Any]) -> Iterator[Span]:
    """Every span of a validated ``txn`` command, nested txns included."""
    for compare in cmd["compare"]:
        yield ("read", compare["key"], compare["end"])
    for branch in ("success", "failure"):
        for op in cmd[branch]:
            kind = op["op"]
            if kind == "txn":
                yield from _txn_spans(op)
            elif kind == "range":
                yield ("read", op["key"], op["end"])
            else:
                yield ("write", op["key"], op.get("end"))
