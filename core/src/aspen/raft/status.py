"""A snapshot of one node's Raft state, for operators, tests and the driver."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aspen.raft.types import ConfState, Role

__all__ = ["ProgressStatus", "Status"]


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """The leader's view of one member."""

    match: int
    next: int
    state: str  # "probe" | "replicate" | "snapshot"
    recent_active: bool
    is_learner: bool
    inflight: int
    paused: bool


@dataclass(frozen=True, slots=True)
class Status:
    """Term, vote, commit and applied marks, role, leader, configuration and progress."""

    id: str
    term: int
    vote: str | None
    commit: int
    applied: int
    last_index: int
    role: Role
    leader: str | None
    conf: ConfState
    #: Per member (including the leader itself); only filled in on the leader.
    progress: dict[str, ProgressStatus] = field(default_factory=dict)
    lead_transferee: str | None = None
    #: Whether this leader holds a read lease now (``read_only="lease"`` only): it answers
    #: reads without a heartbeat round.
    lease: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (roles as strings, tuples as lists)."""
        out = asdict(self)
        out["role"] = str(self.role)
        out["conf"] = {"voters": list(self.conf.voters), "learners": list(self.conf.learners)}
        return out
