"""The configuration in force, per-member progress, and the votes of an election.

Invariants: ``progress`` has exactly one entry per voter and learner of ``conf`` (a voter
is never also a learner), in sorted id order so iteration is deterministic; ``votes`` only
holds answers of the current election.
"""

from __future__ import annotations

from aspen.raft.progress import Inflights, Progress
from aspen.raft.quorum import VoteResult, committed_index, majority, vote_result
from aspen.raft.types import ConfState

__all__ = ["ProgressTracker"]


class ProgressTracker:
    """Who is a member, how far each member's log matches, and who voted how."""

    def __init__(self, max_inflight_msgs: int, max_inflight_bytes: int) -> None:
        self.max_inflight_msgs = max_inflight_msgs
        self.max_inflight_bytes = max_inflight_bytes
        self.conf = ConfState()
        self.voters: frozenset[str] = frozenset()
        self.learners: frozenset[str] = frozenset()
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}

    def _new_progress(self, next_index: int, *, is_learner: bool) -> Progress:
        inflights = Inflights(self.max_inflight_msgs, self.max_inflight_bytes)
        pr = Progress(next_index, inflights, is_learner=is_learner)
        pr.recent_active = True  # give a new member one check-quorum period to answer
        return pr

    def set_conf(self, conf: ConfState, next_index: int) -> None:
        """Switch to ``conf``: keep the progress of members that stay, start new ones."""
        self.conf = ConfState(tuple(sorted(conf.voters)), tuple(sorted(conf.learners)))
        self.voters = frozenset(self.conf.voters)
        self.learners = frozenset(self.conf.learners) - self.voters
        old = self.progress
        self.progress = {}
        for node in sorted(self.voters | self.learners):
            pr = old.get(node)
            if pr is None:
                pr = self._new_progress(next_index, is_learner=node in self.learners)
            pr.is_learner = node in self.learners
            self.progress[node] = pr
        self.votes = {v: g for v, g in self.votes.items() if v in self.voters}

    def reset_progress(self, next_index: int) -> None:
        """Fresh progress for everyone (a new leader knows nothing yet)."""
        self.progress = {
            node: self._new_progress(next_index, is_learner=pr.is_learner)
            for node, pr in self.progress.items()
        }

    def is_voter(self, node: str) -> bool:
        """Whether ``node`` votes in the current configuration."""
        return node in self.voters

    def committed(self) -> int:
        """The largest index a quorum of voters has in its log."""
        progress = self.progress
        return committed_index(self.voters, lambda v: progress[v].match)

    def quorum_active(self, self_id: str) -> bool:
        """Whether a quorum of voters was heard from recently (this node counts itself)."""
        active = sum(
            1
            for v in self.voters
            if v == self_id or (v in self.progress and self.progress[v].recent_active)
        )
        return bool(self.voters) and active >= majority(len(self.voters))

    def reset_votes(self) -> None:
        """Start a new election."""
        self.votes = {}

    def record_vote(self, node: str, granted: bool) -> None:
        """Remember ``node``'s first answer in this election."""
        if node in self.voters and node not in self.votes:
            self.votes[node] = granted

    def tally(self) -> VoteResult:
        """The election's outcome so far."""
        return vote_result(self.voters, self.votes)
