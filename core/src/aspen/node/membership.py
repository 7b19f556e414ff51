"""Cluster membership details: who the members are and how to reach them.

Raft decides *who* votes (``ConfState``); the node also needs each member's peer and
client addresses, which travel in the ``context`` of the membership change that added it
and are stored beside the ``ConfState`` in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen.raft import decode_conf_change
from aspen.raft.types import ConfChange, ConfChangeType

__all__ = ["Member", "apply_member_change", "decode_tagged_conf_change", "member_context"]


@dataclass(frozen=True, slots=True)
class Member:
    """How to reach one member."""

    id: str
    peer: str
    client: str

    def to_json(self) -> dict[str, str]:
        """The stored / wire form."""
        return {"id": self.id, "peer": self.peer, "client": self.client}


def member_context(peer: str, client: str) -> bytes:
    """The ``context`` of an add-learner change: the new member's addresses."""
    return msgpack.packb({"peer": peer, "client": client})


def decode_tagged_conf_change(data: bytes) -> tuple[ConfChange, str, int, dict[str, Any]]:
    """CONF_CHANGE entry data -> (change, proposer id, proposer seq, member details); the
    change's context was tagged by the proposing node's driver."""
    change = decode_conf_change(data)
    origin, seq, context = msgpack.unpackb(change.context, raw=False)
    details = msgpack.unpackb(context, raw=False) if context else {}
    return change, origin, seq, details


def apply_member_change(raft_storage: Any, txn: Any, change: ConfChange, details: dict) -> None:
    """Record (or forget) a member's addresses as its membership change applies."""
    members = raft_storage.members(txn)
    if change.type == ConfChangeType.REMOVE:
        members.pop(change.node_id, None)
    elif change.type == ConfChangeType.ADD_LEARNER:
        peer, client = details.get("peer"), details.get("client")
        if not isinstance(peer, str) or not isinstance(client, str):
            raise InvalidArgumentError("a new member needs its peer and client addresses")
        members[change.node_id] = {"peer": peer, "client": client}
    raft_storage.set_members(txn, members)
