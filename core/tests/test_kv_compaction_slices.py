"""Compaction deletes history in bounded slices, one per write transaction (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kvstore import Store

from aspen import limits
from aspen.errors import CompactedError
from aspen.kv import compact_command, put_command, txn_command

SLICE = 100
KEYS = 50


@pytest.fixture
def kv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(limits, "COMPACT_SLICE_ENTRIES", SLICE)
    store = Store(tmp_path / "db")
    yield store
    store.storage.close()


def _history_entries(kv: Store) -> int:
    with kv.storage.begin() as txn:
        return txn.stat(kv.storage.db("history"))["entries"]


def _fill(kv: Store, revisions: int) -> None:
    """``revisions`` txns, each putting KEYS keys (KEYS history entries per revision)."""
    for r in range(revisions):
        ops = [{"put": {"key": b"k%03d" % i, "value": b"%d" % r}} for i in range(KEYS)]
        kv.ok(txn_command({"success": ops}))


def test_a_compaction_deletes_one_slice_per_write_transaction(kv: Store) -> None:
    _fill(kv, 20)  # 1000 entries, revisions 2..21
    current = kv.revision()
    expected = kv.kvs()
    kv.ok(compact_command({"revision": current}))  # 950 entries below it
    assert kv.sm.compacted_entries == SLICE
    assert _history_entries(kv) == 1000 - SLICE
    # reads see the compaction at once, whatever is left to delete
    assert kv.kvs(revision=current) == expected
    with pytest.raises(CompactedError):
        kv.kvs(revision=current - 1)
    assert [e["revision"] for e in kv.sm.history(None, 0, b"k000")] == [current]
    # every later write transaction deletes at most one more slice
    cycles = 0
    while kv.sm.compacted_entries < 19 * KEYS:
        before = kv.sm.compacted_entries
        kv.apply_all([put_command({"key": "other", "value": "x"})] * 3)  # one transaction
        assert kv.sm.compacted_entries - before <= SLICE
        cycles += 1
    assert cycles == (19 * KEYS - SLICE + SLICE - 1) // SLICE
    assert _history_entries(kv) == KEYS + 3 * cycles  # the compact revision's, and the puts'
    kv.apply_all([put_command({"key": "other", "value": "y"})])
    assert kv.sm.compacted_entries == 19 * KEYS  # nothing more below the compact revision


def test_a_slice_is_bounded_in_bytes_too(kv: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "COMPACT_SLICE_BYTES", 10_000)
    for i in range(30):
        kv.put_rev("big", b"x" * 1000 + b"%d" % i)
    kv.ok(compact_command({"revision": kv.revision()}))
    assert 0 < kv.sm.compacted_entries <= 6  # an entry holds its value and its prev: ~2 kB
