"""Majority arithmetic over a set of voters (no joint consensus: one change at a time)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import Enum

__all__ = ["VoteResult", "committed_index", "majority", "vote_result"]


class VoteResult(Enum):
    """Outcome of an election so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(n_voters: int) -> int:
    """How many of ``n_voters`` make a quorum."""
    return n_voters // 2 + 1


def committed_index(voters: Collection[str], match_of: Callable[[str], int]) -> int:
    """The largest index that a quorum of ``voters`` has (0 with no voters)."""
    if not voters:
        return 0
    matches = sorted((match_of(v) for v in voters), reverse=True)
    return matches[majority(len(matches)) - 1]


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    """WON once a quorum granted, LOST once a quorum can no longer grant, else PENDING."""
    granted = rejected = 0
    for v in voters:
        vote = votes.get(v)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING
