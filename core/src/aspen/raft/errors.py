"""Errors raised by the Raft core to the local driver (never because of a peer's input).

These are deliberately not :class:`aspen.errors.AspenError`: the driver decides how each
one looks to a client (``not_leader`` with an address, ``unavailable``, ...).
"""

from __future__ import annotations

__all__ = [
    "CompactedError",
    "ConfChangeRefusedError",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftError",
    "UnavailableError",
]


class RaftError(Exception):
    """Base of every error the Raft core raises."""


class NotLeaderError(RaftError):
    """Only the leader accepts this; ``leader_hint`` is the leader this node knows of."""

    def __init__(self, leader_hint: str | None) -> None:
        where = f"the leader is {leader_hint}" if leader_hint else "no leader is known"
        super().__init__(f"this node is not the leader ({where})")
        self.leader_hint = leader_hint


class ProposalDroppedError(RaftError):
    """The leader refused the proposal for now (leadership transfer, too much uncommitted)."""


class ConfChangeRefusedError(RaftError):
    """A membership change that cannot be proposed now, or that would lose quorum."""


class CompactedError(RaftError):
    """Storage: the requested index is below the first one kept (it was compacted)."""


class UnavailableError(RaftError):
    """Storage: the requested index is past the last entry."""
