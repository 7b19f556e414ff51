"""A live watch catching up through a huge transaction on a real 3-node cluster: the
leader keeps its term and keeps committing writes while the watch reads the history."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import aspen
from aspen import limits
from aspen.client.txn import Op
from aspen.errors import AspenError
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port, wait_for

pytestmark = pytest.mark.slow

#: Keys one delete-range removes under the live watch (the issue's reproduction).
KEYS = 100_000
#: Longest election timeout, in seconds (randomized in [election, 2 * election) ticks).
ELECTION_SECONDS = 2 * limits.RAFT_ELECTION_TICKS * limits.RAFT_TICK_SECONDS
#: A put slower than this means the cluster stopped serving: a liveness bound, not a
#: performance figure (applying the delete itself delays writes behind it ~2 s on a
#: shared 2-core machine; the unfixed watch froze the leader ~20 s).
LIVENESS_SECONDS = 5 * ELECTION_SECONDS


@pytest.fixture
def cluster3(tmp_path) -> Iterator[DevCluster]:
    """A fresh 3-node cluster of real processes."""
    c = DevCluster(tmp_path / "c", 3, free_base_port(3))
    try:
        c.up()
        yield c
    finally:
        c.down()


def _statuses(c: DevCluster) -> list[dict]:
    """``cluster.status`` of every node, in node order."""
    out = []
    for i in range(1, c.nodes + 1):
        with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as cl:
            out.append(cl.call("cluster.status"))
    return out


def _leadership(c: DevCluster) -> set[tuple[str, int]]:
    """The (leader id, term) pairs the nodes report (one pair when they agree)."""
    return {(st["leader"], int(st["raft"]["term"])) for st in _statuses(c)}


class _Writer(threading.Thread):
    """Puts one key in a loop; records each put's latency and any failure."""

    def __init__(self, endpoints: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client = aspen.connect(endpoints, token=token, timeout=2 * LIVENESS_SECONDS)
        self.latencies: list[float] = []
        self.errors: list[AspenError] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.client as c:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    c.kv.put("p/x", "v")
                except AspenError as exc:
                    self.errors.append(exc)
                self.latencies.append(time.monotonic() - started)


def test_delete_of_100k_keys_under_a_live_watch_keeps_leader_and_writes(cluster3) -> None:
    c = cluster3
    everyone = ",".join(c.client_endpoint(i) for i in range(1, c.nodes + 1))
    with aspen.connect(everyone, token=c.token, timeout=60) as cl:
        for start in range(0, KEYS, limits.MAX_TXN_OPS):
            cl.kv.txn(success=[Op.put(f"e/{i:06d}", "v") for i in range(start, start + 1000)])
    before = wait_for(lambda: len(v := _leadership(c)) == 1 and v, timeout=30)
    leader = next(i for i, st in enumerate(_statuses(c), 1) if st["role"] == "leader")

    writer = _Writer(everyone, c.token)
    writer.start()
    seen: list[bytes] = []
    puts_mid_catch_up = 0
    try:
        wait_for(lambda: len(writer.latencies) >= 3, timeout=LIVENESS_SECONDS)
        with aspen.connect(c.client_endpoint(leader), token=c.token, timeout=60) as cl:
            watch = cl.watch("e/", prefix=True)
            assert cl.kv.delete("e/", prefix=True).deleted == KEYS
            for resp in watch:
                seen.extend(ev.kv.key for ev in resp.events if ev.type == "delete")
                if resp.more and not puts_mid_catch_up:
                    # the watch is mid-way through the delete's history: writes go on
                    done = len(writer.latencies)
                    wait_for(lambda d=done: len(writer.latencies) >= d + 3, LIVENESS_SECONDS)
                    puts_mid_catch_up = len(writer.latencies) - done
                if len(seen) >= KEYS:
                    break
            watch.cancel()
    finally:
        writer.stop.set()
        writer.join(2 * LIVENESS_SECONDS)
    assert puts_mid_catch_up >= 3
    assert seen == [f"e/{i:06d}".encode() for i in range(KEYS)]
    assert writer.errors == []
    assert max(writer.latencies) < LIVENESS_SECONDS
    assert _leadership(c) == before  # same leader, same term, on every node
