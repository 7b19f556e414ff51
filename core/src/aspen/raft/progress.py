"""The leader's view of each follower: how far it matches, what to send next, flow control.

A follower's progress is in one of three states:

* ``probe``: the leader does not know where the logs match; it sends one APPEND and waits
  (``paused``) for the answer or the next heartbeat response before sending another.
* ``replicate``: the logs match up to ``match``; the leader streams APPENDs optimistically
  (``next`` runs ahead of ``match``), at most ``max_inflight_msgs`` messages and
  ``max_inflight_bytes`` bytes unacknowledged.
* ``snapshot``: the follower needs entries the leader compacted; a snapshot is on its way
  and nothing else is sent until the driver reports how it went.

Invariants: ``0 <= match < next``; in ``replicate`` the inflight window holds the last
index of every unacknowledged APPEND, ascending, all ``> match``.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(StrEnum):
    """How the leader replicates to one follower right now."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Sent but unacknowledged APPENDs to one follower, bounded in count and bytes."""

    __slots__ = ("_window", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._window: deque[tuple[int, int]] = deque()  # (last index, bytes)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._window)

    def full(self) -> bool:
        """Whether no more APPENDs may be sent until some are acknowledged."""
        return len(self._window) >= self.max_count or self.bytes >= self.max_bytes

    def add(self, last_index: int, size: int) -> None:
        """Record an APPEND ending at ``last_index`` carrying ``size`` bytes."""
        self._window.append((last_index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Forget every APPEND acknowledged by a match at ``index``."""
        window = self._window
        while window and window[0][0] <= index:
            self.bytes -= window.popleft()[1]

    def free_first(self) -> None:
        """Forget the oldest APPEND (it may have been lost)."""
        if self._window:
            self.bytes -= self._window.popleft()[1]

    def reset(self) -> None:
        """Forget everything."""
        self._window.clear()
        self.bytes = 0


class Progress:
    """Replication state of one follower (or learner), kept by the leader."""

    __slots__ = (
        "commit_sent",
        "inflights",
        "is_learner",
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: int, inflights: Inflights, *, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.paused = False  # probe: an APPEND is out, wait for its answer
        self.pending_snapshot = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = inflights
        #: The highest commit index sent in an APPEND or heartbeat to this follower:
        #: below the leader's commit, it has a commit notice due (``aspen.raft.leader``).
        self.commit_sent = 0

    def _reset_state(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Go back to probing from after ``match`` (or after a sent snapshot)."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream entries right after ``match``."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """A snapshot at ``snapshot_index`` is being sent; pause until it is reported."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, last_index: int | None, size: int) -> None:
        """Account an APPEND just sent (``last_index`` None when it carried no entries)."""
        if self.state == ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index, size)
        elif self.state == ProgressState.PROBE:
            self.paused = True

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to ``index``; False when that is old news."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.paused = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """An APPEND after ``rejected`` was refused; back off. False if the refusal is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.paused = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader should hold off sending APPENDs to this follower."""
        if self.state == ProgressState.PROBE:
            return self.paused
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
