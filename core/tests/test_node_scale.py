"""What a real node keeps grows with its bounds, not with its history (issue 18): the Raft
log is trimmed by bytes, a compaction is deleted in slices while writes go on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen import limits
from aspen.client.txn import Op
from aspen.errors import CompactedError
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.storage.log import Log
from aspen.testing import wait_for

VALUE = b"v" * 1000


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "LOG_RETAIN_BYTES", 256 * 1024)
    monkeypatch.setattr(limits, "COMPACT_SLICE_ENTRIES", 100)


@pytest.fixture
def node(tmp_path: Path, small_bounds: None) -> Iterator[NodeThread]:
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as running:
        yield running


def _history_entries(node: NodeThread) -> int:
    storage = node.node.parts.storage
    with storage.begin() as txn:
        return txn.stat(storage.db("history"))["entries"]


def test_the_log_is_trimmed_by_bytes(node: NodeThread) -> None:
    """60 entries of ~100 kB: LOG_RETAIN_ENTRIES (10,000) would keep all 6 MB of them."""
    storage = node.node.parts.storage
    log = Log(storage)
    with node.client() as c:
        for t in range(60):
            c.kv.txn(success=[Op.put(b"k/%02d/%03d" % (t, i), VALUE) for i in range(100)])
        # a read commits the open apply batch first: LMDB then holds what was applied
        assert c.kv.range(b"k/", count_only=True).count == 6000
        with storage.begin() as txn:
            assert log.size_bytes(txn) <= 2 * limits.LOG_RETAIN_BYTES + 200_000
            assert log.first_index(txn) > 40


def test_a_compaction_is_deleted_in_slices_while_writes_go_on(node: NodeThread) -> None:
    with node.client() as c:
        for t in range(10):  # 1000 history entries
            c.kv.txn(success=[Op.put(b"k/%03d" % i, b"%d" % t) for i in range(100)])
        revision = c.kv.put("k/last", "x").revision
        before = _history_entries(node)
        c.kv.compact(revision)
        with pytest.raises(CompactedError):
            c.kv.range(b"k/", revision=revision - 1)
        assert _history_entries(node) >= before - 2 * limits.COMPACT_SLICE_ENTRIES
        for i in range(20):  # each write cycle deletes at most one more slice
            c.kv.put("other", str(i))
        # left: each live key's record (history holds the values) and the 20 puts after
        wait_for(lambda: _history_entries(node) == 100 + 1 + 20, timeout=30)
        assert c.kv.range(b"k/", revision=revision, count=True).count == 101
