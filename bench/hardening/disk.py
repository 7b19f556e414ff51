"""Issue 9, section 2: a full disk. Prints how a node meets it and how long writes take to
resume once space is freed.

Needs root (it mounts 20 MiB tmpfs disks). Two runs, real node processes:

* single node: a ballast file leaves 12 MiB free, 1 MB puts until one is refused, then
  the ballast is deleted: time from the delete to the first put that succeeds;
* a leader whose commit fails (its free-space check bypassed, as when another program
  fills the disk between check and commit): the same, through Raft's restart from LMDB;
* 3 nodes, one follower on the small disk: ballast leaves 1 MiB there, 8 x 500 kB puts
  (committed by the other two), then the ballast is deleted: time until that follower
  has applied every entry.

Run: ``.venv/bin/python bench/hardening/disk.py`` (2 shared cores: timings are noisy).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aspen
from aspen.errors import AspenError, ResourceExhaustedError
from aspen.node.devcluster import DevCluster, node_command
from aspen.testing import free_base_port, free_port, wait_for
from aspen.testing.disk import SmallDisk

MiB = 1024 * 1024
POLL_SECONDS = 0.01


def _first_success(action: object) -> float:
    """Seconds until ``action()`` stops raising AspenError (polled every POLL_SECONDS)."""
    start = time.monotonic()
    wait_for(action, timeout=60, interval=POLL_SECONDS, ignore=(AspenError,))
    return time.monotonic() - start


def single_node(work: Path) -> None:
    """One node on a 20 MiB disk."""
    disk = SmallDisk(work / "disk", 20 * MiB).mount()
    port = free_port()
    log = open(work / "node.log", "wb")  # noqa: SIM115 - the child's
    env = {**os.environ, "ASPEN_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(
        node_command(disk.path / "node", f"127.0.0.1:{port}"), stdout=log, stderr=log, env=env
    )
    try:
        endpoint = f"127.0.0.1:{port}"
        token_file = disk.path / "node" / "root-token"

        def serving() -> bool:
            with aspen.connect(endpoint, token=token_file.read_text().strip(), timeout=2) as c:
                return bool(c.status())

        wait_for(serving, timeout=30, ignore=(OSError, AspenError))
        token = token_file.read_text().strip()
        with aspen.connect(endpoint, token=token, timeout=10) as c:
            disk.fill(leave_bytes=12 * MiB)
            stored = 0
            outcome = "no refusal"
            for i in range(40):
                try:
                    c.kv.put(f"fill/{i}", os.urandom(1_000_000))
                    stored += 1
                except ResourceExhaustedError as exc:
                    outcome = f"refused: {exc.message}"
                    break
                except AspenError as exc:
                    outcome = f"{exc.code}: {exc.message}"
                    break
            alive = proc.poll() is None
            print(f"single node: {stored} x 1 MB stored, then {outcome}")
            print(f"single node: process alive after the refusal: {alive}")
            if not alive:
                return
            print(f"single node: get of a stored key: {c.kv.get('fill/0') is not None}")
            disk.free()
            took = _first_success(lambda: c.kv.put("after", os.urandom(1_000_000)))
            print(f"single node: disk freed -> first 1 MB write succeeds: {took * 1000:.0f} ms")
    finally:
        proc.terminate()
        proc.wait(30)
        disk.unmount()


def failed_commit(work: Path) -> None:
    """One in-process node whose free-space check is bypassed (another writer filling the
    disk between check and commit): LMDB's commit itself fails."""
    from aspen.node.config import NodeConfig
    from aspen.node.runner import NodeThread
    from aspen.storage.space import SpaceGuard

    disk = SmallDisk(work / "disk2", 20 * MiB).mount()
    check, SpaceGuard.check = SpaceGuard.check, lambda self, nbytes: None
    try:
        config = NodeConfig(data_dir=disk.path / "node", listen="127.0.0.1:0")
        with NodeThread(config) as node, node.client(timeout=10) as c:
            disk.fill(leave_bytes=4 * MiB)
            for i in range(40):
                try:
                    c.kv.put(f"fill/{i}", os.urandom(1_000_000))
                except ResourceExhaustedError as exc:
                    print(f"failed commit: put {i} refused: {exc.message}")
                    break
            disk.free()
            took = _first_success(lambda: c.kv.put("after", os.urandom(1_000_000)))
            print(f"failed commit: disk freed -> first 1 MB write succeeds: {took * 1000:.0f} ms")
    finally:
        SpaceGuard.check = check
        disk.unmount()


def follower(work: Path) -> None:
    """Three nodes; node 3's disk is full."""
    c = DevCluster(work / "c", 3, free_base_port(3), env={"ASPEN_LOAD_PLUGINS": ""})
    disk = SmallDisk(c.node_dir(3), 20 * MiB).mount()
    try:
        c.up()

        def status(i: int) -> dict:
            with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as client:
                return client.call("cluster.status")

        if status(3)["role"] == "leader":
            with aspen.connect(c.client_endpoint(3), token=c.token, timeout=5) as client:
                client.call("cluster.transfer_leader", {"id": status(1)["id"]})
            wait_for(lambda: status(3)["role"] == "follower", ignore=(AspenError,))
        endpoints = ",".join(c.client_endpoint(i) for i in (1, 2))
        disk.fill(leave_bytes=1 * MiB)
        with aspen.connect(endpoints, token=c.token, timeout=10) as client:
            times = []
            for i in range(8):
                start = time.monotonic()
                client.kv.put(f"k/{i}", os.urandom(500_000))
                times.append(time.monotonic() - start)
            last = client.status()["applied_index"]
        wait_for(lambda: status(3)["disk"]["full"], ignore=(AspenError,))
        behind = status(3)
        print(
            f"3 nodes: 8 x 500 kB committed with node 3's disk full (slowest put "
            f"{max(times) * 1000:.0f} ms); node 3 applied {behind['applied_index']} of {last}, "
            f"process alive: {c.procs[2].poll() is None}"
        )
        disk.free()
        start = time.monotonic()
        wait_for(
            lambda: status(3)["applied_index"] >= last,
            timeout=60,
            interval=POLL_SECONDS,
            ignore=(AspenError,),
        )
        took = time.monotonic() - start
        print(f"3 nodes: node 3's disk freed -> caught up: {took * 1000:.0f} ms")
    finally:
        c.down()
        disk.unmount()


def main() -> None:
    """Run both and print the figures."""
    if os.geteuid() != 0:
        sys.exit("needs root to mount tmpfs disks")
    with tempfile.TemporaryDirectory() as tmp:
        single_node(Path(tmp))
        failed_commit(Path(tmp))
        follower(Path(tmp))


if __name__ == "__main__":
    main()
