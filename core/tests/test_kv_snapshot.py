"""State machine snapshots: chunks bounded in bytes, restored in key order (issue 18)."""

from __future__ import annotations

import io
from pathlib import Path

import msgpack
import pytest
from kvstore import Store

from aspen import limits
from aspen.kv import compact_command, lease_grant_command, put_command
from aspen.kv import snapshot as sm_snapshot
from aspen.storage import Storage
from aspen.storage.env import DB_NAMES

CHUNK = 4096


def _dump(storage: Storage) -> dict[str, list[tuple[bytes, bytes]]]:
    with storage.begin() as txn:
        return {name: list(txn.cursor(db=storage.db(name))) for name in DB_NAMES if name != "log"}


def _filled(path: Path) -> Store:
    store = Store(path)
    store.ok(lease_grant_command({"ttl": 60, "id": 7}, 1))
    for i in range(300):
        store.put(b"k/%04d" % i, b"v" * (i % 50), lease=7 if i % 3 == 0 else 0)
    store.put(b"L" * 700, b"long key")  # long keys are stored by their encoding
    store.ok(compact_command({"revision": 100}))
    return store


def test_a_snapshot_round_trips_in_chunks_of_bounded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "SNAPSHOT_CHUNK_BYTES", CHUNK)
    src = _filled(tmp_path / "src")
    with src.storage.begin() as txn:
        chunks = list(sm_snapshot.dump_chunks(src.storage, txn))
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) <= CHUNK + 1024  # one chunk, plus one record
    spool = io.BytesIO(b"".join(len(c).to_bytes(4, "big") + c for c in chunks))
    dst = Store(tmp_path / "dst")
    dst.put("stale", "gone after the restore")
    read = 0

    def counted() -> object:
        nonlocal read
        for chunk in sm_snapshot.read_spool(spool):
            read += 1
            yield chunk

    with dst.storage.begin(write=True) as txn:
        sm_snapshot.restore(dst.storage, txn, counted())  # type: ignore[arg-type]
    assert read == len(chunks)
    dst.sm.forget_cache()
    assert _dump(dst.storage) == {**_dump(src.storage), "meta": _dump(dst.storage)["meta"]}
    assert dst.kvs() == src.kvs() and dst.sm.current_revision() == src.sm.current_revision()
    assert dst.sm.compact_revision() == 100
    assert dst.sm.lease_info(None, 7, keys=True) == src.sm.lease_info(None, 7, keys=True)


def test_restore_refuses_records_out_of_key_order(tmp_path: Path) -> None:
    dst = Store(tmp_path)
    bad = [["kv", [b"b", msgpack.packb([b"b", b"", 1, 1, 1, 0]), b"a", b"x"]]]
    with pytest.raises(ValueError, match="not in key order"), dst.storage.begin(write=True) as t:
        sm_snapshot.restore(dst.storage, t, bad)


def test_restore_refuses_an_unknown_database(tmp_path: Path) -> None:
    dst = Store(tmp_path)
    with pytest.raises(ValueError, match="unknown database"), dst.storage.begin(write=True) as t:
        sm_snapshot.restore(dst.storage, t, [["log", [b"a", b"b"]]])
    assert dst.put("still", "works")


def test_put_command_after_restore_continues_the_revisions(tmp_path: Path) -> None:
    src = _filled(tmp_path / "src")
    dst = Store(tmp_path / "dst")
    with src.storage.begin() as txn, dst.storage.begin(write=True) as wtxn:
        chunks = [msgpack.unpackb(c) for c in sm_snapshot.dump_chunks(src.storage, txn)]
        sm_snapshot.restore(dst.storage, wtxn, chunks)
    dst.sm.forget_cache()
    dst.index = src.index
    result, _ = dst.apply(put_command({"key": "after", "value": "x"}))
    assert result["header"]["revision"] == src.sm.current_revision() + 1
