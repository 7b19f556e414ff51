"""The Raft-log WAL under real node processes: a torn tail is cut and every acknowledged
write is served; a corrupt record in the middle stops the node at start with a clear
message; a restart redoes the WAL when LMDB lost the commits since its last checkpoint
(what a power loss may do); a follower pays one fdatasync per write cycle and no LMDB
meta flush (``aspen.storage.wal``)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import aspen
from aspen.errors import AspenError
from aspen.node.cluster import WAL_DIR
from aspen.testing import LocalCluster, wait_for

#: Sequential acknowledged writes per test (each its own WAL batch).
WRITES = 120
_HEAD = struct.Struct(">IIBQ")  # a WAL record's header (aspen.storage.wal)


def _segment(data_dir: Path) -> Path:
    (seg,) = sorted((data_dir / WAL_DIR).glob("*.wal"))
    return seg


def _put_many(node, prefix: str) -> dict[str, bytes]:
    acked = {}
    with aspen.connect(node.endpoint, token=node.token, timeout=10) as c:
        for i in range(WRITES):
            key, value = f"{prefix}/{i:04d}", f"v{i}".encode() * 10
            c.kv.put(key, value)
            acked[key] = value
    return acked


def _assert_served(node, acked: dict[str, bytes]) -> None:
    with aspen.connect(node.endpoint, token=node.token, timeout=10) as c:
        for prefix in {k.split("/")[0] for k in acked}:
            got = {kv.key.decode(): kv.value for kv in c.kv.range(f"{prefix}/").kvs}
            want = {k: v for k, v in acked.items() if k.startswith(prefix + "/")}
            assert got == want, f"{len(set(want) - set(got))} acknowledged writes lost"


def test_torn_wal_tail_is_cut_and_every_acknowledged_write_served(node_process) -> None:
    node = node_process.start()
    acked = _put_many(node, "torn")
    node.kill9()
    seg = _segment(node.data_dir)
    with open(seg, "ab") as f:  # a record the crash cut short: header says 4 KiB, 100 B came
        f.write(_HEAD.pack(4096, 0xDEADBEEF, 2, 10**9) + b"\x01" * 100)
    node.start()
    _assert_served(node, acked)
    assert len(list((node.data_dir / WAL_DIR).glob("*.wal"))) == 1


def test_corrupt_wal_record_in_the_middle_refuses_to_start(node_process) -> None:
    node = node_process.start()
    _put_many(node, "mid")
    node.kill9()
    seg = _segment(node.data_dir)
    data = bytearray(seg.read_bytes())
    first = _HEAD.size + _HEAD.unpack_from(data, 0)[0]  # after the header record
    second = first + _HEAD.size + _HEAD.unpack_from(data, first)[0]
    assert second < len(data) - 1000, "later synced records follow the one to corrupt"
    data[second + _HEAD.size + 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="node exited"):
        node.start()
    assert node.proc is not None and node.proc.returncode != 0
    log = (node.data_dir.parent / f"node-{node.port}.log").read_text()
    assert "WAL" in log and "is corrupt at byte" in log and "refuses to start" in log
    assert seg.read_bytes() == bytes(data), "the node left the corrupt WAL as it was"


def test_restart_redoes_the_wal_when_lmdb_lost_its_later_commits(node_process) -> None:
    """LMDB commits between checkpoints skip the meta-page flush, so a power loss may undo
    them: the node then finds LMDB as of its last checkpoint. Simulated with real files:
    LMDB's data file as of a checkpoint (a clean stop, then the start's own checkpoint)
    put back after kill -9; every write acknowledged in between comes back from the WAL."""
    node = node_process.start()
    before = _put_many(node, "before")
    node.stop()
    lmdb_file = node.data_dir / "db" / "data.mdb"
    at_checkpoint = node.data_dir.parent / "data.mdb.at-checkpoint"
    shutil.copyfile(lmdb_file, at_checkpoint)
    node.start()
    with aspen.connect(node.endpoint, token=node.token, timeout=10) as c:
        checkpoints = c.status()["writes"]["wal"]["checkpoints"]
    acked = _put_many(node, "after")
    with aspen.connect(node.endpoint, token=node.token, timeout=10) as c:
        assert c.status()["writes"]["wal"]["checkpoints"] == checkpoints, (
            "no checkpoint in between: LMDB's copy is what a power loss could leave"
        )
    node.kill9()
    shutil.copyfile(at_checkpoint, lmdb_file)
    node.start()
    _assert_served(node, {**before, **acked})


def test_a_follower_pays_one_wal_fdatasync_per_write_cycle(cluster: LocalCluster) -> None:
    leader = cluster.leader_index()
    follower = next(i for i in range(1, cluster.nodes + 1) if i != leader)

    def writes(i: int) -> dict:
        with cluster.client(i) as c:
            return c.status()["writes"]

    start = writes(follower)
    with cluster.client(leader) as c:
        for i in range(50):
            c.kv.put(f"fsync/{i}", b"x" * 100)
    end = writes(follower)
    fsyncs = end["wal"]["fsyncs"] - start["wal"]["fsyncs"]
    write_cycles = end["write_cycles"] - start["write_cycles"]
    assert 0 < fsyncs <= write_cycles + 1  # one per cycle at most (+1: the status cycle)
    assert end["lmdb_flushes"] == start["lmdb_flushes"], "no LMDB meta flush per write"


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_a_sequential_put_costs_each_node_two_fsyncs(cluster: LocalCluster, role: str) -> None:
    """One client's sequential puts: each node syncs the WAL once for the entry (a cycle
    that only persists it keeps it in the WAL and memory, ``LmdbRaftStorage.defer``) and
    commits LMDB once to apply it (a data flush, no meta flush): two fsyncs per put, where
    writing the log into LMDB in the persisting cycle too took three."""
    leader = cluster.leader_index()
    node = (
        leader if role == "leader" else next(i for i in range(1, cluster.nodes + 1) if i != leader)
    )

    def writes() -> dict:
        with cluster.client(node) as c:
            return c.status()["writes"]

    puts = 60
    start = writes()
    with cluster.client(leader) as c:
        for i in range(puts):
            c.kv.put(f"two-fsyncs/{role}/{i}", b"x" * 100)
    end = writes()
    fsyncs = end["wal"]["fsyncs"] - start["wal"]["fsyncs"]
    commits = end["lmdb_commits"] - start["lmdb_commits"]
    assert fsyncs + commits <= 2 * puts + 4  # +4: the status cycles, a stray heartbeat
    assert commits < end["write_cycles"] - start["write_cycles"], "cycles without a commit"


def test_a_follower_that_joined_by_snapshot_restarts_from_its_reset_wal(
    cluster: LocalCluster,
) -> None:
    """Snapshot install and the WAL: a member that joined got the leader's snapshot, which
    bumped its WAL generation and reset its WAL to one segment; after writes and a kill -9
    it restarts from that WAL (the old log's segment is never redone over the snapshot)
    and serves every acknowledged write."""
    leader = cluster.leader_index()

    def wal(i: int) -> dict:
        with cluster.client(i) as c:
            return c.status()["writes"]["wal"]

    joined = [i for i in range(1, cluster.nodes + 1) if i != leader and wal(i)["generation"]]
    assert joined, "a follower that joined by snapshot"
    follower = joined[0]
    before = wal(follower)
    assert before["segments"] == 1
    acked = {}
    with cluster.client(leader) as c:
        for i in range(WRITES):
            c.kv.put(f"snap/{i:04d}", b"s" * 50)
            acked[f"snap/{i:04d}"] = b"s" * 50
    wait_for(
        lambda: len(_range(cluster, follower)) == WRITES,
        message="the follower applied every write",
        ignore=(AspenError, OSError),
    )
    cluster.kill(follower)
    cluster.restart(follower)
    assert _range(cluster, follower) == acked
    after = wal(follower)
    assert after["generation"] == before["generation"] and after["segments"] == 1


def _range(cluster: LocalCluster, i: int) -> dict[str, bytes]:
    with cluster.client(i) as c:
        return {kv.key.decode(): kv.value for kv in c.kv.range("snap/", serializable=True).kvs}


def test_kill9_of_every_member_right_after_acks_loses_nothing(cluster: LocalCluster) -> None:
    """A write cycle that only persists entries keeps them in the WAL and memory, not in
    LMDB (``LmdbRaftStorage.defer``): kill -9 of EVERY member right after acknowledged
    writes leaves no LMDB to catch up from, so each member redoes its own WAL. After a
    restart of all, every member serves every acknowledged write."""
    leader = cluster.leader_index()
    acked: dict[str, bytes] = {}
    with cluster.client(leader) as c:
        for i in range(WRITES):
            key, value = f"all/{i:04d}", f"v{i}".encode() * 10
            c.kv.put(key, value)
            acked[key] = value
    for i in range(1, cluster.nodes + 1):
        cluster.kill(i)
    for i in range(1, cluster.nodes + 1):
        cluster.restart(i)
    for i in range(1, cluster.nodes + 1):

        def served(i: int = i) -> bool:
            with cluster.client(i) as c:
                got = {
                    kv.key.decode(): kv.value for kv in c.kv.range("all/", serializable=True).kvs
                }
            return got == acked

        wait_for(served, timeout=30, ignore=(AspenError, OSError), message=f"member {i}")
