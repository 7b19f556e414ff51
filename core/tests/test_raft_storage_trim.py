"""The driver trims the Raft log behind the applied index in slices, one per write cycle."""

from __future__ import annotations

from pathlib import Path

import pytest

from aspen import limits
from aspen.kv.state_machine import KVStateMachine
from aspen.node.raft_storage import LmdbRaftStorage
from aspen.storage import Log, LogEntry, Storage


def test_a_long_log_is_compacted_a_slice_per_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LOG_RETAIN_ENTRIES", 50)
    monkeypatch.setattr(limits, "LOG_COMPACT_SLICE_ENTRIES", 10)
    with Storage(tmp_path / "db", sync=False) as storage:
        log = Log(storage)
        rs = LmdbRaftStorage(storage, log, KVStateMachine(storage))
        with storage.begin(write=True) as txn:
            log.append(txn, [LogEntry(i, 1, b"n" + b"x" * 20) for i in range(1, 201)])
        firsts = []
        for _ in range(3):  # three write cycles
            with storage.begin(write=True) as txn:
                rs.trim(txn, 200)
                firsts.append(log.first_index(txn))
        assert firsts == [11, 21, 31]  # not 150 at once
        for _ in range(20):
            with storage.begin(write=True) as txn:
                rs.trim(txn, 200)
        with storage.begin() as txn:  # down to the retention bound, then it stops
            assert log.first_index(txn) == 101 and log.last_index(txn) == 200
