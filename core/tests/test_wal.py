"""The Raft-log WAL on real files: torn tails are cut, corruption in the middle is a typed
error, checkpoints keep one bounded segment, and redoing it into LMDB restores the log and
hard state whatever LMDB already held (``aspen.storage.wal``, ``LmdbRaftStorage.attach_wal``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aspen import limits
from aspen.errors import StorageCorruptError
from aspen.kv.state_machine import KVStateMachine
from aspen.node.raft_storage import LmdbRaftStorage
from aspen.raft.types import Entry, EntryType, HardState
from aspen.storage import Storage
from aspen.storage.log import Log
from aspen.storage.wal import ENTRIES, HARD, Wal


def _entries(lo: int, hi: int, term: int = 1) -> list[tuple[int, int, bytes]]:
    return [(i, term, b"n" + f"entry-{i}".encode()) for i in range(lo, hi + 1)]


def _wal_with_batches(path: Path, batches: int) -> Wal:
    """A WAL with a header and ``batches`` synced batches of 3 entries each."""
    wal = Wal(path)
    wal.read()
    wal.checkpoint(0)
    for b in range(batches):
        wal.append_entries(_entries(3 * b + 1, 3 * b + 3))
        wal.sync()
    return wal


def _segment(wal: Wal) -> Path:
    (seg,) = wal.segments()
    return seg


def test_records_read_back_in_order(tmp_path: Path) -> None:
    wal = _wal_with_batches(tmp_path / "wal", 3)
    wal.append_hard_state(4, "n1", 7)
    wal.sync()
    wal.close()
    generation, records = Wal(tmp_path / "wal").read()
    assert generation == 0
    assert [r.type for r in records] == [ENTRIES, ENTRIES, ENTRIES, HARD]
    assert [e[0] for r in records[:3] for e in r.payload] == list(range(1, 10))
    assert records[3].payload == [4, "n1", 7]


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    wal = _wal_with_batches(tmp_path / "wal", 2)
    seg = _segment(wal)
    good = seg.stat().st_size
    wal.append_entries(_entries(7, 9))
    wal.sync()
    wal.close()
    data = seg.read_bytes()
    seg.write_bytes(data[: good + (len(data) - good) // 2])  # the last write cut short
    _, records = Wal(tmp_path / "wal").read()
    assert [e[0] for r in records for e in r.payload] == list(range(1, 7))
    assert seg.stat().st_size == good


def test_torn_tail_whose_later_pages_landed_is_still_a_tail(tmp_path: Path) -> None:
    """An unsynced batch of several records may reach the disk with a hole in it: the
    records after the hole are of the same batch, so it is a torn tail, not corruption."""
    wal = _wal_with_batches(tmp_path / "wal", 1)
    seg = _segment(wal)
    good = seg.stat().st_size
    limits_before = limits.WAL_RECORD_BYTES
    try:
        limits.WAL_RECORD_BYTES = 40  # one record per entry
        wal.append_entries(_entries(4, 6))
    finally:
        limits.WAL_RECORD_BYTES = limits_before
    wal.sync()
    wal.close()
    data = bytearray(seg.read_bytes())
    data[good + 20] ^= 0xFF  # the batch's first record is garbled, its others intact
    seg.write_bytes(bytes(data))
    _, records = Wal(tmp_path / "wal").read()
    assert [e[0] for r in records for e in r.payload] == [1, 2, 3]
    assert seg.stat().st_size == good


def test_corrupt_record_in_the_middle_is_a_typed_error(tmp_path: Path) -> None:
    wal = _wal_with_batches(tmp_path / "wal", 0)
    seg = _segment(wal)
    first_record = seg.stat().st_size
    for b in range(3):
        wal.append_entries(_entries(3 * b + 1, 3 * b + 3))
        wal.sync()
    wal.close()
    data = bytearray(seg.read_bytes())
    data[first_record + 20] ^= 0xFF  # the first batch's record; two synced batches follow
    seg.write_bytes(bytes(data))
    with pytest.raises(StorageCorruptError, match=r"corrupt at byte .*refuses to start"):
        Wal(tmp_path / "wal").read()
    assert seg.read_bytes() == bytes(data), "a corrupt WAL is left as it was"


def test_checkpoint_keeps_one_segment(tmp_path: Path) -> None:
    wal = _wal_with_batches(tmp_path / "wal", 2)
    for _ in range(5):
        wal.checkpoint(0)
        wal.append_entries(_entries(1, 3))
        wal.sync()
    assert len(wal.segments()) == 1
    assert wal.checkpoints == 6
    _, records = Wal(tmp_path / "wal").read()
    assert len(records) == 1


def test_checkpoint_cut_short_falls_back_to_the_previous_segment(tmp_path: Path) -> None:
    wal = _wal_with_batches(tmp_path / "wal", 2)
    wal.close()
    (tmp_path / "wal" / f"{0xFFFF:016x}.wal").write_bytes(b"\x00\x00\x00")  # torn header
    _, records = Wal(tmp_path / "wal").read()
    assert len(records) == 2


def test_checkpoint_due_by_entries_and_bytes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "WAL_CHECKPOINT_ENTRIES", 5)
    wal = _wal_with_batches(tmp_path / "wal", 1)
    assert not wal.checkpoint_due()
    wal.append_entries(_entries(4, 5))
    wal.sync()
    assert wal.checkpoint_due()
    wal.checkpoint(0)
    monkeypatch.setattr(limits, "WAL_CHECKPOINT_BYTES", 100)
    wal.append_entries([(6, 1, b"n" + b"x" * 200)])
    wal.sync()
    assert wal.checkpoint_due()


# ---------------------------------------------------------------------- redo into LMDB
def _open(tmp_path: Path) -> tuple[Storage, LmdbRaftStorage]:
    storage = Storage(tmp_path / "db")
    return storage, LmdbRaftStorage(storage, Log(storage), KVStateMachine(storage))


def _persist(
    storage: Storage, rs: LmdbRaftStorage, hs: HardState | None, entries: list[Entry]
) -> None:
    with storage.begin(write=True, durable=False) as txn:
        rs.persist(txn, hs, tuple(entries))
    rs.sync_wal()


def _ents(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(i, term, EntryType.NORMAL, f"{term}:{i}".encode()) for i in range(lo, hi + 1)]


def test_redo_restores_what_lmdb_lost(tmp_path: Path) -> None:
    """LMDB back at the checkpoint (a power loss undid its later commits): the WAL redoes
    the entries, a conflicting suffix replaced by a later term, and the highest vote."""
    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    _persist(storage, rs, HardState(1, "a", 0), _ents(1, 5, 1))
    storage.flush()
    lost_from = (tmp_path / "db" / "data.mdb").read_bytes()  # "what the disk held"
    _persist(storage, rs, HardState(2, "b", 3), _ents(4, 6, 2))  # replaces 4-5
    _persist(storage, rs, None, _ents(7, 8, 2))
    rs.wal.close()  # type: ignore[union-attr]
    storage.close()
    (tmp_path / "db" / "data.mdb").write_bytes(lost_from)

    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    hs, _ = rs.initial_state()
    assert (hs.term, hs.vote, hs.commit) == (2, "b", 3)
    got = rs.entries(1, 9)
    assert [(e.index, e.term) for e in got] == [(i, 1) for i in range(1, 4)] + [
        (i, 2) for i in range(4, 9)
    ]
    assert got[5].data == b"2:6"
    assert len(rs.wal.segments()) == 1  # type: ignore[union-attr]
    storage.close()


def test_redo_over_an_lmdb_already_ahead_is_idempotent(tmp_path: Path) -> None:
    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    _persist(storage, rs, HardState(1, "a", 0), _ents(1, 5, 1))
    _persist(storage, rs, HardState(2, None, 2), _ents(3, 4, 2))
    _persist(storage, rs, None, _ents(5, 9, 2))
    with storage.begin(write=True) as txn:
        rs.compact(txn, 6)  # LMDB compacted past records the WAL still holds
    rs.wal.close()  # type: ignore[union-attr]
    storage.close()

    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    assert rs.first_index() == 7
    assert [(e.index, e.term) for e in rs.entries(7, 10)] == [(7, 2), (8, 2), (9, 2)]
    hs, _ = rs.initial_state()
    assert (hs.term, hs.vote) == (2, None)
    storage.close()


def test_wal_of_a_newer_generation_than_lmdb_refuses(tmp_path: Path) -> None:
    storage, rs = _open(tmp_path)
    wal = Wal(tmp_path / "wal")
    wal.read()
    wal.checkpoint(3)
    wal.close()
    with pytest.raises(StorageCorruptError, match="generation 3"):
        rs.attach_wal(Wal(tmp_path / "wal"))
    storage.close()


def test_wal_of_an_older_generation_is_not_redone(tmp_path: Path) -> None:
    """A snapshot install flushed LMDB (generation bumped) but crashed before its new
    segment began: the old log's records must not be redone over the snapshot."""
    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    _persist(storage, rs, HardState(1, "a", 0), _ents(1, 5, 1))
    with storage.begin(write=True) as txn:
        rs.reset_log(txn, 100, 3)
        rs.bump_wal_generation(txn)
    rs.wal.close()  # type: ignore[union-attr]
    storage.close()
    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    assert (rs.first_index(), rs.last_index()) == (101, 100)
    storage.close()


def test_a_node_keeps_its_wal_to_one_bounded_segment(running_node, monkeypatch) -> None:
    """Checkpoints every WAL_CHECKPOINT_ENTRIES: the WAL never holds more than one segment
    of about that many entries, however many writes went through it."""
    monkeypatch.setattr(limits, "WAL_CHECKPOINT_ENTRIES", 40)
    with running_node.client() as c:
        before = c.status()["writes"]["wal"]["checkpoints"]
        for i in range(300):
            c.kv.put(f"r/{i}", b"v" * 200)
            wal = c.status()["writes"]["wal"] if i % 50 == 0 else None
            if wal is not None:
                assert wal["segments"] == 1
                assert wal["bytes"] < 40 * 2 * 400  # ~40 entries of ~300 B, and headers
        wal = c.status()["writes"]["wal"]
        assert wal["checkpoints"] - before >= 300 // 40 - 1
        assert wal["segments"] == 1
        assert len(c.kv.range("r/").kvs) == 300


# ---------------------------------------------------------------------- the in-memory tail
def _defer(rs: LmdbRaftStorage, hs: HardState | None, entries: list[Entry]) -> None:
    assert rs.can_defer(tuple(entries))
    rs.defer(hs, tuple(entries))
    rs.sync_wal()


def test_tail_reads_span_lmdb_and_memory(tmp_path: Path) -> None:
    """Entries deferred to the WAL and the tail read back with those LMDB holds, by
    ``entries`` (byte-bounded, at least one), ``term`` and ``last_index``; a conflicting
    suffix inside the tail replaces it there, one inside LMDB is refused."""
    from aspen.raft import UnavailableError

    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    _persist(storage, rs, HardState(1, "a", 0), _ents(1, 3, 1))
    _defer(rs, HardState(1, "a", 2), _ents(4, 6, 1))
    _defer(rs, None, _ents(6, 7, 2))  # replaces 6 inside the tail
    assert rs.last_index() == 7
    assert [rs.term(i) for i in range(1, 8)] == [1, 1, 1, 1, 1, 2, 2]
    with pytest.raises(UnavailableError):
        rs.term(8)
    got = rs.entries(2, 8)
    assert [(e.index, e.term, e.data) for e in got] == [
        (e.index, e.term, e.data) for e in _ents(2, 5, 1) + _ents(6, 7, 2)
    ]
    assert [e.index for e in rs.entries(2, 8, max_bytes=10)] == [2, 3]  # 4 bytes each
    assert [e.index for e in rs.entries(5, 8, max_bytes=1)] == [5]  # at least one
    assert [e.index for e in rs.entries(3, 6, max_bytes=8)] == [3, 4]
    with pytest.raises(ValueError):
        rs.entries(5, 9)
    assert not rs.can_defer(tuple(_ents(3, 3, 2))), "LMDB holds 3: truncate it in LMDB"
    with storage.begin() as txn:
        assert Log(storage).last_index(txn) == 3, "the tail is not in LMDB yet"
    storage.close()


def test_tail_is_redone_from_the_wal_after_a_crash(tmp_path: Path) -> None:
    """kill -9 with a tail LMDB never saw: the restart redoes it from the WAL."""
    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    _persist(storage, rs, HardState(1, "a", 0), _ents(1, 3, 1))
    _defer(rs, HardState(2, "b", 3), _ents(4, 9, 2))
    assert rs.lmdb_lags_wal
    rs.wal.close()  # type: ignore[union-attr]  # the process dies: the tail is gone
    storage.close()

    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    assert not rs.lmdb_lags_wal
    with storage.begin() as txn:
        assert Log(storage).last_index(txn) == 9, "redone into LMDB"
    assert [(e.index, e.term) for e in rs.entries(1, 10)] == [(i, 1) for i in range(1, 4)] + [
        (i, 2) for i in range(4, 10)
    ]
    hs, _ = rs.initial_state()
    assert (hs.term, hs.vote) == (2, "b")
    storage.close()


def test_tail_goes_into_the_next_transaction_and_is_bounded(tmp_path: Path, monkeypatch) -> None:
    """``persist`` in a write transaction writes the tail first; past
    ``MAX_RAFT_TAIL_BYTES`` nothing more is deferred."""
    storage, rs = _open(tmp_path)
    rs.attach_wal(Wal(tmp_path / "wal"))
    _defer(rs, HardState(1, "a", 0), _ents(1, 4, 1))
    _persist(storage, rs, None, _ents(5, 5, 1))
    with storage.begin() as txn:
        assert Log(storage).last_index(txn) == 5
        assert Log(storage).get_hard_state(txn) == (1, "a")
    assert rs.entries(1, 6)[3].data == b"1:4"
    monkeypatch.setattr(limits, "MAX_RAFT_TAIL_BYTES", 20)
    _defer(rs, None, _ents(6, 9, 1))  # 4 entries of 4 bytes (+1 type byte each)
    assert not rs.can_defer(tuple(_ents(10, 10, 1)))
    storage.close()
