"""Checks on messages from peers: anything malformed is dropped before Raft sees it.

A peer sending garbage must never crash a node, so :func:`message_problem` looks at every
field Raft relies on (types, ranges, entry contiguity) and names the first problem. It
does not judge *staleness* (old terms, unknown senders): Raft itself handles those.
"""

from __future__ import annotations

from aspen.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotMeta,
)

__all__ = ["LOCAL_MESSAGE_TYPES", "message_problem"]

#: Message types only the local driver produces (reports about peers); never sent.
LOCAL_MESSAGE_TYPES = frozenset({MessageType.UNREACHABLE, MessageType.SNAPSHOT_STATUS})
_MESSAGE_TYPES = frozenset(MessageType)
_ENTRY_TYPES = frozenset(EntryType)
_INT_FIELDS = ("term", "log_term", "index", "commit", "reject_hint", "hint_term")


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _ids_problem(ids: object) -> str | None:
    if not isinstance(ids, tuple | list):
        return "node id list is not a sequence"
    for node in ids:
        if not isinstance(node, str) or not node:
            return "node ids must be non-empty strings"
    return None


def _entries_problem(m: Message) -> str | None:
    entries = m.entries
    if not isinstance(entries, tuple | list):
        return "entries is not a sequence"
    if not entries:
        return None
    if m.type != MessageType.APPEND:
        return f"{m.type} carries entries"
    expected, last_term = m.index + 1, m.log_term
    for entry in entries:
        if not isinstance(entry, Entry):
            return "an entry is not an Entry"
        if entry.index != expected:
            return f"entry index {entry.index} where {expected} was expected"
        if type(entry.term) is not int or entry.term < last_term or entry.term > m.term:
            return f"entry {entry.index} has term {entry.term!r} out of order"
        if entry.type not in _ENTRY_TYPES or not isinstance(entry.data, bytes):
            return f"entry {entry.index} has a bad type or data"
        expected, last_term = expected + 1, entry.term
    return None


def _snapshot_problem(m: Message) -> str | None:
    snap = m.snapshot
    if m.type != MessageType.SNAPSHOT:
        return None if snap is None else f"{m.type} carries a snapshot"
    if not isinstance(snap, SnapshotMeta):
        return "SNAPSHOT without snapshot metadata"
    if not _is_count(snap.index) or not _is_count(snap.term) or snap.index < 1 or snap.term < 1:
        return "snapshot index and term must be positive ints"
    if snap.term > m.term:
        return "snapshot term is past the message term"
    if not isinstance(snap.conf, ConfState):
        return "snapshot without a ConfState"
    return _ids_problem(snap.conf.voters) or _ids_problem(snap.conf.learners)


def message_problem(m: object, self_id: str) -> str | None:
    """What is wrong with ``m`` as a message to ``self_id`` (None when nothing is)."""
    if not isinstance(m, Message):
        return "not a Message"
    if m.type not in _MESSAGE_TYPES:
        return f"unknown message type {m.type!r}"
    if not isinstance(m.frm, str) or not m.frm or m.frm == self_id:
        return f"bad sender {m.frm!r}"
    if not isinstance(m.to, str) or m.to not in ("", self_id):
        return f"addressed to {m.to!r}, not to {self_id!r}"
    for name in _INT_FIELDS:
        if not _is_count(getattr(m, name)):
            return f"{name} must be a non-negative int"
    if not isinstance(m.reject, bool) or not isinstance(m.context, bytes):
        return "bad reject flag or context"
    if m.type in LOCAL_MESSAGE_TYPES:
        return None
    if m.term < 1:
        return "a peer message needs a term"
    if m.log_term > m.term:
        return "log_term is past the message term"
    return _entries_problem(m) or _snapshot_problem(m)
