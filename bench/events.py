"""The event journal (docs/events.md): publish rate, and publish-to-hook-start latency.

On a local cluster of real node processes (1 node, then 3) running the core and
aspen-hooks, in one run:

1. closed loop, ``--clients`` async clients on the leader for ``--duration`` seconds per
   phase, the three phases interleaved for ``--rounds`` rounds (the machine drifts): a plain
   ``kv.put`` of 100 bytes; ``events.publish`` of a 100-byte payload on its own; a
   ``kv.txn`` putting a key, and one putting a key and publishing an event about it (what a
   plugin does: compare it with the txn that only puts); the
   median over the rounds of ops/s and p50/p99, and the ratio of the medians to the put's;
2. paced publishes (``--paced`` at 50/s): time from sending ``events.publish`` to a python
   handler on ``bench.paced`` starting (``bench/hooks_support/bench_hook.py``), p50/p99.

Before the clusters, the CPU one apply costs (the state machine on real LMDB, in this
process, 500 commands per write transaction as a group commit would): a put, a publish,
a txn putting a key and publishing; the least noisy figure on a shared machine.

    .venv/bin/python bench/events.py [--duration 3] [--rounds 3] [--clients 16] [--paced 200]

No peer has this feature in the same shape (etcd's watch is per key range, not a named
journal), so the ratios are against Aspen's own put. 2 cores are shared by the nodes, the
handler and the load generator: report ratios from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import free_port

import aspen
from aspen.node.devcluster import DevCluster

HERE = Path(__file__).resolve().parent
PAYLOAD = b"p" * 100


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


async def _closed_loop(
    endpoint: str, token: str, clients: int, seconds: float, op: Callable[[Any, int], Awaitable]
) -> dict[str, float]:
    """``clients`` connections each running ``op`` back to back for ``seconds``."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def one(n: int) -> None:
        async with aspen.aconnect(endpoint, token=token, timeout=30) as c:
            i = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await op(c, n * 10_000_000 + i)
                latencies.append(time.perf_counter() - started)
                i += 1

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        for n in range(clients):
            tg.start_soon(one, n)
    took = time.monotonic() - began
    return {
        "ops_per_s": len(latencies) / took,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": _percentile(latencies, 99) * 1e3,
    }


async def _put(c: Any, i: int) -> None:
    await c.kv.put(f"bench/{i}".encode(), PAYLOAD)


async def _publish(c: Any, i: int) -> None:
    await c.events.publish("bench.tick", f"s{i}", PAYLOAD)


async def _txn_put(c: Any, i: int) -> None:
    await c.call("kv.txn", {"success": [{"put": {"key": f"bench/{i}".encode(), "value": PAYLOAD}}]})


async def _put_and_publish(c: Any, i: int) -> None:
    key = f"bench/{i}".encode()
    event = {"name": "bench.put", "subject": f"s{i}", "payload": PAYLOAD}
    await c.call(
        "kv.txn", {"success": [{"put": {"key": key, "value": PAYLOAD}}, {"publish": event}]}
    )


#: The closed-loop phases, run in this order in every round.
PHASES = {
    "put": _put,
    "publish": _publish,
    "txn(put)": _txn_put,
    "txn(put+publish)": _put_and_publish,
}


def _paced(client: Any, count: int, log: Path) -> list[float]:
    """Publish ``count`` events at 50/s; return send-to-handler-start latencies (s)."""
    sent: dict[str, float] = {}
    for i in range(count):
        subject = f"e{i:05d}"
        sent[subject] = time.time()
        client.events.publish("bench.paced", subject)
        time.sleep(0.02)
    deadline = time.monotonic() + 60
    started: dict[str, float] = {}
    while time.monotonic() < deadline and len(started) < count:
        time.sleep(0.2)
        rows = [line.split(" ", 1) for line in log.read_text().splitlines()] if log.exists() else []
        started = {s: float(t) for t, s in rows if s in sent}
    return [started[s] - sent[s] for s in started]


def _apply_cpu(tmp: Path, count: int = 20_000) -> dict[str, float]:
    """Process CPU µs per applied command, by kind (best of 3)."""
    from aspen.kv import put_command, txn_command
    from aspen.kv.state_machine import KVStateMachine
    from aspen.storage import Storage

    def publish(i: int) -> dict[str, Any]:
        return {"publish": {"name": "bench.tick", "subject": f"s{i}", "payload": PAYLOAD}}

    kinds = {
        "put": lambda i: put_command({"key": f"bench/{i}", "value": PAYLOAD}),
        "publish": lambda i: txn_command({"success": [publish(i)]}),
        "txn(put)": lambda i: txn_command(
            {"success": [{"put": {"key": f"bench/{i}", "value": PAYLOAD}}]}
        ),
        "txn(put+publish)": lambda i: txn_command(
            {"success": [{"put": {"key": f"bench/{i}", "value": PAYLOAD}}, publish(i)]}
        ),
    }
    best: dict[str, float] = {}
    for attempt in range(3):
        for kind, make in kinds.items():
            storage = Storage(tmp / f"apply-{kind}-{attempt}", sync=False)
            sm = KVStateMachine(storage)
            commands = [make(i) for i in range(count)]
            began = time.process_time()
            for lo in range(0, count, 500):
                with storage.begin(write=True) as txn:
                    for i, command in enumerate(commands[lo : lo + 500], lo + 1):
                        sm.apply(txn, i, 1, command)
            spent = (time.process_time() - began) / count * 1e6
            best[kind] = min(best.get(kind, spent), spent)
            storage.close()
    return best


def _measure(nodes: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    log = tmp / f"hook-{nodes}.log"
    cluster = DevCluster(
        tmp / f"c{nodes}",
        nodes,
        free_port() // 10 * 10 % 20000 + 30000,
        env={
            "ASPEN_LOAD_PLUGINS": "hooks",
            "PYTHONPATH": str(HERE / "hooks_support"),
            "ASPEN_BENCH_HOOK_LOG": str(log),
        },
    )
    figures: dict[str, Any] = {}
    try:
        cluster.up()
        endpoints = ",".join(cluster.client_endpoint(i) for i in range(1, nodes + 1))
        with aspen.connect(endpoints, token=cluster.token, timeout=30) as client:
            status = client.call("cluster.status")
            leader = status["members"][status["leader"]]["client"]
            for _ in range(args.rounds):
                for label, op in PHASES.items():
                    figures.setdefault(label, []).append(
                        anyio.run(
                            _closed_loop, leader, cluster.token, args.clients, args.duration, op
                        )
                    )
            client.call(
                "hooks.add",
                {"name": "paced", "on": "bench.paced", "kind": "python",
                 "target": {"entrypoint": "bench_hook:record"}},
            )  # fmt: skip
            figures["hook_latency"] = _paced(client, args.paced, log)
    finally:
        cluster.down()
    return figures


def _report(nodes: int, f: dict[str, Any], args: argparse.Namespace) -> None:
    med = {
        label: {k: statistics.median(run[k] for run in f[label]) for k in f[label][0]}
        for label in PHASES
    }
    base = med["put"]["ops_per_s"]
    print(f"\n{nodes} node(s), {args.clients} clients on the leader, closed loop, ", end="")
    print(f"median of {args.rounds} interleaved rounds of {args.duration:g} s")
    for label in PHASES:
        r = med[label]
        print(
            f"  {label:16} {r['ops_per_s']:8.0f} ops/s  p50 {r['p50_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  ({r['ops_per_s'] / base:.2f}x of put)"
        )
    lat = f["hook_latency"]
    if lat:
        print(
            f"  publish -> python hook start: p50 {statistics.median(lat) * 1e3:.1f} ms  "
            f"p99 {_percentile(lat, 99) * 1e3:.1f} ms  ({len(lat)} paced publishes)"
        )


def main() -> None:
    """Measure on 1 node, then on 3, and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--paced", type=int, default=200)
    ap.add_argument("--nodes", default="1,3", help="cluster sizes, comma-separated")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        cpu = _apply_cpu(Path(tmp_dir))
        print("apply CPU per command (one process, real LMDB, 500 per write txn):")
        for kind, us in cpu.items():
            print(f"  {kind:16} {us:6.1f} µs  ({us / cpu['put']:.2f}x of put)")
        for nodes in (int(n) for n in args.nodes.split(",")):
            results[nodes] = _measure(nodes, args, Path(tmp_dir))
    for nodes, figures in results.items():
        _report(nodes, figures, args)
    print("(2 cores shared by the nodes, the handler and the load generator)")


if __name__ == "__main__":
    main()
