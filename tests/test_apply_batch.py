"""The apply batch (``Replicator._commit_batch``): a node keeps the state machine's LMDB
write transaction open across driver cycles and commits it later, while every write is
durable in the Raft-log WAL first and answered before that commit.

The nodes here run with an apply batch far longer than any test waits
(``--apply-batch-seconds`` = ``BATCH_SECONDS``), so a batch stays open unless something
asks for its commit:

- a linearizable or serializable read right after an answer, on the leader or a follower,
  sees the write and does not sit out the batch (its wait for visibility commits it);
- a watcher hears of writes while their batch is open;
- ``kill -9`` of a node (or of every node at once) with a batch open loses nothing that
  was acknowledged: the restart redoes the WAL and applies the entries again.

Every client waits at most ``PROMPT_SECONDS``, far below ``BATCH_SECONDS``: a read that
waited for the timer would fail with a timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aspen.errors import AspenError
from aspen.testing import LocalCluster, local_cluster, wait_for

pytestmark = pytest.mark.slow

#: The nodes' apply batch interval: far longer than any client here waits.
BATCH_SECONDS = 60.0
#: How long a client here waits for an answer (a read sitting out the batch would not get one).
PROMPT_SECONDS = 8.0
#: Writes per test.
WRITES = 30
_ENV = {"ASPEN_APPLY_BATCH_SECONDS": str(BATCH_SECONDS)}


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster (core only) whose apply batches stay open ``BATCH_SECONDS``."""
    with local_cluster(tmp_path_factory.mktemp("batched"), 3, plugins=[], env=_ENV) as c:
        yield c


def _commits(c: Any) -> int:
    return int(c.status()["writes"]["lmdb_commits"])


def _follower(cluster: LocalCluster) -> int:
    leader = cluster.leader_index()
    return next(i for i in range(1, cluster.nodes + 1) if i != leader)


def test_writes_leave_the_batch_open(batched: LocalCluster) -> None:
    """Without readers, puts are answered while their LMDB commit waits (the batch is
    what the other tests rely on being open)."""
    leader = batched.leader_index()
    with batched.client(leader, timeout=PROMPT_SECONDS) as c:
        c.kv.put("open/warm", b"x")
        before = _commits(c)
        for i in range(WRITES):
            c.kv.put(f"open/{i}", b"v")
        assert _commits(c) <= before + 1  # at most the batch open before these closed


@pytest.mark.parametrize("serializable", [False, True])
def test_a_read_on_the_leader_right_after_an_answer_sees_the_write_promptly(
    batched: LocalCluster, serializable: bool
) -> None:
    leader = batched.leader_index()
    with (
        batched.client(leader, timeout=PROMPT_SECONDS) as writer,
        batched.client(leader, timeout=PROMPT_SECONDS) as reader,
    ):
        for i in range(WRITES):
            key = f"lead/{serializable}/{i % 4}"
            revision = writer.kv.put(key, f"v{i}".encode()).revision
            got = reader.kv.get(key, serializable=serializable)
            assert got is not None and got.mod_revision == revision, (i, got)


def test_reads_on_a_follower_right_after_an_answer_see_the_write_promptly(
    batched: LocalCluster,
) -> None:
    """A linearizable read on a follower sees the write (ReadIndex, then the follower's
    batch is committed for it); a serializable one right after never sees an older state."""
    leader, follower = batched.leader_index(), _follower(batched)
    with (
        batched.client(leader, timeout=PROMPT_SECONDS) as writer,
        batched.client(follower, timeout=PROMPT_SECONDS) as far,
    ):
        for i in range(WRITES):
            key = f"far/{i % 4}"
            revision = writer.kv.put(key, f"v{i}".encode()).revision
            there = far.kv.get(key)
            assert there is not None and there.mod_revision >= revision, (i, there)
            again = far.kv.get(key, serializable=True)
            assert again is not None and again.mod_revision >= there.mod_revision, (i, again)


def test_a_watcher_hears_writes_while_their_batch_is_open(batched: LocalCluster) -> None:
    leader = batched.leader_index()
    revisions: list[int] = []
    seen: list[int] = []
    with (
        batched.client(leader, timeout=PROMPT_SECONDS) as writer,
        batched.client(_follower(batched), timeout=PROMPT_SECONDS) as watcher,
    ):
        watch = watcher.watch("wb/", prefix=True)
        for i in range(WRITES):
            revisions.append(writer.kv.put(f"wb/{i}", b"x").revision)
        for resp in watch:  # each message must come within PROMPT_SECONDS
            seen.extend(ev.kv.mod_revision for ev in resp.events)
            if len(seen) >= len(revisions):
                break
        watch.close()
    assert seen == revisions


def _put_all(c: Any, prefix: str) -> dict[str, bytes]:
    acked = {}
    for i in range(WRITES):
        key, value = f"{prefix}/{i:03d}", f"value-{i}".encode()
        c.kv.put(key, value)
        acked[key] = value
    return acked


def _holds(c: Any, acked: dict[str, bytes]) -> bool:
    for key, value in acked.items():
        got = c.kv.get(key, serializable=True)
        if got is None or got.value != value:
            return False
    return True


def test_kill9_of_every_node_with_batches_open_loses_nothing_acknowledged(
    batched: LocalCluster,
) -> None:
    leader = batched.leader_index()
    with batched.client(leader, timeout=PROMPT_SECONDS) as c:
        acked = _put_all(c, "k9c")
        before = _commits(c)
        acked |= _put_all(c, "k9c-open")
        assert _commits(c) <= before + 1  # these answered writes sit in an open batch
    for i in range(1, batched.nodes + 1):
        batched.kill(i)
    for i in range(1, batched.nodes + 1):
        batched.restart(i)
    for i in range(1, batched.nodes + 1):
        with batched.client(i, timeout=PROMPT_SECONDS) as c:
            wait_for(
                lambda c=c: _holds(c, acked),
                timeout=60,
                message=f"node {i} holds every acknowledged write after kill -9",
                ignore=(AspenError, OSError),
            )


def test_kill9_of_a_single_node_with_its_batch_open_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    with local_cluster(tmp_path, 1, plugins=[], env=_ENV) as one:
        with one.client(1, timeout=PROMPT_SECONDS) as c:
            c.kv.put("k91/warm", b"x")
            before = _commits(c)
            acked = _put_all(c, "k91")
            assert _commits(c) <= before + 1  # answered, their apply not committed
        one.kill(1)
        one.restart(1)
        with one.client(1, timeout=PROMPT_SECONDS) as c:
            assert _holds(c, acked)
            got = c.kv.get("k91/000")  # linearizable: a lone voter's read settles too
            assert got is not None and got.value == acked["k91/000"]


#: Concurrent clients of the busy single voter test: far more than
#: ``APPLY_BATCH_BUSY_COMMANDS``, so its cycles gather that many writes.
BUSY_CLIENTS = 16


def test_a_busy_single_voter_commits_its_batch_with_its_cycles(tmp_path: Path) -> None:
    """A single voter under concurrent writes commits the batch with each cycle that
    applied ``APPLY_BATCH_BUSY_COMMANDS`` commands (the commit gathers the next cycle's
    writes; see the driver's docstring), long before ``BATCH_SECONDS``; a lone client's
    writes leave it open (the test above); ``kill -9`` loses nothing acknowledged."""
    with local_cluster(tmp_path, 1, plugins=[], env=_ENV) as one:
        with one.client(1, timeout=PROMPT_SECONDS) as c:
            c.kv.put("busy/warm", b"x")
            before = _commits(c)

        def writer(n: int) -> dict[str, bytes]:
            with one.client(1, timeout=PROMPT_SECONDS) as c:
                return _put_all(c, f"busy/{n:02d}")

        with ThreadPoolExecutor(BUSY_CLIENTS) as pool:
            acked: dict[str, bytes] = {}
            for got in pool.map(writer, range(BUSY_CLIENTS)):
                acked |= got
        with one.client(1, timeout=PROMPT_SECONDS) as c:
            assert _commits(c) >= before + 2  # not only the batch open before
        one.kill(1)
        one.restart(1)
        with one.client(1, timeout=PROMPT_SECONDS) as c:
            assert _holds(c, acked)
