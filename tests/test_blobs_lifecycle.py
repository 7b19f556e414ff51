"""Blob lifetime and repair on a real 4-node cluster (processes, TLS): GC after the grace
period (a pinned blob stays), re-replication after ``aspen cluster remove`` and after a
holder stays dead past its grace period. Short ``ASPEN_BLOB_*`` periods make it quick."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen.errors import AspenError, NotFoundError
from aspen.testing import wait_for
from aspen.testing.cluster import LocalCluster, local_cluster

MiB = 1024 * 1024
GC_GRACE_SECONDS = 3
ENV = {
    "ASPEN_LOAD_PLUGINS": "",
    "ASPEN_BLOB_GC_GRACE_SECONDS": str(GC_GRACE_SECONDS),
    "ASPEN_BLOB_HOLDER_GRACE_SECONDS": "3",
    "ASPEN_BLOB_REPAIR_INTERVAL_SECONDS": "0.3",
}
SETTLE_SECONDS = 40.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Four node processes with a 3 s GC grace period and a 3 s holder grace period."""
    with local_cluster(tmp_path_factory.mktemp("blobs-life"), 4, env=ENV) as c:
        c.leader_index()
        yield c


def _replica(cluster: LocalCluster, i: int, digest: str) -> Path:
    return cluster.node_dir(i) / "blobs" / "objects" / digest[:2] / digest


def _index_of(cluster: LocalCluster, node_id: str, among: list[int]) -> int:
    return next(i for i in among if cluster.node_id(i) == node_id)


def test_gc_removes_an_unpinned_blob_from_every_disk_and_keeps_a_pinned_one(
    cluster: LocalCluster,
) -> None:
    loose, kept = os.urandom(MiB), os.urandom(MiB)
    with cluster.client() as c:
        loose_ref = c.blobs.put(loose, replicas=4)
        kept_ref = c.blobs.put(kept, replicas=4, pin="keep")
    assert all(_replica(cluster, i, loose_ref.hash).exists() for i in range(1, 5))

    def collected() -> bool:
        return not any(_replica(cluster, i, loose_ref.hash).exists() for i in range(1, 5))

    wait_for(collected, timeout=SETTLE_SECONDS, interval=0.2, message="GC removes every replica")
    with cluster.client() as c:
        with pytest.raises(NotFoundError):
            c.blobs.stat(loose_ref.hash)
        assert c.blobs.stat(kept_ref.hash)["pins"] == ["keep"]
        assert c.blobs.get_bytes(kept_ref.hash) == kept
        # the same bytes put again after GC are a new blob, stored and readable again
        again = c.blobs.put(loose, replicas=2, pin="again")
        assert again.hash == loose_ref.hash and c.blobs.get_bytes(again.hash) == loose
    assert all(_replica(cluster, i, kept_ref.hash).exists() for i in range(1, 5))


def test_a_removed_nodes_blobs_get_back_to_r_holders(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        refs = [c.blobs.put(os.urandom(300_000 + n), replicas=2, pin=f"r{n}") for n in range(8)]
        leader = cluster.leader_index()
        # a follower that holds at least one of them
        holders = {ref.hash: c.blobs.stat(ref.hash)["holders"] for ref in refs}
        victim_id = next(h for hs in holders.values() for h in hs if h != cluster.node_id(leader))
    victim = _index_of(cluster, victim_id, [1, 2, 3, 4])
    env = {**os.environ, "ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token}

    def remove() -> bool:
        # refused while the leader has not heard from a quorum lately (a busy machine can
        # cost a leader change): the operator would run it again, and so does the test
        removed = subprocess.run(
            [sys.executable, "-m", "aspen", "cluster", "remove", victim_id],
            capture_output=True,
            env=env,
            timeout=60,
        )
        return removed.returncode == 0

    wait_for(remove, timeout=SETTLE_SECONDS, interval=0.5, message="cluster remove succeeds")
    cluster.kill(victim)
    others = [i for i in range(1, 5) if i != victim]

    def back_to_two() -> bool:
        with cluster.client(others[0]) as c:
            for ref in refs:
                now = c.blobs.stat(ref.hash)["holders"]
                if len(now) != 2 or victim_id in now:
                    return False
                for holder in now:
                    if not _replica(cluster, _index_of(cluster, holder, others), ref.hash).exists():
                        return False
        return True

    wait_for(
        back_to_two,
        timeout=SETTLE_SECONDS,
        interval=0.3,
        ignore=(AspenError,),  # a read may meet the membership change (retried next time)
        message="every blob has 2 holders",
    )
    with cluster.client(others[0]) as c:
        assert c.blobs.status()["under_replicated"] == 0


def test_a_holder_dead_past_its_grace_period_is_replaced(cluster: LocalCluster) -> None:
    alive = [i for i in range(1, 5) if cluster.alive(i)]
    leader = cluster.leader_index(among=alive)
    with cluster.client(leader) as c:
        ref = c.blobs.put(os.urandom(700_000), replicas=2, pin="dead")
        holders = c.blobs.stat(ref.hash)["holders"]
    dead_id = next(h for h in holders if h != cluster.node_id(leader))
    dead = _index_of(cluster, dead_id, alive)
    cluster.kill(dead)
    spare = next(i for i in alive if i not in (dead,) and cluster.node_id(i) not in holders)
    wait_for(
        lambda: _replica(cluster, spare, ref.hash).exists(),
        timeout=SETTLE_SECONDS,
        interval=0.3,
        message="the repairer copies the blob to the spare node",
    )
    with cluster.client(leader) as c:
        assert cluster.node_id(spare) in c.blobs.stat(ref.hash)["holders"]
    with cluster.client(spare) as c:
        assert len(c.blobs.get_bytes(ref.hash)) == 700_000
