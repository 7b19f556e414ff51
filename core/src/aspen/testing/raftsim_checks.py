"""Raft's safety properties, checked incrementally while a simulation runs.

* Election safety: at most one leader per term.
* Log matching: every (index, term) that any node ever persisted has one payload and one
  predecessor term, so two logs holding the same (index, term) agree on everything
  before it.
* Leader completeness: when a node becomes leader of term T, its log holds every entry
  known to have been committed in a term before T (the commit term of an index is taken
  as the lowest term in which any node persisted a commit covering it, an upper bound).
* Committed entries never change: two nodes never see different entries committed at one
  index.
* State machine safety: no two nodes (nor one node before and after a restart) apply
  different entries at one index, each node applies indexes in order with no gap (a
  snapshot install jumps), and state machine snapshots taken at the same index are equal.

A violation raises :class:`SafetyViolation` at once, so the failing step is the current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aspen.raft import CompactedError, Entry, HardState, Role, SnapshotMeta, SoftState
from aspen.raft import UnavailableError as LogUnavailable

if TYPE_CHECKING:
    from aspen.testing.raftsim_node import KV, SimNode

__all__ = ["InvariantChecker", "SafetyViolation"]

_Payload = tuple[int, str, bytes]  # (term, entry type, data)


class SafetyViolation(AssertionError):
    """A Raft safety property does not hold."""


def _payload(entry: Entry) -> _Payload:
    return entry.term, str(entry.type), entry.data


class InvariantChecker:
    """Observes every node's driver and raises on the first broken property."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.log_entries: dict[tuple[int, int], tuple[str, bytes, int | None]] = {}
        self.committed: dict[int, _Payload] = {}
        self.commit_term: dict[int, int] = {}
        self.max_committed = 0
        self.applied: dict[int, _Payload] = {}
        self.state_at: dict[int, tuple[tuple[str, str], ...]] = {}
        self._commit_seen: dict[str, int] = {}
        self._checked_leader: set[tuple[str, int]] = set()
        self.elections = 0

    # ------------------------------------------------------------------ observer hooks
    def on_persist(self, node: SimNode, entries: tuple[Entry, ...]) -> None:
        """Log matching over newly persisted entries."""
        prev_term: int | None
        try:
            prev_term = node.storage.term(entries[0].index - 1)
        except (CompactedError, LogUnavailable):
            prev_term = None
        for entry in entries:
            key = (entry.index, entry.term)
            record = (str(entry.type), entry.data, prev_term)
            known = self.log_entries.get(key)
            if known is None:
                self.log_entries[key] = record
            elif known[:2] != record[:2] or (
                known[2] is not None and prev_term is not None and known[2] != prev_term
            ):
                raise SafetyViolation(
                    f"log matching: {node.id} persisted {key} as {record}, seen before as {known}"
                )
            prev_term = entry.term

    def on_hard_state(self, node: SimNode, hard_state: HardState) -> None:
        """Committed entries never change."""
        seen = self._commit_seen.get(node.id, 0)
        first = node.storage.first_index()
        for index in range(max(seen + 1, first), hard_state.commit + 1):
            try:
                entry = node.storage.entries(index, index + 1)[0]
            except (CompactedError, LogUnavailable):
                continue
            self._record_committed(node, index, _payload(entry))
        for index in range(max(seen + 1, first), hard_state.commit + 1):
            if self.commit_term.get(index, hard_state.term + 1) > hard_state.term:
                self.commit_term[index] = hard_state.term
        self._commit_seen[node.id] = max(seen, hard_state.commit)
        self.max_committed = max(self.max_committed, hard_state.commit)

    def _record_committed(self, node: SimNode, index: int, payload: _Payload) -> None:
        known = self.committed.setdefault(index, payload)
        if known != payload:
            raise SafetyViolation(
                f"committed entry changed: {node.id} has {payload} committed at {index}, "
                f"another node had {known}"
            )

    def on_apply(self, node: SimNode, entry: Entry) -> None:
        """State machine safety and in-order application."""
        if entry.index != node.applied + 1:
            raise SafetyViolation(
                f"{node.id} applied index {entry.index} right after {node.applied}"
            )
        payload = _payload(entry)
        known = self.applied.setdefault(entry.index, payload)
        if known != payload:
            raise SafetyViolation(
                f"state machine safety: {node.id} applied {payload} at {entry.index}, "
                f"another node applied {known}"
            )
        self._record_committed(node, entry.index, payload)

    def on_install(self, node: SimNode, meta: SnapshotMeta, kv: KV) -> None:
        """An installed snapshot equals what others had at that index."""
        self._check_state(node, meta.index, kv)

    def on_snapshot(self, node: SimNode, meta: SnapshotMeta, kv: KV) -> None:
        """A snapshot taken equals what others had at that index."""
        self._check_state(node, meta.index, kv)

    def _check_state(self, node: SimNode, index: int, kv: KV) -> None:
        state = tuple(sorted(kv.items()))
        known = self.state_at.setdefault(index, state)
        if known != state:
            raise SafetyViolation(
                f"{node.id}'s state machine at index {index} differs from another node's"
            )

    def on_soft_state(self, node: SimNode, soft: SoftState) -> None:
        """Role changes are checked by :meth:`check_node`."""
        self.check_node(node)

    # ------------------------------------------------------------------ per-step checks
    def check_node(self, node: SimNode) -> None:
        """Election safety and leader completeness for one live node."""
        raft = node.raw._raft
        if raft.role != Role.LEADER:
            return
        term = raft.term
        other = self.leaders.setdefault(term, node.id)
        if other != node.id:
            raise SafetyViolation(f"election safety: {other} and {node.id} both led term {term}")
        if (node.id, term) in self._checked_leader:
            return
        self._checked_leader.add((node.id, term))
        self.elections += 1
        log = raft.log
        start = log.first_index()
        for index in range(start, self.max_committed + 1):
            payload = self.committed.get(index)
            if payload is None or self.commit_term.get(index, term) >= term:
                continue
            if log.zero_term(index) != payload[0]:
                raise SafetyViolation(
                    f"leader completeness: {node.id} leads term {term} without the entry "
                    f"committed at {index} (term {payload[0]}); its log has term "
                    f"{log.zero_term(index)} there"
                )
