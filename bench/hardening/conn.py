"""Issue 9, client connections: a client that pipelines big reads and never reads the
replies, and a client that pipelines 20k gets on one connection.

    .venv/bin/python bench/hardening/conn.py [--requests 300] [--hold 15] [--gets 20000]

Starts one node process (real LMDB, real TLS sockets), stores three 1 MB values under
``big/`` so that one ``kv.range big/`` reply is about 3 MB, then:

1. a hostile client sends ``--requests`` pipelined ``kv.range big/`` requests on one
   connection and never reads; for ``--hold`` seconds a second, well-behaved client puts
   small values in a loop and a third opens a new connection every half second. Prints the
   node's peak RSS, the put p50/p99 and the slowest new-connection handshake.
2. ``asyncio.gather`` of ``--gets`` ``kv.get`` calls on one ``AsyncClient``: prints how
   many succeeded and how long it took.

The issue's figures were 1,500 x 3 MB (8.8 GB RSS); scaled down to 300 by default to stay
below ~2 GB on the shared machine. 2 cores shared by the node and the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aspen
from aspen.client.aclient import AsyncClient
from aspen.errors import AspenError
from aspen.node.devcluster import node_command
from aspen.testing import free_port
from aspen.testing.rawclient import RawSocketClient

VALUE_BYTES = 1_000_000
BIG_KEYS = 3


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_node(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    """Start a node process; return it, its endpoint and its root token."""
    port = free_port()
    endpoint = f"127.0.0.1:{port}"
    data = tmp / "node"
    log = open(tmp / "node.log", "ab")  # noqa: SIM115
    env = {**os.environ, "ASPEN_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(node_command(data, endpoint), stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            token = (data / "root-token").read_text().strip()
            with aspen.connect(endpoint, token=token, timeout=2) as c:
                c.status()
            return proc, endpoint, token
        except (AspenError, OSError):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def reproduce_unread_replies(
    proc: subprocess.Popen, endpoint: str, token: str, requests: int, hold: float
) -> None:
    """Phase 1: pipelined 3 MB replies never read, with a well-behaved writer alongside."""
    with aspen.connect(endpoint, token=token) as c:
        for i in range(BIG_KEYS):
            c.kv.put(f"big/{i}", os.urandom(VALUE_BYTES))
    rss_before = rss_bytes(proc.pid)
    stop = threading.Event()
    latencies: list[float] = []
    handshakes: list[float] = []
    errors: list[str] = []

    def writer() -> None:
        with aspen.connect(endpoint, token=token, timeout=30) as c:
            n = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.kv.put("small", str(n))
                    latencies.append(time.perf_counter() - t0)
                except AspenError as exc:
                    errors.append(f"put: {exc.code}")
                n += 1

    def connector() -> None:
        while not stop.wait(0.5):
            t0 = time.perf_counter()
            try:
                with aspen.connect(endpoint, token=token, timeout=30, connect_timeout=30) as c:
                    c.status()
                handshakes.append(time.perf_counter() - t0)
            except AspenError as exc:
                errors.append(f"connect: {exc.code}")

    threads = [threading.Thread(target=writer), threading.Thread(target=connector)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # a baseline for the writer
    raw = RawSocketClient(endpoint, token)
    request = {"method": "kv.range", "params": {"key": b"big/", "end": b"big0"}}
    batch = [{"id": i + 1, **request} for i in range(requests)]
    threading.Thread(target=raw.send_frames, args=(batch,), daemon=True).start()
    peak = 0
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and proc.poll() is None:
        peak = max(peak, rss_bytes(proc.pid))
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(60)
    alive = proc.poll() is None
    raw.close()
    print(f"unread replies: {requests} pipelined kv.range of ~{BIG_KEYS} MB, held {hold:g} s")
    print(f"  node RSS before {rss_before / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    if latencies:
        print(
            f"  well-behaved put: {len(latencies)} ok, p50 "
            f"{statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    if handshakes:
        print(f"  new connections: {len(handshakes)} ok, slowest {max(handshakes) * 1000:.0f} ms")
    print(f"  errors: {len(errors)} {sorted(set(errors))[:5]}; node alive: {alive}")


async def gather_gets(endpoint: str, token: str, gets: int) -> None:
    """Phase 2: ``gets`` concurrent kv.get calls on one AsyncClient."""
    async with AsyncClient(endpoint, token) as c:
        await c.kv.put("g", "v")
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(c.kv.get("g") for _ in range(gets)), return_exceptions=True
        )
        elapsed = time.perf_counter() - t0
    failures = [r for r in results if isinstance(r, BaseException)]
    kinds = sorted({type(f).__name__ for f in failures})
    print(
        f"gather: {gets} kv.get on one AsyncClient: {gets - len(failures)} ok, "
        f"{len(failures)} failed {kinds} in {elapsed:.2f} s"
    )


def main() -> None:
    """Run both phases and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--hold", type=float, default=15.0)
    ap.add_argument("--gets", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aspen-conn-") as tmp:
        proc, endpoint, token = start_node(Path(tmp))
        try:
            reproduce_unread_replies(proc, endpoint, token, args.requests, args.hold)
            asyncio.run(gather_gets(endpoint, token, args.gets))
            print(f"  node RSS at the end {rss_bytes(proc.pid) / 2**20:.0f} MiB")
        finally:
            proc.terminate()
            proc.wait(30)
    print("(one node; 2 cores shared by the node, the clients and other work on the machine)")


if __name__ == "__main__":
    sys.exit(main())
