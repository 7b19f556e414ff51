"""Storage.begin(durable=False): committed with integrity, kept by kill -9, flushed later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from aspen.storage import Storage

_WRITER = textwrap.dedent(
    """
    import sys
    from aspen.storage import Storage

    storage = Storage(sys.argv[1])
    meta = storage.db("meta")
    i = 0
    while True:
        # every third commit durable, the others not (like apply-only Raft cycles)
        with storage.begin(write=True, durable=i % 3 == 0) as txn:
            txn.put(b"last", b"%d" % i, db=meta)
        print(i, flush=True)
        i += 1
    """
)


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


def test_kill_9_keeps_durable_and_non_durable_commits(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    reported = -1
    for line in proc.stdout:
        reported = int(line)
        if reported >= 100 and reported % 3 != 0:  # the last commit was not durable
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with Storage(tmp_path) as storage, storage.begin() as txn:
        assert int(txn.get(b"last", db=storage.db("meta"))) >= reported
