"""The Raft log as one node sees it: durable entries in storage plus an unstable tail.

Layout (indexes grow to the right)::

    storage:  [snapshot] first_index ............ last_index
    unstable:                        [snapshot?] offset ........ last
    marks:    applied <= applying <= committed <= last_index()

Invariants:

* ``unstable.entries[k].index == unstable.offset + k`` (contiguous) and, when the unstable
  part holds a snapshot, ``unstable.offset == snapshot.index + 1``.
* The unstable tail wins over storage where both have an index (it replaces the suffix).
* ``applied <= applying <= committed <= last_index()``; committed never decreases.
* Entries before ``offset_in_progress`` were handed to the driver in a ``Ready`` that has
  not been advanced yet; they are not handed out twice.
* Storage's last index is ``unstable.offset - 1`` (the driver persists exactly what each
  ``Ready`` says, replacing the suffix), so Raft never asks storage for it after start.
* ``stable`` holds copies of the newest durable entries (contiguous, ending at
  ``unstable.offset - 1``, none applied, at most ``RAFT_STABLE_CACHE_BYTES``): what storage
  holds at those indexes, so reads there skip storage.
"""

from __future__ import annotations

from collections.abc import Sequence

from aspen.limits import RAFT_STABLE_CACHE_BYTES
from aspen.raft.errors import CompactedError, UnavailableError
from aspen.raft.storage import RaftStorage, entry_size, limit_size
from aspen.raft.types import Entry, SnapshotMeta

__all__ = ["RaftLog", "Unstable", "entries_size"]


class Unstable:
    """Entries (and maybe a snapshot) not yet known to be durable."""

    __slots__ = ("entries", "offset", "offset_in_progress", "snapshot", "snapshot_in_progress")

    def __init__(self, offset: int) -> None:
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_in_progress = False
        self.entries: list[Entry] = []
        self.offset = offset
        self.offset_in_progress = offset

    def maybe_first_index(self) -> int | None:
        """First log index implied by a pending snapshot."""
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        """Last index held here, if any."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, index: int) -> int | None:
        """Term at ``index`` if this part knows it."""
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.index == index:
                return self.snapshot.term
            return None
        k = index - self.offset
        if k >= len(self.entries):
            return None
        return self.entries[k].term

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed to the driver."""
        k = self.offset_in_progress - self.offset
        return self.entries[k:] if k < len(self.entries) else []

    def next_snapshot(self) -> SnapshotMeta | None:
        """The snapshot, if not yet handed to the driver."""
        return None if self.snapshot_in_progress else self.snapshot

    def accept_in_progress(self) -> None:
        """Everything here has now been handed to the driver."""
        if self.entries:
            self.offset_in_progress = self.entries[-1].index + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable; forget them if still the same ones."""
        if index < self.offset or self.maybe_term(index) != term:
            return  # already stable, or replaced since the driver persisted them
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)

    def stable_snap_to(self, index: int) -> None:
        """The snapshot at ``index`` is installed."""
        if self.snapshot is not None and self.snapshot.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Replace everything with a snapshot received from the leader."""
        self.offset = snapshot.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snapshot
        self.snapshot_in_progress = False

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Append, replacing whatever is at ``entries[0].index`` and after."""
        first = entries[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif first <= self.offset:
            self.entries = list(entries)
            self.offset = first
            self.offset_in_progress = first
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(entries)
            self.offset_in_progress = min(self.offset_in_progress, first)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)``, all of which must be held here."""
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """Storage plus the unstable tail, with the commit and apply marks."""

    def __init__(self, storage: RaftStorage, max_apply_bytes: int) -> None:
        self.storage = storage
        self.max_apply_bytes = max_apply_bytes
        first, last = storage.first_index(), storage.last_index()
        self.unstable = Unstable(last + 1)
        #: The newest durable entries, not yet applied (see the module's invariants).
        self.stable: list[Entry] = []
        self.stable_bytes = 0
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1

    # ------------------------------------------------------------------ positions
    def first_index(self) -> int:
        """First index that has an entry (or could, right after a snapshot)."""
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        """Index of the last entry (storage's is ``unstable.offset - 1``: no I/O here)."""
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.unstable.offset - 1

    def term(self, index: int) -> int:
        """Term at ``index``; raises ``CompactedError`` / ``UnavailableError`` outside."""
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        stable = self.stable
        if stable and stable[0].index <= index < self.unstable.offset:
            return stable[index - stable[0].index].term
        if index > self.last_index():
            raise UnavailableError(f"log entry {index} is past the last ({self.last_index()})")
        if self.unstable.snapshot is not None:
            raise CompactedError(f"log entry {index} is covered by a pending snapshot")
        return self.storage.term(index)

    def zero_term(self, index: int) -> int:
        """Term at ``index``, or 0 when it is compacted or not there yet."""
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        """Term of the last entry."""
        return self.zero_term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        """Whether the entry at ``index`` has ``term``."""
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (last_index, term) is at least as up to date as ours."""
        ours = self.last_term()
        return term > ours or (term == ours and last_index >= self.last_index())

    def snapshot(self) -> SnapshotMeta:
        """The newest snapshot: a pending one, else storage's."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot_meta()

    # ------------------------------------------------------------------ reading entries
    def slice(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """Entries ``[lo, hi)`` within ``max_bytes`` (at least one when ``lo < hi``)."""
        offset = self.unstable.offset
        if lo >= offset or (self.stable and lo >= self.stable[0].index):
            return self._slice_in_memory(lo, hi, max_bytes)
        if lo < self.first_index():
            raise CompactedError(f"log entry {lo} was compacted")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"log entries up to {hi - 1} are past the last")
        if lo >= hi:
            return []
        ents: list[Entry] = []
        if lo < offset:
            upto = min(hi, offset)
            ents = self.storage.entries(lo, upto, max_bytes)
            if len(ents) < upto - lo:
                return ents  # the size bound stopped it
        if hi > offset:
            ents.extend(self.unstable.slice(max(lo, offset), hi))
            ents = limit_size(ents, max_bytes)
        return ents

    def _slice_in_memory(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """:meth:`slice` when ``lo`` is in ``stable`` or the unstable tail: no storage read
        (and no compaction check: storage compacts only applied entries, which these are
        not)."""
        if hi > self.last_index() + 1:
            raise UnavailableError(f"log entries up to {hi - 1} are past the last")
        if lo >= hi:
            return []
        offset = self.unstable.offset
        ents: list[Entry] = []
        if lo < offset:
            first = self.stable[0].index
            ents = self.stable[lo - first : hi - first]
        if hi > offset:
            ents.extend(self.unstable.slice(max(lo, offset), hi))
        return limit_size(ents, max_bytes)

    def entries_from(self, index: int, max_bytes: int | None) -> list[Entry]:
        """Entries from ``index`` to the end, within ``max_bytes``."""
        if index > self.last_index():
            return []
        return self.slice(index, self.last_index() + 1, max_bytes)

    def has_next_committed(self) -> bool:
        """Whether committed entries wait to be handed to the driver."""
        return self.unstable.snapshot is None and self.committed > self.applying

    def next_committed(self) -> list[Entry]:
        """Committed entries not yet handed to the driver (bounded per ``Ready``)."""
        if not self.has_next_committed():
            return []
        return self.slice(self.applying + 1, self.committed + 1, self.max_apply_bytes)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry whose term differs from ours (0: none differ)."""
        last = self.last_index()
        for entry in entries:
            if entry.index > last:
                return entry.index  # new from here on (``match_term`` would raise inside)
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i <= index and term(i) <= term: the back-off hint."""
        while index > 0:
            try:
                t = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # ------------------------------------------------------------------ changing the log
    def append(self, entries: Sequence[Entry]) -> int:
        """Append (replacing a conflicting uncommitted suffix); returns the last index."""
        if entries:
            first = entries[0].index
            if first <= self.committed:
                raise ValueError(f"append at {first} would overwrite the commit")
            if first < self.unstable.offset:  # replaces durable entries: forget their copies
                self._drop_stable_from(first)
            self.unstable.truncate_and_append(entries)
        return self.last_index()

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """Follower side of APPEND: the new last index, or None when (prev) does not match."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                return None  # a correct leader never rewrites committed entries
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        """Raise the commit mark (never lowers it, never past the last entry)."""
        if index > self.committed:
            if index > self.last_index():
                raise ValueError(f"commit {index} is past the last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if that entry is of ``term`` (the current-term rule)."""
        if index > self.committed and self.zero_term(index) == term:
            self.commit_to(index)
            return True
        return False

    def accept_applying(self, index: int) -> None:
        """Entries up to ``index`` were handed to the driver to apply."""
        self.applying = max(self.applying, index)

    def applied_to(self, index: int) -> None:
        """The driver applied everything up to ``index``."""
        if index > self.applied:
            self.applied = index
            self.applying = max(self.applying, index)
            stable = self.stable
            if stable and stable[0].index <= index:
                self._drop_stable_upto(index)

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Replace the log with a snapshot from the leader."""
        self.unstable.restore(snapshot)
        self.stable, self.stable_bytes = [], 0
        self.committed = snapshot.index

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable: they move to ``stable``."""
        unstable = self.unstable
        start = unstable.offset
        if index < start or unstable.maybe_term(index) != term:
            return  # already stable, or replaced since the driver persisted them
        moved = unstable.entries[: index + 1 - start]
        unstable.stable_to(index, term)
        stable = self.stable
        if stable and stable[-1].index + 1 != start:  # cannot happen: stay safe anyway
            stable.clear()
            self.stable_bytes = 0
        for entry in moved:
            if entry.index > self.applied:
                stable.append(entry)
                self.stable_bytes += entry_size(entry)
        if self.stable_bytes > RAFT_STABLE_CACHE_BYTES:  # keep the newest within the bound
            n = 0
            while self.stable_bytes > RAFT_STABLE_CACHE_BYTES and n < len(stable):
                self.stable_bytes -= entry_size(stable[n])
                n += 1
            del stable[:n]

    def _drop_stable_upto(self, index: int) -> None:
        """Forget the copies of entries up to ``index`` (applied)."""
        stable = self.stable
        n = min(index + 1 - stable[0].index, len(stable))
        self.stable_bytes -= sum(entry_size(e) for e in stable[:n])
        del stable[:n]

    def _drop_stable_from(self, index: int) -> None:
        """Forget the copies of entries from ``index`` on (a new leader replaces them)."""
        stable = self.stable
        if stable and index <= stable[-1].index:
            keep = max(0, index - stable[0].index)
            self.stable_bytes -= sum(entry_size(e) for e in stable[keep:])
            del stable[keep:]

    def stable_snap_to(self, index: int) -> None:
        """The snapshot at ``index`` is installed."""
        self.unstable.stable_snap_to(index)


def entries_size(entries: Sequence[Entry]) -> int:
    """Total bytes ``entries`` count for."""
    return sum(entry_size(e) for e in entries)
