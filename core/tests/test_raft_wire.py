"""Raft messages on the wire: a round trip keeps every field; garbage is a ValueError."""

from __future__ import annotations

import pytest

from aspen.node.raft_wire import message_from_wire, message_to_wire
from aspen.raft.types import ConfState, Entry, EntryType, Message, MessageType, SnapshotMeta


def test_a_message_survives_the_round_trip() -> None:
    entries = (Entry(4, 2, EntryType.NORMAL, b"cmd"), Entry(5, 2, EntryType.CONF_CHANGE, b"cc"))
    for msg in (
        Message(
            type=MessageType.APPEND,
            frm="a",
            to="b",
            term=2,
            index=3,
            log_term=2,
            commit=3,
            entries=entries,
        ),
        Message(
            type=MessageType.APPEND_RESP,
            frm="b",
            to="a",
            term=2,
            index=9,
            reject=True,
            reject_hint=4,
            hint_term=1,
        ),
        Message(
            type=MessageType.SNAPSHOT,
            frm="a",
            to="b",
            term=2,
            snapshot=SnapshotMeta(7, 2, ConfState(("a", "b"), ("c",))),
        ),
        Message(type=MessageType.HEARTBEAT, frm="a", to="b", term=2, context=b"ctx"),
    ):
        assert message_from_wire(message_to_wire(msg)) == msg


@pytest.mark.parametrize(
    "garbage",
    [
        [],
        {"t": "nope", "f": "a", "to": "b"},
        {"t": ["unhashable"], "f": "a", "to": "b"},
        {"t": "app", "f": 1, "to": "b"},
        {"t": "app", "f": "a", "to": "b", "e": [[1, 1, "nope", b""]]},
        {"t": "app", "f": "a", "to": "b", "e": [[1, 1, {"un": "hashable"}, b""]]},
        {"t": "app", "f": "a", "to": "b", "e": [[1, 1, "normal", "not bytes"]]},
        {"t": "app", "f": "a", "to": "b", "term": -1},
    ],
)
def test_garbage_is_a_value_error(garbage) -> None:
    with pytest.raises(ValueError):
        message_from_wire(garbage)
