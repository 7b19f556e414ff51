"""Issue 18, "lease expiry with many leases (100k leases, 1M keys attached)": a 3-node
cluster, ``--leases`` leases of ``--ttl`` seconds with ``--keys-per-lease`` keys each, all
running out within a few seconds of each other while a writer puts small values on the
leader. Prints the time until every leased key is gone (from the last lease's deadline),
the writer's put latency (p50/p99/max) during the expiry, the largest number of keys one
expiry command deleted (one revision), whether every node kept its term (no election:
heartbeats went on), and each node's peak RSS.

    .venv/bin/python bench/hardening/lease_expiry.py [--leases 99000] [--keys-per-lease 10]

``--loop-probe`` measures instead what a new leader's lease load costs its event loop: a
real LMDB store with ``--leases`` leases, the load as the node runs it now (read and
indexed in a worker thread) and as it ran before (twice on the loop: at the leadership
change and when the election no-op applied), with the loop's longest stall meanwhile.

The load (grants, then 1000-put txns) must finish inside the TTL: ``--ttl`` defaults to
what a 2-core shared machine needs for the default size. Nodes and load share the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from txn import RssSampler, Writer, percentile, rss_mb  # bench/hardening/txn.py

import aspen
from aspen.client.txn import Op
from aspen.kv.state_machine import KVStateMachine
from aspen.node.leases import LeaseService
from aspen.storage import Storage
from aspen.testing import LocalCluster, free_base_port

#: Concurrent lease.grant calls while loading.
GRANT_CONCURRENCY = 64


def main() -> None:
    """Run the reproduction once and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leases", type=int, default=99_000, help="under MAX_LEASES (100k)")
    ap.add_argument("--keys-per-lease", type=int, default=10)
    ap.add_argument("--value-bytes", type=int, default=64)
    ap.add_argument("--ttl", type=int, default=300, help="seconds; the load must fit in it")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--loop-probe", action="store_true", help="only the lease load's loop stall")
    args = ap.parse_args()
    if args.loop_probe:
        asyncio.run(loop_probe(args.leases))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp), args.nodes, free_base_port(args.nodes), env={})
        cluster.up()
        try:
            run(cluster, args)
        finally:
            cluster.down()


async def grant_all(endpoint: str, token: str, n: int, ttl: int) -> list[int]:
    """Grant ``n`` leases of ``ttl`` seconds, ``GRANT_CONCURRENCY`` at a time."""
    ids: list[int] = []
    async with aspen.aconnect(endpoint, token=token, timeout=120) as c:

        async def grant(count: int) -> None:
            for _ in range(count):
                ids.append((await c.lease.grant(ttl)).id)

        share = -(-n // GRANT_CONCURRENCY)
        await asyncio.gather(*(grant(min(share, n - k * share)) for k in range(GRANT_CONCURRENCY)))
    return ids


def terms(cluster: LocalCluster) -> dict[int, int]:
    """Each node's Raft term."""
    out = {}
    for i in range(1, cluster.nodes + 1):
        with cluster.client(i, timeout=30) as c:
            out[i] = int(c.call("cluster.status")["raft"]["term"])
    return out


class DeleteCounter(threading.Thread):
    """Watches ``l/`` and counts the deletes of each revision (one revision per command)."""

    def __init__(self, endpoint: str, token: str, expected: int) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.token, self.expected = endpoint, token, expected
        self.per_revision: Counter[int] = Counter()
        self.done_at = 0.0
        self.first_at = 0.0

    def run(self) -> None:
        """Count until every expected key was deleted."""
        with aspen.connect(self.endpoint, token=self.token, timeout=600) as c:
            deleted = 0
            with c.watch("l/", prefix=True) as watch:
                for response in watch:
                    for event in response.events:
                        if event.type == "delete":
                            self.first_at = self.first_at or time.monotonic()
                            self.per_revision[event.kv.mod_revision] += 1
                            deleted += 1
                    if deleted >= self.expected:
                        self.done_at = time.monotonic()
                        return


async def longest_stall(work: Any) -> float:
    """Run ``work()`` (a coroutine function) and return the event loop's longest stall."""
    stall, done = 0.0, asyncio.Event()

    async def tick() -> None:
        nonlocal stall
        while not done.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.001)
            stall = max(stall, time.monotonic() - t - 0.001)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await work()
    done.set()
    await ticker
    return stall


async def loop_probe(leases: int) -> None:
    """A new leader's lease load, off the loop and as before on it: the loop's longest stall."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "db", sync=False)
        sm = KVStateMachine(storage)
        with storage.begin(write=True) as txn:
            for i in range(1, leases + 1):
                sm.apply(txn, i, 1, {"op": "lease_grant", "id": i, "ttl": 60})

        async def never(command: dict) -> None:
            raise AssertionError(command)

        service = LeaseService(storage, sm, propose=never, require_leader=lambda: None)

        async def now() -> None:
            service.leadership_changed(True)
            service.leader_ready()
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run)
                while service.loading:
                    await anyio.sleep(0.001)
                tg.cancel_scope.cancel()

        async def before() -> None:  # what the node did before: both loads on the loop
            service.track(sm.lease_ttls(), replace=True)
            service.track(sm.lease_ttls(), replace=False)

        figures: dict[str, list[tuple[float, float]]] = {"now": [], "before": []}
        for _ in range(5):  # alternating, medians: the machine is shared
            for name, work in (("now", now), ("before", before)):
                t0 = time.monotonic()
                stall = await longest_stall(work)
                figures[name].append((time.monotonic() - t0, stall))
        for name, runs in figures.items():
            took = statistics.median(t for t, _ in runs)
            stall = statistics.median(s for _, s in runs)
            print(
                f"{leases} leases, a new leader's load {name}: {took:.3f} s in all, longest "
                f"event-loop stall {stall * 1000:.1f} ms (medians of {len(runs)})"
            )
        storage.close()


def run(cluster: LocalCluster, args: argparse.Namespace) -> None:
    """Load, let everything expire under a writer, report."""
    leader = cluster.leader_index()
    endpoint = cluster.client_endpoint(leader)
    pids = [p.pid for p in cluster.procs]
    keys = args.leases * args.keys_per_lease
    t0 = time.monotonic()
    ids = asyncio.run(grant_all(endpoint, cluster.token, args.leases, args.ttl))
    granted = time.monotonic()
    first_deadline, last_deadline = t0 + args.ttl, granted + args.ttl
    value = b"v" * args.value_bytes
    with aspen.connect(endpoint, token=cluster.token, timeout=120) as c:
        batch: list = []
        for n, lease in enumerate(ids):
            for k in range(args.keys_per_lease):
                batch.append(Op.put(f"l/{n:07d}/{k:05d}", value, lease=lease))
                if len(batch) == 1000:  # MAX_TXN_OPS
                    c.kv.txn(success=batch)
                    batch = []
        if batch:
            c.kv.txn(success=batch)
    loaded = time.monotonic()
    print(
        f"{args.nodes} nodes; {args.leases} leases x {args.keys_per_lease} keys = {keys} keys of "
        f"{args.value_bytes} B; granted in {granted - t0:.1f} s, "
        f"keys put in {loaded - granted:.1f} s"
    )
    if loaded > first_deadline:
        print(
            f"WARNING: the load outlasted the TTL by {loaded - first_deadline:.0f} s: raise --ttl"
        )
    before = terms(cluster)
    counter = DeleteCounter(endpoint, cluster.token, keys)
    counter.start()
    writer = Writer(endpoint, cluster.token)
    samplers = [RssSampler(pid) for pid in pids]
    for s in samplers:
        s.start()
    time.sleep(max(0.0, first_deadline - time.monotonic() - 2))
    writer.start()
    counter.join(timeout=args.ttl + 600)
    end = counter.done_at or time.monotonic()
    writer.stop.set()
    writer.join()
    after = terms(cluster)
    puts = [d for start, d, e in writer.puts if counter.first_at <= start <= end]
    errors = sum(1 for start, _, e in writer.puts if e and counter.first_at <= start <= end)
    gone = "all" if counter.done_at else "NOT all"
    print(
        f"{gone} keys gone {end - last_deadline:.1f} s after the last lease's deadline "
        f"({end - counter.first_at:.1f} s from the first delete)"
    )
    print(
        f"leader puts during the expiry: {len(puts)}, p50 {percentile(puts, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(puts, 0.99) * 1000:.1f} ms, max {max(puts, default=0) * 1000:.1f} ms, "
        f"{errors} errors"
    )
    most = max(counter.per_revision.values(), default=0)
    print(f"expiry commands: {len(counter.per_revision)}, most keys deleted by one: {most}")
    print(f"terms before {before} after {after}: {'kept' if before == after else 'CHANGED'}")
    if before != after:
        for i in range(1, cluster.nodes + 1):
            said = cluster.log(i).read_text().splitlines()
            print(f"  node {i} log:", *said[-4:], sep="\n    ")
    print("peak RSS per node (MB):", [round(rss_mb(pid)) for pid in pids])


if __name__ == "__main__":
    main()
