"""Raft messages on the wire: ``Message`` <-> msgpack-able maps, with strict validation
(a peer sending garbage gets its message dropped, never a crash)."""

from __future__ import annotations

from typing import Any

from aspen.raft.types import ConfState, Entry, EntryType, Message, MessageType, SnapshotMeta

__all__ = ["message_from_wire", "message_to_wire"]

_INT_FIELDS = ("term", "log_term", "index", "commit", "reject_hint", "hint_term")


def message_to_wire(msg: Message) -> dict[str, Any]:
    """Encode a message, leaving out fields at their defaults."""
    out: dict[str, Any] = {"t": msg.type.value, "f": msg.frm, "to": msg.to}
    for name in _INT_FIELDS:
        value = getattr(msg, name)
        if value:
            out[name] = value
    if msg.reject:
        out["reject"] = True
    if msg.entries:
        out["e"] = [[e.index, e.term, e.type.value, e.data] for e in msg.entries]
    if msg.snapshot is not None:
        s = msg.snapshot
        out["snap"] = [s.index, s.term, list(s.conf.voters), list(s.conf.learners)]
    if msg.context:
        out["ctx"] = msg.context
    return out


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
    try:
        kind = MessageType(obj.get("t"))  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"unknown raft message type {obj.get('t')!r}") from None
    frm, to = obj.get("f"), obj.get("to")
    if not isinstance(frm, str) or not isinstance(to, str):
        raise ValueError("raft message needs string 'f' and 'to'")
    entries: tuple[Entry, ...] = ()
    raw_entries = obj.get("e", [])
    if not isinstance(raw_entries, list):
        raise ValueError("raft entries must be a list")
    if raw_entries:
        decoded = []
        for item in raw_entries:
            if not (isinstance(item, list) and len(item) == 4):
                raise ValueError("malformed raft entry")
            index, term, etype, data = item
            if not (isinstance(index, int) and isinstance(term, int) and isinstance(data, bytes)):
                raise ValueError("malformed raft entry")
            decoded.append(Entry(index, term, EntryType(etype), data))
        entries = tuple(decoded)
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
        **{name: _int(obj, name) for name in _INT_FIELDS},
    )
