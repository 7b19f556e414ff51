"""With ``limits.PIPELINE_APPLY_COMMIT`` (here ASPEN_PIPELINE_APPLY_COMMIT=1), a write
cycle's LMDB commit runs after the cycle handed Raft back to the event loop (the
pipelined commit, ``Replicator._finish_commit``): the loop steps and replicates the next
writes while the apply's data flush runs. Nothing may observe that gap:

- a read that starts after a write's answer sees the write: on the leader (linearizable or
  serializable) and linearizable on a follower (its ReadIndex waits until the entry is
  visible there, not merely applied in its open transaction);
- a watcher hears of each write once, in order, with the revision the answer named;
- ``kill -9`` of a leader while its commits are pipelined loses nothing acknowledged.
"""

from __future__ import annotations

import pytest

from aspen.errors import AspenError
from aspen.testing import LocalCluster, wait_for

#: The pipelined commit is off by default (``limits.PIPELINE_APPLY_COMMIT``): on here.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.aspen_cluster(env={"ASPEN_PIPELINE_APPLY_COMMIT": "1"}),
]

#: Sequential writes, each read back at once.
READ_BACKS = 150


def _pipelined(cluster: LocalCluster, i: int) -> int:
    with cluster.client(i) as c:
        return c.status()["writes"]["pipelined_commits"]


def test_reads_right_after_an_answer_see_the_write_while_its_commit_is_pipelined(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader_index()
    follower = next(i for i in range(1, cluster.nodes + 1) if i != leader)
    before = _pipelined(cluster, leader)
    with (
        cluster.client(leader) as writer,
        cluster.client(leader) as reader,
        cluster.client(follower) as far,
    ):
        for i in range(READ_BACKS):
            key, value = f"pl/{i % 5}", f"v{i}".encode()
            revision = writer.kv.put(key, value).revision
            got = reader.kv.get(key, serializable=i % 2 == 0)
            assert got is not None and got.value == value, (i, got)
            assert got.mod_revision == revision
            there = far.kv.get(key)  # linearizable: ReadIndex on the leader, then visible here
            assert there is not None and there.mod_revision >= revision, (i, there)
    assert _pipelined(cluster, leader) > before, "no commit was pipelined: the test saw no gap"


def test_a_watcher_hears_each_answered_write_once_in_order(cluster: LocalCluster) -> None:
    leader = cluster.leader_index()
    revisions = []
    seen: list[int] = []
    with cluster.client(leader) as writer, cluster.client(leader, timeout=30) as watcher:
        watch = watcher.watch("wp/", prefix=True)
        for i in range(40):
            revisions.append(writer.kv.put(f"wp/{i}", b"x").revision)
        for resp in watch:
            seen.extend(ev.kv.mod_revision for ev in resp.events)
            if len(seen) >= len(revisions):
                break
        watch.close()
    assert seen == revisions


def test_kill9_of_a_leader_with_pipelined_commits_loses_nothing_acknowledged(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader_index()
    acked = {}
    with cluster.client(leader) as c:
        for i in range(200):
            key = f"k9p/{i:04d}"
            c.kv.put(key, key.encode())
            acked[key] = key.encode()
    cluster.kill(leader)  # the last applies' commits were still flushing
    cluster.restart(leader)

    def holds_all() -> bool:
        with cluster.client(leader) as c:
            page = c.kv.range("k9p/", serializable=True)
            got = {kv.key.decode(): kv.value for kv in page.kvs}
        return got == acked

    wait_for(
        holds_all,
        timeout=60,
        message="the restarted leader holds every acknowledged write",
        ignore=(AspenError, OSError),
    )
