"""Raft messages on the wire: ``Message`` <-> msgpack-able maps, with strict validation
(a peer sending garbage gets its message dropped, never a crash)."""

from __future__ import annotations

from typing import Any, TypeVar

from aspen.raft.types import ConfState, Entry, EntryType, Message, MessageType, SnapshotMeta

__all__ = ["message_from_wire", "message_to_wire"]

_E = TypeVar("_E", MessageType, EntryType)
_INT_FIELDS = ("term", "log_term", "index", "commit", "reject_hint", "hint_term")
#: Wire value -> enum member: a dict lookup, not an ``Enum(value)`` call (~1 µs) per
#: message and per entry.
_MESSAGE_TYPES = {t.value: t for t in MessageType}
_ENTRY_TYPES = {t.value: t for t in EntryType}


def message_to_wire(msg: Message) -> dict[str, Any]:
    """Encode a message, leaving out fields at their defaults. Entries go as
    ``[index, term, type, data]`` lists, their data (already msgpack) as bytes, never
    re-encoded; the enums go as the strings they are (``StrEnum``)."""
    out: dict[str, Any] = {"t": msg.type, "f": msg.frm, "to": msg.to}
    for name in _INT_FIELDS:
        value = getattr(msg, name)
        if value:
            out[name] = value
    if msg.reject:
        out["reject"] = True
    if msg.entries:
        out["e"] = [[e.index, e.term, e.type, e.data] for e in msg.entries]
    if msg.snapshot is not None:
        s = msg.snapshot
        out["snap"] = [s.index, s.term, list(s.conf.voters), list(s.conf.learners)]
    if msg.context:
        out["ctx"] = msg.context
    return out


def _member(members: dict[str, _E], value: Any) -> _E | None:
    """The enum member sent as ``value``, or None (also for an unhashable value)."""
    try:
        return members.get(value)
    except TypeError:
        return None


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"raft message field {name} must be a non-negative int")
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of node ids")
    return tuple(value)


def message_from_wire(obj: Any) -> Message:
    """Decode and validate a message; raises ``ValueError`` on anything malformed."""
    if not isinstance(obj, dict):
        raise ValueError("raft message must be a map")
    kind = _member(_MESSAGE_TYPES, obj.get("t"))
    if kind is None:
        raise ValueError(f"unknown raft message type {obj.get('t')!r}")
    frm, to = obj.get("f"), obj.get("to")
    if not isinstance(frm, str) or not isinstance(to, str):
        raise ValueError("raft message needs string 'f' and 'to'")
    raw_entries = obj.get("e")
    entries = _entries(raw_entries) if raw_entries is not None else ()
    snapshot = None
    if "snap" in obj:
        snap = obj["snap"]
        if not (isinstance(snap, list) and len(snap) == 4):
            raise ValueError("malformed snapshot metadata")
        if not (isinstance(snap[0], int) and isinstance(snap[1], int)):
            raise ValueError("malformed snapshot metadata")
        snapshot = SnapshotMeta(snap[0], snap[1], ConfState(_str_list(snap[2]), _str_list(snap[3])))
    context = obj.get("ctx", b"")
    if not isinstance(context, bytes):
        raise ValueError("raft message context must be bytes")
    return Message(
        type=kind,
        frm=frm,
        to=to,
        entries=entries,
        reject=bool(obj.get("reject", False)),
        snapshot=snapshot,
        context=context,
        term=_int(obj, "term"),
        log_term=_int(obj, "log_term"),
        index=_int(obj, "index"),
        commit=_int(obj, "commit"),
        reject_hint=_int(obj, "reject_hint"),
        hint_term=_int(obj, "hint_term"),
    )


def _entries(raw: Any) -> tuple[Entry, ...]:
    """The entries of an APPEND (``[index, term, type, data]`` lists); the per-entry checks
    are exact type tests, as msgpack gives exact types (Raft's validation checks the rest:
    contiguity, term order)."""
    if type(raw) is not list:
        raise ValueError("raft entries must be a list")
    kinds = _ENTRY_TYPES
    out = []
    for item in raw:
        if type(item) is not list or len(item) != 4:
            raise ValueError("malformed raft entry")
        index, term, etype, data = item
        kind = kinds.get(etype) if isinstance(etype, str) else None
        if kind is None or type(index) is not int or type(term) is not int:
            raise ValueError("malformed raft entry")
        if type(data) is not bytes:
            raise ValueError("malformed raft entry")
        out.append(Entry(index, term, kind, data))
    return tuple(out)
