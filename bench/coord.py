"""aspen-coord vs etcd's concurrency API, same workload, same run, on one machine.

Closed loop, C clients each with its own connection and its own session lease (granted
once, as etcd's ``concurrency.Session`` does), for:

* ``put``: one plain KV put (the baseline: what one write costs each system here);
* ``lock``: acquire + release of a lock of the client's own (uncontended), one op = the pair;
  Aspen ``coord.lock.acquire`` / ``coord.lock.release`` vs etcd's v3 lock RPC
  (``/v3/lock/lock``, ``/v3/lock/unlock``: the server-side ``concurrency.Mutex``) through
  its HTTP gateway;
* ``lock-shared``: the same on one lock all clients contend for (FIFO hand-off);
* ``counter``: add 1 to one shared counter; Aspen ``coord.counter.add`` vs an etcd txn
  compare-and-swap loop (range, then txn on ``mod_revision``; a lost race re-reads from the
  txn's failure branch and retries), the recipe an etcd user writes.

etcd runs from ``../shared/bench/etcd_cluster.sh`` (Debian's etcd 3.4) on ETCDBENCH_HOST
(default 127.0.0.7, apart from other runs), requests go to its leader; Aspen is a local
cluster of ``aspen node start`` processes with aspen-coord. Both load generators run in this
process on asyncio (etcd: the shared harness's raw HTTP/1.1 client). The machine has 2
cores shared by servers and clients: compare the ratios of one run.

    .venv/bin/python bench/coord.py [--nodes 3] [--concurrency 1,8] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = Path(os.environ.get("ASPEN_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
sys.path.insert(0, str(SHARED_BENCH))

from benchutil import lat_summary, machine_busy_pct  # noqa: E402
from loadgen import RawHttpConn  # noqa: E402

ETCD = SHARED_BENCH / "etcd_cluster.sh"
ENV = {
    "ETCDBENCH_HOST": os.environ.get("ETCDBENCH_HOST", "127.0.0.7"),
    "ETCDBENCH_DIR": os.environ.get("ETCDBENCH_DIR", "/tmp/etcdbench-coord"),
}
WORKLOADS = ("put", "lock", "lock-shared", "counter")
#: One line of the table.
ROW = "{:12} {:>7} {:6} {:>8} {:>7} {:>7}  {}"
#: One op: ``await op(client_index)``.
Op = Callable[[int], Awaitable[None]]


def b64(data: bytes) -> str:
    """Base64 text, as etcd's JSON gateway wants bytes."""
    return base64.b64encode(data).decode()


class Etcd:
    """C raw HTTP connections to etcd's leader, each with a session lease."""

    def __init__(self, endpoint: str) -> None:
        self.host, port = endpoint.split("://")[-1].split(":")
        self.port = int(port)
        self.conns: list[Any] = []
        self.leases: list[str] = []

    async def post(self, i: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        head = (
            f"POST /v3{path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(data)}\r\n"
            "Content-Type: application/json\r\n\r\n"
        )
        status, raw = await self.conns[i].request(head.encode() + data)
        if status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {status} {raw[:200]!r}")
        return json.loads(raw)

    async def open(self, clients: int) -> None:
        self.conns = [await RawHttpConn.connect(self.host, self.port) for _ in range(clients)]
        self.leases = [
            (await self.post(i, "/lease/grant", {"TTL": 60}))["ID"] for i in range(clients)
        ]

    async def close(self) -> None:
        for i, conn in enumerate(self.conns):
            await self.post(i, "/kv/lease/revoke", {"ID": self.leases[i]})
            conn.transport.close()

    def op(self, workload: str) -> Op:
        async def lock(i: int, name: bytes) -> None:
            got = await self.post(i, "/lock/lock", {"name": b64(name), "lease": self.leases[i]})
            await self.post(i, "/lock/unlock", {"key": got["key"]})

        async def counter(i: int) -> None:
            key = b64(b"bench-counter")
            kvs = (await self.post(i, "/kv/range", {"key": key})).get("kvs", [])
            while True:
                value = int(base64.b64decode(kvs[0]["value"])) if kvs else 0
                mod = int(kvs[0]["mod_revision"]) if kvs else 0
                txn = {
                    "compare": [
                        {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": mod}
                    ],
                    "success": [{"request_put": {"key": key, "value": b64(b"%d" % (value + 1))}}],
                    "failure": [{"request_range": {"key": key}}],
                }
                got = await self.post(i, "/kv/txn", txn)
                if got.get("succeeded"):
                    return
                kvs = got["responses"][0]["response_range"].get("kvs", [])

        async def put(i: int) -> None:
            await self.post(i, "/kv/put", {"key": b64(b"bench-put-%d" % i), "value": b64(b"v")})

        if workload == "put":
            return put
        if workload == "lock":
            return lambda i: lock(i, b"bench-lock-%d" % i)
        if workload == "lock-shared":
            return lambda i: lock(i, b"bench-lock")
        return counter


class Aspen:
    """C aspen clients, each with a session lease."""

    def __init__(self, endpoints: str, token: str) -> None:
        self.endpoints, self.token = endpoints, token
        self.clients: list[Any] = []
        self.leases: list[int] = []

    async def open(self, clients: int) -> None:
        import aspen

        for _ in range(clients):
            client = await aspen.aconnect(self.endpoints, token=self.token).connect()
            self.clients.append(client)
            self.leases.append((await client.lease.grant(60)).id)

    async def close(self) -> None:
        for client, lease in zip(self.clients, self.leases, strict=True):
            await client.lease.revoke(lease)
            await client.aclose()

    def op(self, workload: str) -> Op:
        async def lock(i: int, name: str) -> None:
            held = {"name": name, "lease": self.leases[i]}
            await self.clients[i].call("coord.lock.acquire", {**held, "timeout": 60})
            await self.clients[i].call("coord.lock.release", held)

        async def counter(i: int) -> None:
            await self.clients[i].call("coord.counter.add", {"name": "bench-counter"})

        async def put(i: int) -> None:
            await self.clients[i].kv.put(f"bench-put-{i}", b"v")

        if workload == "put":
            return put
        if workload == "lock":
            return lambda i: lock(i, f"bench-lock-{i}")
        if workload == "lock-shared":
            return lambda i: lock(i, "bench-lock")
        return counter


async def measure(system: Any, workload: str, clients: int, duration: float) -> dict[str, Any]:
    """Run ``clients`` closed loops of ``workload`` for ``duration`` s (after 1 s warm-up)."""
    await system.open(clients)
    op = system.op(workload)
    latencies: list[float] = []
    start = time.monotonic()
    measure_from, end = start + 1.0, start + 1.0 + duration

    async def loop(i: int) -> None:
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                return
            await op(i)
            if t0 >= measure_from:
                latencies.append(time.monotonic() - t0)

    try:
        await asyncio.gather(*(loop(i) for i in range(clients)))
    finally:
        await system.close()
    summary = lat_summary(latencies)
    return {"ops_s": len(latencies) / duration, "p50_ms": summary.get("p50_us", 0) / 1000,
            "p99_ms": summary.get("p99_us", 0) / 1000}  # fmt: skip


def etcd_leader(nodes: int) -> str:
    """The client URL of etcd's leader."""
    import urllib.request

    env = {**os.environ, **ENV}
    eps = subprocess.run(
        ["bash", str(ETCD), "endpoints", str(nodes)], env=env, capture_output=True, text=True
    ).stdout.strip()
    for ep in eps.split(","):
        req = urllib.request.Request(ep + "/v3/maintenance/status", data=b"{}")
        status = json.load(urllib.request.urlopen(req, timeout=5))
        if status.get("leader") == status["header"]["member_id"]:
            return ep
    raise RuntimeError("no etcd leader")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, choices=(1, 3))
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    workloads = args.workloads.split(",")
    busy, load = machine_busy_pct(2.0), os.getloadavg()[0]
    print(f"# before the run: machine {busy:.0f}% busy, load {load:.1f} on {os.cpu_count()} cores")
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    env = {**os.environ, **ENV}
    subprocess.run(["bash", str(ETCD), "start", str(args.nodes)], env=env, check=True)
    try:
        leader = etcd_leader(args.nodes)
        for w in workloads:
            for c in levels:
                results[("etcd", w, c)] = asyncio.run(measure(Etcd(leader), w, c, args.duration))
    finally:
        subprocess.run(["bash", str(ETCD), "stop", str(args.nodes)], env=env, check=False)
    from aspen.testing import local_cluster

    with (
        tempfile.TemporaryDirectory() as tmp,
        local_cluster(Path(tmp), args.nodes, plugins=["coord"]) as cluster,
    ):
        for w in workloads:
            for c in levels:
                aspen_side = Aspen(cluster.endpoints, cluster.token)
                results[("aspen", w, c)] = asyncio.run(measure(aspen_side, w, c, args.duration))
    load = os.getloadavg()[0]
    print(f"\n{args.nodes} node(s), {args.duration:.0f} s a point, load {load:.1f}, 2 shared cores")
    print(ROW.format("workload", "clients", "system", "ops/s", "p50 ms", "p99 ms", "aspen/etcd"))
    for w in workloads:
        for c in levels:
            e, a = results[("etcd", w, c)], results[("aspen", w, c)]
            for name, r in (("etcd", e), ("aspen", a)):
                ratio = (
                    f"{a['ops_s'] / e['ops_s']:.2f}x ops/s"
                    if name == "aspen" and e["ops_s"]
                    else ""
                )
                numbers = (f"{r['ops_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}")
                print(ROW.format(w, c, name, *numbers, ratio))
    print(json.dumps({f"{s}/{w}/{c}": r for (s, w, c), r in results.items()}))


if __name__ == "__main__":
    main()
