"""`aspen dev up` as a user runs it (what ./start runs): real node processes, kill -9, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import aspen
from aspen.cli.output import EXIT_ERROR
from aspen.errors import AspenError
from aspen.node.config import address_in_use
from aspen.node.devcluster import NODE_START_SECONDS, PROMOTE_SECONDS
from aspen.testing import free_base_port, wait_for

pytestmark = pytest.mark.slow

#: Seconds `aspen dev up` may take to form a fresh 3-node cluster (start, join, promote).
UP_SECONDS = 3 * NODE_START_SECONDS + PROMOTE_SECONDS
#: Seconds to wait for a node to be reported, restarted or stopped.
EVENT_SECONDS = 60.0


@dataclass
class DevUp:
    """A running `aspen dev up` process and where it keeps things."""

    proc: subprocess.Popen
    data_dir: Path
    base_port: int
    stderr: Path

    def endpoint(self, i: int) -> str:
        """Client address of node ``i``."""
        return f"127.0.0.1:{self.base_port + i}"

    @property
    def token(self) -> str:
        """The cluster's root token."""
        return (self.data_dir / "n1" / "root-token").read_text().strip()

    def pid(self, i: int) -> int | None:
        """Process id of node ``i`` (None when its pid file is gone)."""
        try:
            return int((self.data_dir / f"n{i}.pid").read_text())
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        """What `aspen dev up` printed on stderr so far."""
        return self.stderr.read_text()

    def status(self, i: int) -> dict:
        """``cluster.status`` of node ``i``."""
        with aspen.connect(self.endpoint(i), token=self.token, timeout=2) as c:
            return c.call("cluster.status")

    def leader(self) -> int:
        """Index of the node that is leader (waits until there is one)."""

        def find() -> int | None:
            for i in (1, 2, 3):
                try:
                    if self.status(i)["role"] == "leader":
                        return i
                except (AspenError, OSError):
                    pass
            return None

        return wait_for(find, EVENT_SECONDS, 0.2, message="a leader")

    def put_through(self, nodes: list[int], key: bytes, value: bytes) -> None:
        """Write ``key`` through the cluster while only ``nodes`` run (retries elections)."""
        endpoints = ",".join(self.endpoint(i) for i in nodes)

        def put() -> bool:
            with aspen.connect(endpoints, token=self.token, timeout=5) as c:
                c.kv.put(key, value)
                return c.kv.get(key).value == value

        wait_for(put, EVENT_SECONDS, 0.2, ignore=(AspenError, OSError), message="a write")


def _dev_up_command(data_dir: Path, base_port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "aspen", "dev", "up", "--nodes", "3",
        "--base-port", str(base_port), "--data-dir", str(data_dir), *extra,
    ]  # fmt: skip


@contextmanager
def dev_up(tmp_path: Path, *extra: str) -> Iterator[DevUp]:
    """Run `aspen dev up` (3 nodes) in the background until its cluster is up."""
    base_port = free_base_port(3)
    data_dir = tmp_path / "dev"
    stderr = tmp_path / "dev-up.err"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            _dev_up_command(data_dir, base_port, *extra),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "ASPEN_SECRETS_HTTP_LISTEN": "off"},
        )
    up = DevUp(proc, data_dir, base_port, stderr)
    try:
        wait_for(
            lambda: proc.poll() is not None or (data_dir / "env").exists(),
            UP_SECONDS,
            0.1,
            message="the cluster is up",
        )
        assert proc.poll() is None, up.log()
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(EVENT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_the_leader_others_serve_and_it_comes_back(tmp_path):
    with dev_up(tmp_path) as up:
        leader = up.leader()
        old_pid = up.pid(leader)
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        others = [i for i in (1, 2, 3) if i != leader]
        up.put_through(others, b"after", b"kill")
        wait_for(
            lambda: f"node {leader} ({up.endpoint(leader)}) exited: killed by SIGKILL" in up.log(),
            EVENT_SECONDS,
            message="the exit is reported",
        )
        assert up.proc.poll() is None  # the cluster did not stop
        wait_for(lambda: up.pid(leader) not in (None, old_pid), EVENT_SECONDS, message="restart")
        assert f"node {leader} restarted" in up.log()
        status = wait_for(
            lambda: up.status(leader), EVENT_SECONDS, 0.2, ignore=(AspenError, OSError)
        )
        assert status["role"] in ("leader", "follower")
        pids = [up.pid(i) for i in (1, 2, 3)]

        # Ctrl-C (SIGINT) stops the whole cluster, every node cleanly
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(EVENT_SECONDS) == 0
        assert not any(_alive(pid) for pid in pids if pid is not None)
        assert all(up.pid(i) is None for i in (1, 2, 3))


def test_a_second_dev_up_on_busy_ports_fails_clearly(tmp_path):
    with dev_up(tmp_path) as up:
        second = subprocess.run(
            _dev_up_command(tmp_path / "other", up.base_port),
            capture_output=True,
            text=True,
            timeout=EVENT_SECONDS,
        )
        assert second.returncode == EXIT_ERROR
        assert "is up" not in second.stdout
        assert f"{up.endpoint(1)}, " in second.stderr
        assert "already in use" in second.stderr and "--base-port" in second.stderr
        assert not (tmp_path / "other").exists()  # nothing was started
        assert up.proc.poll() is None and up.status(1)


def test_restart_never_leaves_the_node_down_and_the_others_serving(tmp_path):
    with dev_up(tmp_path, "--restart", "never") as up:
        follower = next(i for i in (1, 2, 3) if i != up.leader())
        pid = up.pid(follower)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: "stays down (--restart never)" in up.log(),
            EVENT_SECONDS,
            message="the exit is reported",
        )
        up.put_through([i for i in (1, 2, 3) if i != follower], b"k", b"v")
        assert up.pid(follower) is None
        assert not address_in_use("127.0.0.1", up.base_port + follower)
        assert "restarted" not in up.log()
        assert up.proc.poll() is None


def test_a_node_that_keeps_failing_is_restarted_with_a_growing_backoff(tmp_path):
    with dev_up(tmp_path) as up:
        follower = next(i for i in (1, 2, 3) if i != up.leader())
        pid = up.pid(follower)
        assert pid is not None
        key_file = up.data_dir / f"n{follower}" / "node.key"
        key = key_file.read_bytes()
        key_file.write_bytes(b"not a key")  # read at start-up only: every restart fails
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "restarting it in 4s" in up.log(), EVENT_SECONDS, message="backoff")
        key_file.write_bytes(key)
        log = up.log()
        delays = re.findall(rf"node {follower} \(.*\) exited: .*; restarting it in (\w+)", log)
        assert delays[:3] == ["1s", "2s", "4s"]
        assert "exited: killed by SIGKILL" in log and "exited: exit code 1" in log
        # the node can start again: the next restart serves
        wait_for(lambda: up.status(follower), EVENT_SECONDS, 0.2, ignore=(AspenError, OSError))
        assert up.proc.poll() is None


def test_sigterm_while_the_nodes_start_stops_them(tmp_path):
    data_dir = tmp_path / "dev"
    proc = subprocess.Popen(
        _dev_up_command(data_dir, free_base_port(3)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ASPEN_SECRETS_HTTP_LISTEN": "off"},
    )
    try:
        pid_file = data_dir / "n1.pid"
        wait_for(pid_file.exists, UP_SECONDS, 0.01, message="node 1 was started")
        node1 = int(wait_for(lambda: pid_file.read_text().strip(), EVENT_SECONDS))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(EVENT_SECONDS) == 0
        wait_for(lambda: not _alive(node1), EVENT_SECONDS, message="node 1 stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
