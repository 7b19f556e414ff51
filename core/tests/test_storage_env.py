"""The LMDB environment: databases, persistence, crash safety under kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aspen.storage import DB_NAMES, Storage


def test_opens_named_databases_and_creates_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "node"
    with Storage(path) as storage:
        assert path.is_dir()
        with storage.begin(write=True) as txn:
            for name in DB_NAMES:
                txn.put(b"k", name.encode(), db=storage.db(name))
        with storage.begin() as txn:
            assert [txn.get(b"k", db=storage.db(n)) for n in DB_NAMES] == [
                n.encode() for n in DB_NAMES
            ]
        assert storage.size_bytes() > 0
        with pytest.raises(KeyError, match="unknown database"):
            storage.db("nope")


def test_committed_data_survives_reopen_and_aborted_does_not(tmp_path: Path) -> None:
    with Storage(tmp_path) as storage:
        with storage.begin(write=True) as txn:
            txn.put(b"kept", b"1", db=storage.db("kv"))
        with pytest.raises(RuntimeError), storage.begin(write=True) as txn:
            txn.put(b"lost", b"1", db=storage.db("kv"))
            raise RuntimeError("abort")
    with Storage(tmp_path) as storage, storage.begin() as txn:
        assert txn.get(b"kept", db=storage.db("kv")) == b"1"
        assert txn.get(b"lost", db=storage.db("kv")) is None


def test_size_grows_with_data(tmp_path: Path) -> None:
    with Storage(tmp_path, sync=False) as storage:
        before = storage.size_bytes()
        with storage.begin(write=True) as txn:
            for i in range(2000):
                txn.put(b"%06d" % i, b"x" * 500, db=storage.db("kv"))
        storage.sync()
        assert storage.size_bytes() > before + 1_000_000


_WRITER = textwrap.dedent(
    """
    import sys
    from aspen.storage import Storage
    storage = Storage(sys.argv[1])
    kv, meta = storage.db("kv"), storage.db("meta")
    i = 0
    while True:
        # every third commit durable, the others not (like apply-only Raft cycles):
        # kill -9 must keep both kinds
        with storage.begin(write=True, durable=i % 3 == 0) as txn:
            txn.put(b"item%08d" % i, b"v" * 3000, db=kv)
            txn.put(b"last", b"%d" % i, db=meta)
        print(i, flush=True)
        i += 1
    """
)


def test_kill_9_keeps_every_committed_transaction(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    reported = -1
    for line in proc.stdout:
        reported = int(line)
        if reported >= 200 and reported % 3 != 0:  # the last commit was not durable
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with Storage(tmp_path) as storage, storage.begin() as txn:
        last = int(txn.get(b"last", db=storage.db("meta")))
        assert last >= reported
        kv = storage.db("kv")
        assert txn.stat(kv)["entries"] == last + 1
        assert all(txn.get(b"item%08d" % i, db=kv) == b"v" * 3000 for i in range(last + 1))
