"""kill -9 at any moment loses no acknowledged write and leaves a store that opens: a single
node's, and a cluster leader's right after it answered writes before their apply committed
(``Replicator._answer_early``)."""

from __future__ import annotations

import random
import threading
import time

import pytest

import aspen
from aspen.errors import AspenError
from aspen.testing import LocalCluster, wait_for

#: kill/restart cycles per test run.
CYCLES = 4
#: concurrent writers (each its own connection), so kills land inside group commits.
WRITERS = 8
#: Leader kill/restart rounds of the cluster test.
LEADER_KILLS = 2


def _writer(endpoint: str, token: str, name: str, acked: dict, stop: threading.Event) -> None:
    try:
        with aspen.connect(endpoint, token=token, timeout=5) as c:
            i = 0
            while not stop.is_set():
                key, value = f"{name}/{i:06d}", f"value-{name}-{i}".encode()
                c.kv.put(key, value)
                acked[key] = value  # only after the node acknowledged it
                i += 1
    except (AspenError, OSError):
        pass  # the node died under us: writes not acknowledged are allowed to be lost


@pytest.mark.slow
def test_kill9_during_concurrent_writes_loses_nothing_acknowledged(node_process) -> None:
    rng = random.Random(20261123)
    acked: dict[str, bytes] = {}
    for cycle in range(CYCLES):
        node_process.start()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_writer,
                args=(node_process.endpoint, node_process.token, f"c{cycle}w{w}", acked, stop),
            )
            for w in range(WRITERS)
        ]
        for t in threads:
            t.start()
        # let writes flow, then kill without warning at a random moment
        deadline = time.monotonic() + 10
        target = len(acked) + rng.randint(200, 1500)
        while len(acked) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        node_process.kill9()
        stop.set()
        for t in threads:
            t.join(20)
        assert len(acked) >= target - 8, "writers made no progress before the kill"

    node_process.start()
    with aspen.connect(node_process.endpoint, token=node_process.token) as c:
        missing = _missing(c, acked, serializable=False)
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def _scan_all(c, *, serializable: bool = False):
    start = b"\0"
    while True:
        page = c.kv.range(start, end=b"\0", limit=5000, serializable=serializable)
        yield from page.kvs
        if not page.more:
            return
        start = page.kvs[-1].key + b"\0"


def _missing(c, acked: dict[str, bytes], *, serializable: bool) -> list[str]:
    """The acknowledged keys a node's range does not return with their value."""
    present = {kv.key.decode(): kv.value for kv in _scan_all(c, serializable=serializable)}
    return [k for k, v in acked.items() if present.get(k) != v]


@pytest.mark.slow
def test_kill9_cluster_leader_right_after_answers_loses_nothing_acknowledged(
    cluster: LocalCluster,
) -> None:
    rng = random.Random(20261207)
    acked: dict[str, bytes] = {}
    for round_ in range(LEADER_KILLS):
        leader = cluster.leader_index()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_writer,
                args=(
                    cluster.client_endpoint(leader),
                    cluster.token,
                    f"w{round_}x{w}",
                    acked,
                    stop,
                ),
            )
            for w in range(WRITERS)
        ]
        for t in threads:
            t.start()
        target = len(acked) + rng.randint(100, 600)
        deadline = time.monotonic() + 60
        while len(acked) < target and time.monotonic() < deadline:
            time.sleep(0.001)  # kill at once: answers just sent, their applies in flight
        cluster.kill(leader)
        stop.set()
        for t in threads:
            t.join(20)
        assert len(acked) >= target - WRITERS, "writers made no progress before the kill"
        # the killed leader applies again from its own log what it had answered
        cluster.restart(leader)
        snapshot = dict(acked)
        with cluster.client(leader) as c:
            wait_for(
                lambda c=c, snapshot=snapshot: not _missing(c, snapshot, serializable=True),
                timeout=60,
                message="the restarted leader holds every acknowledged write",
                ignore=(AspenError, OSError),
            )
    with cluster.client() as c:
        missing = _missing(c, acked, serializable=False)
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


@pytest.mark.slow
def test_kill9_of_a_leader_and_a_follower_together_loses_nothing_acknowledged(
    cluster: LocalCluster,
) -> None:
    """A follower acknowledges entries once its WAL holds them, before it applies the
    committed entries of the same cycle (``Replicator._ack_before_apply``): killed with the
    leader right then and restarted, it still holds every write the leader answered (each
    is in the WAL of a quorum, which the two followers are now)."""
    leader = cluster.leader_index()
    follower = random.Random(20261207).choice([i for i in range(1, 4) if i != leader])
    acked: dict[str, bytes] = {}
    stop = threading.Event()
    endpoint = cluster.client_endpoint(leader)
    threads = [
        threading.Thread(target=_writer, args=(endpoint, cluster.token, f"lf{w}", acked, stop))
        for w in range(WRITERS)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 400, timeout=60, message="writes acknowledged")
    cluster.kill(leader)
    cluster.kill(follower)
    stop.set()
    for t in threads:
        t.join(20)
    cluster.restart(follower)
    snapshot = dict(acked)
    with cluster.client(follower) as c:
        wait_for(
            lambda: not _missing(c, snapshot, serializable=False),
            timeout=60,
            message="the two followers hold every acknowledged write",
            ignore=(AspenError, OSError),
        )
