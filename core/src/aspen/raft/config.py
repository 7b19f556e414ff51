"""Tunables of one Raft node, with every default as a named constant.

Times are in *ticks*: the driver calls :meth:`aspen.raft.RawNode.tick` at a fixed interval
and Raft never reads a clock. Sizes are in bytes of entry payload plus
:data:`ENTRY_OVERHEAD_BYTES` per entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aspen import limits

__all__ = [
    "DEFAULT_ELECTION_TICK",
    "DEFAULT_HEARTBEAT_TICK",
    "DEFAULT_MAX_APPLY_BYTES_PER_READY",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_INFLIGHT_MSGS",
    "DEFAULT_MAX_SIZE_PER_MSG",
    "DEFAULT_MAX_UNCOMMITTED_BYTES",
    "ENTRY_OVERHEAD_BYTES",
    "MAX_PENDING_READ_REQUESTS",
    "Config",
    "ReadOnlyOption",
]

#: Ticks a follower waits without hearing from a leader before it campaigns; the actual
#: timeout is drawn from [election_tick, 2 * election_tick) after every reset. The one
#: source of truth is :data:`aspen.limits.RAFT_ELECTION_TICKS` (plain constants, no I/O).
DEFAULT_ELECTION_TICK = limits.RAFT_ELECTION_TICKS
#: Ticks between two heartbeats of a leader (:data:`aspen.limits.RAFT_HEARTBEAT_TICKS`).
DEFAULT_HEARTBEAT_TICK = limits.RAFT_HEARTBEAT_TICKS
#: Most bytes of entries in one APPEND message (at least one entry is always sent).
DEFAULT_MAX_SIZE_PER_MSG = 1024 * 1024
#: Most APPEND messages in flight (sent, unacknowledged) to one follower.
DEFAULT_MAX_INFLIGHT_MSGS = 256
#: Most bytes of entries in flight to one follower.
DEFAULT_MAX_INFLIGHT_BYTES = 8 * 1024 * 1024
#: Most bytes of proposed-but-uncommitted entries on a leader before proposals are dropped.
DEFAULT_MAX_UNCOMMITTED_BYTES = 64 * 1024 * 1024
#: Most bytes of committed entries handed to the driver in one ``Ready`` (at least one).
DEFAULT_MAX_APPLY_BYTES_PER_READY = 16 * 1024 * 1024
#: Bytes counted per entry on top of its data, for every size bound above.
ENTRY_OVERHEAD_BYTES = 16
#: Most ReadIndex requests a leader holds unanswered (more are dropped; the asker retries).
MAX_PENDING_READ_REQUESTS = 10_000

#: Most relative difference in tick rate (clock speed) between two nodes that lease reads
#: assume (0.1 = 10 %); see :mod:`aspen.raft.lease`.
DEFAULT_MAX_CLOCK_DRIFT = 0.1

ReadOnlyOption = Literal["safe", "lease"]


@dataclass(frozen=True, slots=True)
class Config:
    """Settings of one Raft node; :meth:`validate` explains what is wrong with bad ones."""

    id: str
    election_tick: int = DEFAULT_ELECTION_TICK
    heartbeat_tick: int = DEFAULT_HEARTBEAT_TICK
    max_size_per_msg: int = DEFAULT_MAX_SIZE_PER_MSG
    max_inflight_msgs: int = DEFAULT_MAX_INFLIGHT_MSGS
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    pre_vote: bool = True
    check_quorum: bool = True
    #: "safe": ReadIndex confirms leadership with a heartbeat round; "lease": the leader
    #: answers from its lease (needs ``check_quorum``; assumes bounded clock drift).
    read_only: ReadOnlyOption = "safe"
    #: The clock-drift bound lease reads assume (``read_only="lease"``): the lease lasts
    #: ``floor((election_tick - 1) / (1 + max_clock_drift))`` leader ticks.
    max_clock_drift: float = DEFAULT_MAX_CLOCK_DRIFT
    #: The index the state machine has applied (persisted); entries after it are handed
    #: out again as committed after a restart.
    applied: int = 0
    max_uncommitted_bytes: int = DEFAULT_MAX_UNCOMMITTED_BYTES
    max_apply_bytes_per_ready: int = DEFAULT_MAX_APPLY_BYTES_PER_READY

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("Config.id must be a non-empty string")
        if self.heartbeat_tick < 1:
            raise ValueError("Config.heartbeat_tick must be at least 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("Config.election_tick must be greater than heartbeat_tick")
        for name in (
            "max_size_per_msg",
            "max_inflight_msgs",
            "max_inflight_bytes",
            "max_uncommitted_bytes",
            "max_apply_bytes_per_ready",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be at least 1")
        if self.read_only not in ("safe", "lease"):
            raise ValueError('Config.read_only must be "safe" or "lease"')
        if self.read_only == "lease" and not self.check_quorum:
            raise ValueError('Config.read_only="lease" needs check_quorum=True')
        if not 0 <= self.max_clock_drift < 10:
            raise ValueError("Config.max_clock_drift must be in [0, 10)")
        if self.applied < 0:
            raise ValueError("Config.applied must not be negative")
