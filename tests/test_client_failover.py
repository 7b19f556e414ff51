"""Issue 9: across a kill -9 of the leader of a 3-node cluster (real processes), the
client retries what is safe to retry, so a steady writer and reader see no
``NotLeaderError``; a write that was in flight on the dead leader may fail with
``unavailable`` (it may or may not have been applied), a read never does."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import aspen
from aspen.errors import AspenError, NotLeaderError, UnavailableError
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port, wait_for


@pytest.fixture
def cluster3(tmp_path) -> Iterator[DevCluster]:
    """A fresh 3-node cluster of real processes."""
    c = DevCluster(tmp_path / "c", 3, free_base_port(3))
    try:
        c.up()
        yield c
    finally:
        c.down()


class Loop:
    """A thread calling ``op(client, n)`` in a loop, counting successes and keeping errors."""

    def __init__(self, c: DevCluster, op: Any) -> None:
        self.endpoints = ",".join(c.client_endpoint(i) for i in range(1, c.nodes + 1))
        self.token = c.token
        self.op = op
        self.acked: list[float] = []
        self.errors: list[AspenError] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with aspen.connect(self.endpoints, token=self.token) as client:
            n = 0
            while not self.stop.is_set():
                try:
                    self.op(client, n)
                    self.acked.append(time.monotonic())
                except AspenError as exc:
                    self.errors.append(exc)
                n += 1

    def __enter__(self) -> Loop:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(60)


def leader_index(c: DevCluster) -> int:
    """1-based index of the current leader."""

    def find() -> int | None:
        for i in range(1, c.nodes + 1):
            if c.procs[i - 1].poll() is not None:
                continue
            try:
                with aspen.connect(c.client_endpoint(i), token=c.token, timeout=1) as cl:
                    if cl.call("cluster.status")["role"] == "leader":
                        return i
            except (AspenError, OSError):
                continue
        return None

    return wait_for(find, timeout=30)


def test_kill9_leader_surfaces_no_not_leader_error(cluster3: DevCluster) -> None:
    c = cluster3
    with (
        Loop(c, lambda cl, n: cl.kv.put("failover/w", str(n))) as writer,
        Loop(c, lambda cl, n: cl.kv.get("failover/w")) as reader,
    ):
        wait_for(lambda: len(writer.acked) > 50 and len(reader.acked) > 50, timeout=30)
        leader = leader_index(c)
        c.procs[leader - 1].send_signal(signal.SIGKILL)
        c.procs[leader - 1].wait(10)
        killed = time.monotonic()
        for loop in (writer, reader):
            wait_for(lambda loop=loop: sum(t > killed for t in loop.acked) > 50, timeout=60)
    assert [e for e in writer.errors + reader.errors if isinstance(e, NotLeaderError)] == []
    # a write in flight on the dead leader is ambiguous and surfaces as unavailable
    assert all(isinstance(e, UnavailableError) for e in writer.errors), writer.errors
    assert reader.errors == []
