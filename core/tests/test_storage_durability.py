"""Storage.begin(durable=False): committed with integrity, flushed later (kill -9 keeping
both kinds of commit is checked in test_storage_env)."""

from __future__ import annotations

from pathlib import Path

from aspen.storage import Storage


def test_non_durable_commits_are_visible_and_flush_keeps_them(tmp_path: Path) -> None:
    with Storage(tmp_path) as storage:
        meta = storage.db("meta")
        with storage.begin(write=True, durable=False) as txn:
            txn.put(b"a", b"1", db=meta)
        with storage.begin() as txn:
            assert txn.get(b"a", db=meta) == b"1"
        storage.flush()
    with Storage(tmp_path) as storage, storage.begin() as txn:
        assert txn.get(b"a", db=storage.db("meta")) == b"1"


def test_an_aborted_durable_transaction_leaves_nothing(tmp_path: Path) -> None:
    with Storage(tmp_path) as storage:
        meta = storage.db("meta")
        try:
            with storage.begin(write=True) as txn:
                txn.put(b"a", b"1", db=meta)
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        with storage.begin() as txn:
            assert txn.get(b"a", db=meta) is None
