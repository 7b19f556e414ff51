"""Raft's durable state in LMDB: the log, hard state and membership, read by ``RawNode``
through the ``RaftStorage`` protocol and written by the driver inside its batch transaction.

Entries are stored through :class:`aspen.storage.log.Log` with a one-byte type prefix on
their data. LMDB is the readable copy; what makes entries and hard state durable is the
Raft-log WAL (:mod:`aspen.storage.wal`): :meth:`LmdbRaftStorage.persist` queues the same
changes there, the driver syncs it once per write cycle, and :meth:`attach_wal` redoes it
into LMDB when the node starts.

**The tail.** A write cycle that only persists entries and hard state (nothing to apply,
no snapshot) need not commit LMDB at all: :meth:`LmdbRaftStorage.defer` queues them to
the WAL and keeps them in memory (the *tail*, at most ``MAX_RAFT_TAIL_BYTES``), the cycle
syncs the WAL — its one fsync — and Raft reads the tail from memory. The driver's apply
batch (an LMDB write transaction it keeps open across cycles, see
``aspen.node.replicator``) takes the tail when it opens and again right before it commits
(:meth:`LmdbRaftStorage.flush_tail` with ``keep``: the entries stay readable from memory
until :meth:`commit_done`, as readers outside the batch see only committed LMDB). Until
that commit LMDB lags the WAL, which a restart redoes into it (``attach_wal``);
``lmdb_lags_wal`` says so to the driver's recovery from a failed commit.

The snapshot Raft sees is the state machine itself: LMDB always holds a consistent state
at ``applied_index``, so the snapshot position is (applied index, term) with the
membership stored beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lmdb
import msgpack

from aspen import limits
from aspen.errors import StorageCorruptError
from aspen.kv.state_machine import KVStateMachine
from aspen.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta
from aspen.storage import Storage
from aspen.storage.log import Log, LogCompactedError, LogEntry
from aspen.storage.space import SpaceGuard
from aspen.storage.wal import ENTRIES, HARD, Wal, WalRecord

__all__ = ["LmdbRaftStorage", "decode_entry", "encode_entry"]

_TYPE_BYTE = {EntryType.NORMAL: b"n", EntryType.CONF_CHANGE: b"c"}
_BYTE_TYPE = {ord(v): k for k, v in _TYPE_BYTE.items()}
_COMMIT_KEY = b"raft/commit"
_CONF_KEY = b"raft/conf"
_MEMBERS_KEY = b"cluster/members"
#: Meta key of the WAL generation (8 bytes BE), bumped by each snapshot install.
_WAL_GENERATION_KEY = b"wal/generation"


def encode_entry(entry: Entry) -> LogEntry:
    """Raft entry -> stored log entry."""
    return LogEntry(entry.index, entry.term, _TYPE_BYTE[entry.type] + entry.data)


def decode_entry(stored: LogEntry) -> Entry:
    """Stored log entry -> Raft entry."""
    return Entry(stored.index, stored.term, _BYTE_TYPE[stored.data[0]], stored.data[1:])


class LmdbRaftStorage:
    """The ``RaftStorage`` view of LMDB, plus the driver's write helpers."""

    def __init__(self, storage: Storage, log: Log, state_machine: KVStateMachine) -> None:
        self._storage = storage
        self._log = log
        self._sm = state_machine
        self._meta = storage.db("meta")
        #: Set by the driver while its cycle's write transaction is open.
        self.cycle_txn: lmdb.Transaction | None = None
        #: The Raft-log WAL once attached (:meth:`attach_wal`); None: LMDB alone.
        self.wal: Wal | None = None
        #: (term, vote) last queued to the WAL (None: write the next hard state).
        self._wal_vote: tuple[int, Any] | None = None
        #: The tail: entries (contiguous) and hard state in the WAL, not yet in LMDB.
        self._tail: list[LogEntry] = []
        self._tail_bytes = 0
        self._tail_hard: HardState | None = None
        #: How many entries at the head of the tail ``flush_tail(keep=True)`` wrote into
        #: the open write transaction: kept readable until :meth:`commit_done`.
        self._flushed = 0
        #: Whether the WAL holds something LMDB's last commit lacks (a tail was deferred
        #: since): a failed LMDB commit must then redo the WAL (``redo_wal``).
        self.lmdb_lags_wal = False

    @contextmanager
    def _reading(self) -> Iterator[lmdb.Transaction]:
        """The driver cycle's open write transaction when there is one (so Raft sees what
        this cycle already wrote), else a fresh read transaction."""
        if self.cycle_txn is not None:
            yield self.cycle_txn
        else:
            with self._storage.begin() as txn:
                yield txn

    # ------------------------------------------------------------------ RaftStorage (reads)
    def initial_state(self) -> tuple[HardState, ConfState]:
        """Hard state and membership as last persisted."""
        with self._reading() as txn:
            term, vote = self._log.get_hard_state(txn)
            raw = txn.get(_COMMIT_KEY, db=self._meta)
            commit = int(raw) if raw else 0
            return HardState(term, vote, commit), self.conf_state(txn)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in [lo, hi), at least one, bounded by ``max_bytes``."""
        from aspen.raft import CompactedError

        tail = self._tail  # once: ``commit_done`` may swap it from the cycle thread
        tail_lo = tail[0].index if tail else hi
        out: list[LogEntry] = []
        if lo < tail_lo:
            with self._reading() as txn:
                try:
                    out = self._log.entries(txn, lo, min(hi, tail_lo), max_bytes)
                except LogCompactedError as exc:
                    raise CompactedError(str(exc)) from None
            if not out or out[-1].index + 1 < min(hi, tail_lo):
                return [decode_entry(e) for e in out]  # stopped by max_bytes
        if hi > tail_lo:
            if hi > tail[-1].index + 1:
                raise ValueError(
                    f"log entries up to {hi - 1} requested, last index is {self.last_index()}"
                )
            size = sum(len(e.data) for e in out)
            for entry in tail[max(lo, tail_lo) - tail_lo : hi - tail_lo]:
                size += len(entry.data)
                if out and max_bytes is not None and size > max_bytes:
                    break
                out.append(entry)
        return [decode_entry(e) for e in out]

    def term(self, index: int) -> int:
        """Term of the entry at ``index`` (or of the snapshot position)."""
        from aspen.raft import CompactedError, UnavailableError

        tail = self._tail
        if tail and index >= tail[0].index:
            if index > tail[-1].index:
                raise UnavailableError(f"log entry {index} is not in the log yet")
            return tail[index - tail[0].index].term
        with self._reading() as txn:
            term = self._log.term(txn, index)
            if term is not None:
                return term
            if index < self._log.first_index(txn):
                applied, applied_term = self._applied(txn)
                if index == applied:
                    return applied_term
                raise CompactedError(f"log entry {index} was compacted")
            raise UnavailableError(f"log entry {index} is not in the log yet")

    def first_index(self) -> int:
        """First index still in the log."""
        with self._reading() as txn:
            return self._log.first_index(txn)

    def last_index(self) -> int:
        """Last index in the log (or the compacted position when it is empty)."""
        tail = self._tail
        if tail:
            return tail[-1].index
        with self._reading() as txn:
            return self._log.last_index(txn)

    def snapshot_meta(self) -> SnapshotMeta:
        """The state machine's own position: it is always a consistent snapshot."""
        with self._reading() as txn:
            return self.snapshot_meta_in(txn)

    def snapshot_meta_in(self, txn: lmdb.Transaction) -> SnapshotMeta:
        """The snapshot position as seen by ``txn``."""
        index, term = self._applied(txn)
        return SnapshotMeta(index, term, self.conf_state(txn))

    # ------------------------------------------------------------------ driver helpers
    def _applied(self, txn: lmdb.Transaction) -> tuple[int, int]:
        return self._sm.applied_index(txn), self._sm.applied_term(txn)

    def conf_state(self, txn: lmdb.Transaction) -> ConfState:
        """The membership as of the state machine's applied index."""
        raw = txn.get(_CONF_KEY, db=self._meta)
        if raw is None:
            return ConfState()
        voters, learners = msgpack.unpackb(raw, raw=False)
        return ConfState(tuple(voters), tuple(learners))

    def set_conf_state(self, txn: lmdb.Transaction, conf: ConfState) -> None:
        """Persist the membership (applied with the entry that changed it)."""
        txn.put(_CONF_KEY, msgpack.packb([list(conf.voters), list(conf.learners)]), db=self._meta)

    def members(self, txn: lmdb.Transaction) -> dict[str, dict[str, Any]]:
        """Per-member details (addresses, public key) by node id."""
        raw = txn.get(_MEMBERS_KEY, db=self._meta)
        return msgpack.unpackb(raw, raw=False) if raw else {}

    def set_members(self, txn: lmdb.Transaction, members: dict[str, dict[str, Any]]) -> None:
        """Persist per-member details."""
        txn.put(_MEMBERS_KEY, msgpack.packb(members, use_bin_type=True), db=self._meta)

    def persist(
        self, txn: lmdb.Transaction, hard_state: HardState | None, entries: tuple[Entry, ...]
    ) -> None:
        """Write hard state and new entries (replacing a conflicting suffix)."""
        self.flush_tail(txn)
        stored = [encode_entry(e) for e in entries]
        self._write(txn, hard_state, stored)
        self._queue_wal(hard_state, stored)

    def _write(
        self, txn: lmdb.Transaction, hard_state: HardState | None, stored: list[LogEntry]
    ) -> None:
        """Write ``stored`` entries (replacing a conflicting suffix) and hard state to LMDB."""
        if stored:
            first = stored[0].index
            if first <= self._log.last_index(txn):
                self._log.truncate_from(txn, first)
            self._log.append(txn, stored)
        if hard_state is not None:
            self._log.set_hard_state(txn, hard_state.term, hard_state.vote)
            txn.put(_COMMIT_KEY, str(hard_state.commit).encode(), db=self._meta)

    def _queue_wal(self, hard_state: HardState | None, stored: list[LogEntry]) -> None:
        """Queue ``stored`` entries and a term or vote change to the WAL (if attached)."""
        if self.wal is None:
            return
        if stored:
            self.wal.append_entries([(e.index, e.term, e.data) for e in stored])
        if hard_state is not None:
            vote = (hard_state.term, hard_state.vote)
            if vote != self._wal_vote:
                # the commit index need not be durable: only term and vote changes are
                self.wal.append_hard_state(hard_state.term, hard_state.vote, hard_state.commit)
                self._wal_vote = vote

    # ------------------------------------------------------------------ the tail
    def can_defer(self, entries: tuple[Entry, ...]) -> bool:
        """Whether :meth:`defer` may take ``entries``: a WAL is attached, they replace
        nothing LMDB holds, and the tail stays within ``MAX_RAFT_TAIL_BYTES``."""
        if self.wal is None:
            return False
        if entries:
            if entries[0].index <= self._lmdb_last_index():
                return False  # a conflicting suffix already in LMDB: truncate it there
            size = sum(len(e.data) + 1 for e in entries)
            if self._tail_bytes + size > limits.MAX_RAFT_TAIL_BYTES:
                return False
        return True

    def _lmdb_last_index(self) -> int:
        """Last log index LMDB holds (below the tail, if any)."""
        if self._tail:
            return self._tail[0].index - 1 + self._flushed
        with self._reading() as txn:
            return self._log.last_index(txn)

    def defer(self, hard_state: HardState | None, entries: tuple[Entry, ...]) -> None:
        """Persist like :meth:`persist`, to the WAL and the tail only (no LMDB write); only
        when :meth:`can_defer` said so. Durable once the WAL is synced."""
        stored = [encode_entry(e) for e in entries]
        if stored:
            first = stored[0].index
            if self._tail and first <= self._tail[-1].index:
                dropped = self._tail[first - self._tail[0].index :]
                self._tail_bytes -= sum(len(e.data) for e in dropped)
                del self._tail[first - self._tail[0].index :]
            self._tail.extend(stored)
            self._tail_bytes += sum(len(e.data) for e in stored)
            self.lmdb_lags_wal = True
        if hard_state is not None:
            self._tail_hard = hard_state
            self.lmdb_lags_wal = True
        self._queue_wal(hard_state, stored)

    def flush_tail(self, txn: lmdb.Transaction, *, keep: bool = False) -> None:
        """Write the tail into ``txn`` and forget it (LMDB holds it once ``txn`` commits;
        until then the WAL does, and ``lmdb_lags_wal`` stays set).

        ``keep``: keep its entries readable from memory until :meth:`commit_done` (or
        :meth:`abort_flush`), so a reader outside ``txn`` (e.g. on the event loop) finds them
        until it commits, and an aborted ``txn`` (disk full) leaves them in the tail."""
        if self._tail or self._tail_hard is not None:
            self._write(txn, self._tail_hard, self._tail[self._flushed :])
            if keep:
                self._tail_hard = None
                self._flushed = len(self._tail)
            else:
                self.drop_tail()

    def commit_done(self) -> None:
        """The transaction ``flush_tail(keep=True)`` wrote into committed: forget those
        entries (one swap of the list, which readers on the event loop take once)."""
        if self._flushed:
            done, self._tail = self._tail[: self._flushed], self._tail[self._flushed :]
            self._tail_bytes -= sum(len(e.data) for e in done)
            self._flushed = 0

    def abort_flush(self) -> None:
        """The transaction ``flush_tail(keep=True)`` wrote into was aborted: the kept
        entries are in the WAL and the tail only, as before."""
        self._flushed = 0

    def has_tail(self) -> bool:
        """Whether entries or hard state wait in the tail for an LMDB commit."""
        return bool(self._tail) or self._tail_hard is not None

    def drop_tail(self) -> None:
        """Forget the tail (written into LMDB, or redone there from the WAL)."""
        self._tail = []
        self._tail_bytes = 0
        self._tail_hard = None
        self._flushed = 0

    # ------------------------------------------------------------------ the WAL
    def attach_wal(self, wal: Wal) -> None:
        """Redo ``wal``'s newest segment into LMDB (durably), start a fresh segment, and
        queue every later ``persist`` to it. Raises :class:`StorageCorruptError` if the WAL
        is corrupt or newer than LMDB (see :mod:`aspen.storage.wal`)."""
        generation, records = wal.read()
        with self._storage.begin(write=True) as txn:
            ours = self.wal_generation(txn)
            if generation > ours:
                raise StorageCorruptError(
                    f"the Raft-log WAL in {wal.path} is of generation {generation}, but the "
                    f"LMDB environment only of {ours}: LMDB lost a commit it had flushed; "
                    "the node refuses to start",
                    path=str(wal.path),
                )
            if generation == ours:
                self._redo(txn, records, wal)
            self._wal_vote = self._log.get_hard_state(txn)
        wal.checkpoint(ours)
        self.wal = wal
        self.drop_tail()  # the redo wrote it into LMDB
        self.lmdb_lags_wal = False

    def redo_wal(self) -> None:
        """Redo the attached WAL into LMDB again (after an LMDB commit failed that the WAL
        had already made durable), as a restart would."""
        if self.wal is not None:
            self.attach_wal(self.wal)

    def _redo(self, txn: lmdb.Transaction, records: list[WalRecord], wal: Wal) -> None:
        """Redo ``records`` in order (LMDB may already hold some: redoing is idempotent)."""
        term, vote = self._log.get_hard_state(txn)
        raw = txn.get(_COMMIT_KEY, db=self._meta)
        commit = int(raw) if raw else 0
        unapplied = False
        for record in records:
            if record.type == ENTRIES:
                compacted = self._log.compacted(txn)[0]
                entries = [LogEntry(i, t, d) for i, t, d in record.payload if i > compacted]
                if not entries:
                    continue
                first, last = entries[0].index, self._log.last_index(txn)
                if first > last + 1:
                    unapplied = True  # a later record replaced the log below it
                    continue
                if first <= last:
                    self._log.truncate_from(txn, first)
                self._log.append(txn, entries)
                unapplied = False
            elif record.type == HARD:
                r_term, r_vote, r_commit = record.payload
                if r_term > term:
                    term, vote = r_term, r_vote
                elif r_term == term and vote is None:
                    vote = r_vote
                commit = max(commit, r_commit)
        if unapplied:
            raise StorageCorruptError(
                f"the Raft-log WAL in {wal.path} ends with entries that do not follow the "
                "log LMDB holds; the node refuses to start",
                path=str(wal.path),
            )
        self._log.set_hard_state(txn, term, vote)
        txn.put(_COMMIT_KEY, str(commit).encode(), db=self._meta)

    def wal_pending(self) -> bool:
        """Whether records wait in the WAL for :meth:`sync_wal`."""
        return self.wal is not None and self.wal.has_pending

    def sync_wal(self) -> None:
        """Make what this cycle queued to the WAL durable (one ``fdatasync``)."""
        if self.wal is not None:
            self.wal.sync()

    def discard_wal_pending(self) -> None:
        """The cycle failed before its sync: forget what it queued."""
        if self.wal is not None:
            self.wal.discard_pending()
            self._wal_vote = None

    def checkpoint_due(self, space: SpaceGuard) -> bool:
        """Whether the WAL grew enough since its last checkpoint to take one (by its bounds,
        or to half of the free disk space ``space`` last measured)."""
        if self.wal is None:
            return False
        return self.wal.checkpoint_due() or space.crowded_by(self.wal.bytes_since_checkpoint)

    def checkpoint_wal(self) -> None:
        """Start a new WAL segment and drop the old ones. Only once LMDB is flushed."""
        if self.wal is not None:
            with self._storage.begin() as txn:
                generation = self.wal_generation(txn)
            self.wal.checkpoint(generation)

    def wal_generation(self, txn: lmdb.Transaction) -> int:
        """The WAL generation LMDB is at (see :mod:`aspen.storage.wal`)."""
        raw = txn.get(_WAL_GENERATION_KEY, db=self._meta)
        return int.from_bytes(raw, "big") if raw else 0

    def bump_wal_generation(self, txn: lmdb.Transaction) -> None:
        """A snapshot replaces the log in ``txn``: older WAL segments must never be redone."""
        generation = self.wal_generation(txn) + 1
        txn.put(_WAL_GENERATION_KEY, generation.to_bytes(8, "big"), db=self._meta)

    def first_index_in(self, txn: lmdb.Transaction) -> int:
        """First index still in the log, read in the caller's transaction."""
        return self._log.first_index(txn)

    def compact(self, txn: lmdb.Transaction, upto: int) -> None:
        """Drop log entries up to ``upto`` (they are applied and no longer needed)."""
        upto = min(upto, self._log.last_index(txn))  # the tail is not in LMDB yet
        if upto >= self._log.first_index(txn):
            self._log.compact_to(txn, upto)

    def trim(self, txn: lmdb.Transaction, applied: int) -> None:
        """Compact the log behind ``applied`` once it outgrows its retention bounds
        (``LOG_RETAIN_ENTRIES`` entries, ``LOG_RETAIN_BYTES`` bytes), at most
        ``LOG_COMPACT_SLICE_ENTRIES`` entries per call (per write cycle): small steps
        instead of one long cycle that holds every write up."""
        applied = min(applied, self._log.last_index(txn))  # the tail is not in LMDB yet
        upto = self._log.retention_cut(
            txn, applied, limits.LOG_RETAIN_ENTRIES, limits.LOG_RETAIN_BYTES
        )
        if upto:
            first = self._log.first_index(txn)
            self._log.compact_to(txn, min(upto, first + limits.LOG_COMPACT_SLICE_ENTRIES - 1))

    def reset_log(self, txn: lmdb.Transaction, index: int, term: int) -> None:
        """After installing a snapshot at (index, term): start the log after it (the tail
        of the log it replaces is dropped)."""
        self.drop_tail()
        self._log.reset(txn, index, term)
