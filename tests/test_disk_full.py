"""A full disk is an error, not a crash (issue 9, section 2), on real nodes over a small
tmpfs: writes get ``resource_exhausted`` naming disk space, reads and Raft stay up, a
follower that cannot store entries never acknowledges them, and everything resumes by
itself once space is freed. Skipped where a tmpfs cannot be mounted (not root)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aspen
from aspen import limits
from aspen.errors import AspenError, ResourceExhaustedError
from aspen.node.config import NodeConfig
from aspen.node.devcluster import DevCluster
from aspen.node.runner import NodeThread
from aspen.storage.space import SpaceGuard
from aspen.testing import free_base_port, wait_for
from aspen.testing.disk import SmallDisk

MiB = 1024 * 1024
#: Seconds a node has to accept writes again once space is freed (it retries every
#: DISK_FULL_RETRY_SECONDS; a leader that lost its lead must win an election first).
RESUME_SECONDS = 30.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 20 MiB tmpfs, as in the issue's reproduction, at the ``node_process`` fixture's
    data directory (skips where it cannot be mounted)."""
    with SmallDisk(tmp_path / "node", 20 * MiB).mounted_for_test() as disk:
        yield disk


def _fill_with_writes(client: aspen.SyncClient, prefix: str) -> ResourceExhaustedError:
    """Put 1 MB values until the node refuses one; return the refusal."""
    for i in range(40):
        try:
            client.kv.put(f"{prefix}/{i}", os.urandom(1_000_000))
        except ResourceExhaustedError as exc:
            return exc
    raise AssertionError("40 MB of writes fitted on a 20 MiB disk")


def _resumes(client: aspen.SyncClient, key: str) -> None:
    """Wait until a 1 MB write succeeds again."""
    wait_for(
        lambda: client.kv.put(key, b"z" * 1_000_000),
        timeout=RESUME_SECONDS,
        interval=0.1,
        ignore=(AspenError,),
        message="a write succeeds once space is freed",
    )


def test_single_node_on_a_full_disk_refuses_writes_stays_up_and_resumes(
    small_disk: SmallDisk, node_process: Any
) -> None:
    node = node_process
    node.start()
    with aspen.connect(node.endpoint, token=node.token, timeout=10) as c:
        c.kv.put("before", "kept")
        small_disk.fill(leave_bytes=12 * MiB)  # other files share the disk
        refused = _fill_with_writes(c, "fill")
        assert "disk is full" in refused.message and str(node.data_dir) in refused.message
        assert node.proc.poll() is None
        assert c.kv.get("before").value == b"kept"  # linearizable reads still work
        disk = c.status()["disk"]
        assert disk["free_bytes"] < disk["reserve_bytes"] + 4 * MiB
    # the second half: restarted on the full disk, the next big write is
    # refused again instead of killing the node
    node.stop()
    node.start()
    with aspen.connect(node.endpoint, token=node.token, timeout=10) as c:
        with pytest.raises(ResourceExhaustedError, match="disk is full"):
            c.kv.put("big", os.urandom(1_000_000))
        assert node.proc.poll() is None
        c.kv.put("small", "fits in what is left")
        small_disk.fill()  # another program takes the rest: nothing fits now
        with pytest.raises(ResourceExhaustedError, match="disk is full"):
            c.kv.put("small", "x")
        small_disk.free()  # the other files go
        _resumes(c, "after")
        assert c.kv.get("before").value == b"kept"


def test_a_leader_whose_commit_fails_on_a_full_disk_survives_and_resumes(
    small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer fills the disk between the free-space check and the commit: LMDB's
    commit fails (EIO from a short write on tmpfs), the node restarts Raft from what LMDB
    holds, fails that write with ``resource_exhausted`` and leads again."""
    monkeypatch.setattr(SpaceGuard, "check", lambda self, nbytes: None)  # the race's window
    config = NodeConfig(data_dir=small_disk.path, listen="127.0.0.1:0")
    with NodeThread(config) as node, node.client(timeout=10) as c:
        c.kv.put("before", "kept")
        small_disk.fill(leave_bytes=4 * MiB)
        refused = _fill_with_writes(c, "fill")
        assert "disk is full" in refused.message
        assert refused.details.get("outcome") == "unknown"
        assert c.kv.get("before").value == b"kept"
        small_disk.free()
        _resumes(c, "after")
        assert c.status()["disk"]["full"] is None


def test_a_full_lmdb_map_refuses_writes_naming_the_map_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LMDB_MAP_SIZE", 16 * MiB)
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0")
    with NodeThread(config) as node, node.client(timeout=10) as c:
        c.kv.put("before", "kept")
        refused = _fill_with_writes(c, "fill")
        assert "LMDB map is nearly full" in refused.message and "LMDB_MAP_SIZE" in refused.message
        assert c.kv.get("before").value == b"kept"
        c.kv.put("small", "still fits")


def _member_index(c: DevCluster, node_id: str) -> int:
    with aspen.connect(c.client_endpoint(1), token=c.token, timeout=5) as client:
        members = client.call("cluster.status")["members"]
    endpoint = members[node_id]["client"]
    return next(i for i in range(1, c.nodes + 1) if c.client_endpoint(i) == endpoint)


def _status(c: DevCluster, i: int) -> dict:
    with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as client:
        return client.call("cluster.status")


def test_a_follower_out_of_disk_never_acks_and_catches_up_once_freed(tmp_path: Path) -> None:
    c = DevCluster(tmp_path / "c", 3, free_base_port(3))
    with SmallDisk(c.node_dir(3), 20 * MiB).mounted_for_test() as disk:
        try:
            c.up()
            follower = _status(c, 3)
            if follower["role"] == "leader":  # the full disk must be a follower's
                with aspen.connect(c.client_endpoint(3), token=c.token, timeout=5) as client:
                    client.call("cluster.transfer_leader", {"id": _status(c, 1)["id"]})
                wait_for(lambda: _status(c, 3)["role"] == "follower", ignore=(AspenError,))
            leader = _member_index(c, wait_for(lambda: _status(c, 1)["leader"]))
            assert leader != 3
            disk.fill(leave_bytes=1 * MiB)
            with aspen.connect(c.client_endpoint(leader), token=c.token, timeout=10) as client:
                for i in range(8):  # 4 MB: committed by the two others, never by node 3
                    client.kv.put(f"k/{i}", os.urandom(500_000))
                last = client.status()["applied_index"]
                wait_for(lambda: _status(c, 3)["disk"]["full"], ignore=(AspenError,))
                behind = _status(c, 3)
                assert c.procs[2].poll() is None
                assert behind["applied_index"] < last
                progress = _status(c, leader)["raft"]["progress"][behind["id"]]
                assert progress["match"] < last  # the leader counts no entry node 3 lacks
                with aspen.connect(c.client_endpoint(3), token=c.token, timeout=5) as on3:
                    assert on3.kv.get("k/7", serializable=True) is None  # reads served
                disk.free()
                wait_for(
                    lambda: _status(c, 3)["applied_index"] >= last,
                    timeout=RESUME_SECONDS,
                    ignore=(AspenError,),
                    message="node 3 catches up once space is freed",
                )
                client.kv.put("after", "x")
            with aspen.connect(c.client_endpoint(3), token=c.token, timeout=5) as on3:
                assert on3.kv.get("k/7", serializable=True) is not None
                assert on3.status()["disk"]["full"] is None
        finally:
            c.down()
