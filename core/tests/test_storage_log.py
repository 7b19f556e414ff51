"""The Raft log seam: append, read, truncate, compact, hard state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen.storage import Log, LogCompactedError, LogEntry, Storage


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage(tmp_path / "db") as s:
        yield s


def _entries(lo: int, hi: int, term: int = 1, size: int = 10) -> list[LogEntry]:
    return [LogEntry(i, term, bytes([i % 256]) * size) for i in range(lo, hi + 1)]


def test_empty_log(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin() as txn:
        assert (log.first_index(txn), log.last_index(txn), log.last_term(txn)) == (1, 0, 0)
        assert log.entry(txn, 1) is None
        assert log.entries(txn, 1, 1) == []
        assert log.get_hard_state(txn) == (0, None)


def test_append_and_read(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 5))
        log.append(txn, _entries(6, 8, term=2))
    with storage.begin() as txn:
        assert (log.first_index(txn), log.last_index(txn), log.last_term(txn)) == (1, 8, 2)
        assert log.entry(txn, 3) == LogEntry(3, 1, b"\x03" * 10)
        assert log.term(txn, 6) == 2
        assert log.term(txn, 9) is None
        assert [e.index for e in log.entries(txn, 2, 7)] == [2, 3, 4, 5, 6]
        assert [e.index for e in log.entries(txn, 2, 9, max_bytes=25)] == [2, 3]
        assert [e.index for e in log.entries(txn, 2, 9, max_bytes=0)] == [2]
        with pytest.raises(ValueError, match="last index is 8"):
            log.entries(txn, 1, 10)


def test_append_must_be_contiguous(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 3))
        with pytest.raises(ValueError, match="expected 4"):
            log.append(txn, _entries(5, 6))
        with pytest.raises(ValueError, match="expected 4"):
            log.append(txn, _entries(3, 4))


def test_truncate_from(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 10))
        log.truncate_from(txn, 7)
        assert log.last_index(txn) == 6
        log.append(txn, _entries(7, 8, term=3))
        assert (log.last_index(txn), log.last_term(txn)) == (8, 3)
        log.truncate_from(txn, 1)
        assert log.last_index(txn) == 0
        log.truncate_from(txn, 5)  # nothing there: no-op


def test_compact_to_remembers_last_dropped_term(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 4, term=1) + _entries(5, 6, term=2))
        log.compact_to(txn, 5)
        assert (log.first_index(txn), log.last_index(txn)) == (6, 6)
        assert log.term(txn, 5) == 2
        assert log.entry(txn, 5) is None
        with pytest.raises(LogCompactedError):
            log.entries(txn, 5, 7)
        log.compact_to(txn, 3)  # already compacted: no-op
        log.compact_to(txn, 6)
        assert (log.first_index(txn), log.last_index(txn), log.last_term(txn)) == (7, 6, 2)
        with pytest.raises(ValueError, match="compacted"):
            log.truncate_from(txn, 6)
        with pytest.raises(ValueError, match="no such entry"):
            log.compact_to(txn, 9)
        log.append(txn, _entries(7, 7, term=4))
        assert (log.first_index(txn), log.last_index(txn), log.last_term(txn)) == (7, 7, 4)


def test_reset_restarts_after_snapshot(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 5))
        log.reset(txn, 100, 7)
        assert (log.first_index(txn), log.last_index(txn), log.last_term(txn)) == (101, 100, 7)
        log.append(txn, _entries(101, 101, term=8))
        assert log.last_term(txn) == 8


def test_hard_state_and_log_persist(tmp_path: Path) -> None:
    with Storage(tmp_path) as storage:
        log = Log(storage)
        with storage.begin(write=True) as txn:
            log.append(txn, _entries(1, 3, term=5))
            log.set_hard_state(txn, 5, "node-a")
    with Storage(tmp_path) as storage:
        log = Log(storage)
        with storage.begin() as txn:
            assert log.get_hard_state(txn) == (5, "node-a")
            assert log.entries(txn, 1, 4) == _entries(1, 3, term=5)


def test_retention_cut_bounds_the_log_by_entries(storage: Storage) -> None:
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 100))
        assert log.retention_cut(txn, 101 - 1, keep_entries=50, keep_bytes=1 << 30) == 0
        log.append(txn, _entries(101, 102))
        assert log.retention_cut(txn, 102, keep_entries=50, keep_bytes=1 << 30) == 52


def test_retention_cut_bounds_the_log_by_bytes(storage: Storage) -> None:
    """Large entries (1000-put txns) would keep LOG_RETAIN_ENTRIES x 100 kB: the byte bound
    cuts first, keeping about keep_bytes of them."""
    log = Log(storage)
    with storage.begin(write=True) as txn:
        log.append(txn, _entries(1, 20, size=100_000))  # ~2 MB
        cut = log.retention_cut(txn, 20, keep_entries=10_000, keep_bytes=1_000_000)
        assert cut in (10, 11)  # ~10 entries of 100 kB (and their page overhead) stay
        assert log.retention_cut(txn, 15, keep_entries=10_000, keep_bytes=1_000_000) == cut - 5
        assert log.retention_cut(txn, 20, keep_entries=10_000, keep_bytes=2_500_000) == 0
        log.compact_to(txn, cut)
        assert log.size_bytes(txn) <= 1_000_000
        assert log.retention_cut(txn, 20, keep_entries=10_000, keep_bytes=1_000_000) == 0
