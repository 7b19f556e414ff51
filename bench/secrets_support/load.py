"""The closed-loop load generator: C clients, one request in flight each, spread over
worker processes (forked, so that the load generator does not share the orchestrating
process), each client with its own keep-alive connection.

Operations (the same requests for every system):

* ``transit-encrypt``: ``POST /v1/transit/encrypt/bench`` of a 100-byte plaintext with an
  ``aes256-gcm96`` key;
* ``kv-write``: ``POST /v1/secret/data/bench/k<n>`` of a small map (KV v2, a new version);
* ``kv-read``: ``GET /v1/secret/data/bench/k<n>`` of a key written beforehand.

Interfaces: ``http`` (the Vault-compatible API, through ``raw``, the shared harness's
minimal keep-alive HTTP/1.1 client, or ``httpx.AsyncClient``) and ``client`` (Aspen's own
client, RPC ``secrets.request``; Aspen only). Every answer is parsed and checked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import time
from array import array
from typing import Any
from urllib.parse import urlsplit

import httpx

from secrets_support.procs import Endpoint
from secrets_support.shared import (
    CpuMeter,
    RawHttpConn,
    die_with_parent,
    lat_summary,
    other_cpu_pct,
)

OPS = ("transit-encrypt", "kv-write", "kv-read")
INTERFACES = ("http", "client")
#: HTTP client implementations for the ``http`` interface.
HTTP_CLIENTS = ("raw", "httpx")
#: Name of the transit key every encryption uses.
TRANSIT_KEY = "bench"
#: Keys ``bench/k0`` … written before the reads and overwritten by the writes.
KEYS = 1000
#: The 100-byte plaintext, base64 as the API wants it.
PLAINTEXT_B64 = base64.b64encode(bytes(range(100))).decode()
#: The small map a KV write stores.
KV_DATA = {"username": "bench", "password": "p" * 32, "note": "secrets benchmark"}
#: Seconds one request may take before it counts as an error.
REQUEST_TIMEOUT = 30.0
#: Seconds the worker processes get to start before the warm-up begins.
SPAWN_SECONDS = 0.5


def _logical(op: str, n: int) -> tuple[str, str, dict[str, Any] | None]:
    """(operation, path with mount, data) of one request of ``op`` on key ``n``."""
    if op == "transit-encrypt":
        return "write", f"transit/encrypt/{TRANSIT_KEY}", {"plaintext": PLAINTEXT_B64}
    if op == "kv-write":
        return "write", f"secret/data/bench/k{n}", {"data": KV_DATA}
    if op == "kv-read":
        return "read", f"secret/data/bench/k{n}", None
    raise ValueError(f"unknown op {op!r}")


def _check(op: str, status: int, body: bytes) -> None:
    """Raise unless an HTTP answer is 200 with a JSON ``data`` map."""
    if status != 200 or not isinstance(json.loads(body).get("data"), dict):
        raise RuntimeError(f"{op}: HTTP {status} {body[:200]!r}")


def _http_request(op: str, n: int) -> tuple[str, str, bytes]:
    """(method, URL path, JSON body) of one HTTP request."""
    operation, path, data = _logical(op, n)
    if operation == "read":
        return "GET", f"/v1/{path}", b""
    return "POST", f"/v1/{path}", json.dumps(data).encode()


class HttpxClient:
    """One keep-alive ``httpx`` connection to a Vault-compatible API."""

    def __init__(self, ep: Endpoint) -> None:
        self.http = httpx.AsyncClient(
            base_url=ep.http_url,
            headers={"X-Vault-Token": ep.token, "Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=REQUEST_TIMEOUT,
        )

    async def request(self, op: str, n: int) -> None:
        """Send one ``op`` request and check the answer."""
        method, path, body = _http_request(op, n)
        r = await self.http.request(method, path, content=body or None)
        _check(op, r.status_code, r.content)

    async def close(self) -> None:
        """Close the connection."""
        await self.http.aclose()


class RawClient:
    """One keep-alive connection through the shared harness's minimal HTTP/1.1 client
    (far less load-generator CPU per request than ``httpx``)."""

    def __init__(self, ep: Endpoint) -> None:
        url = urlsplit(ep.http_url)
        self.host, self.port, self.netloc = url.hostname, url.port or 80, url.netloc
        self.token = ep.token
        self.conn: Any = None

    async def request(self, op: str, n: int) -> None:
        """Send one ``op`` request and check the answer."""
        method, path, body = _http_request(op, n)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.netloc}\r\nX-Vault-Token: {self.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        if self.conn is None or self.conn.transport is None:
            self.conn = await RawHttpConn.connect(self.host, self.port)
        try:
            status, payload = await asyncio.wait_for(
                self.conn.request(head.encode() + body), REQUEST_TIMEOUT
            )
        except BaseException:
            await self.close()
            raise
        _check(op, status, payload)

    async def close(self) -> None:
        """Close the connection."""
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None


class RpcClient:
    """One Aspen client connection (RPC ``secrets.request``)."""

    def __init__(self, ep: Endpoint) -> None:
        import aspen

        if ep.rpc_endpoint is None:
            raise ValueError(f"{ep.system} has no Aspen client interface")
        self._cm = aspen.aconnect(ep.rpc_endpoint, token=ep.token, timeout=REQUEST_TIMEOUT)
        self.client: Any = None

    async def request(self, op: str, n: int) -> None:
        """Send one ``op`` request; raise unless the answer has a ``data`` map."""
        if self.client is None:
            self.client = await self._cm.__aenter__()
        operation, path, data = _logical(op, n)
        params = {"operation": operation, "path": path, "data": data or {}}
        answer = await self.client.call("secrets.request", params)
        if not isinstance(answer.get("data"), dict):
            raise RuntimeError(f"{op}: answer without data: {answer!r:.200}")

    async def close(self) -> None:
        """Close the connection."""
        if self.client is not None:
            await self._cm.__aexit__(None, None, None)


Client = HttpxClient | RawClient | RpcClient


def make_client(ep: Endpoint, interface: str, http_client: str = "raw") -> Client:
    """A client of ``interface`` (``http`` through ``http_client``, or ``client``)."""
    if interface == "client":
        return RpcClient(ep)
    return RawClient(ep) if http_client == "raw" else HttpxClient(ep)


async def _prepare(ep: Endpoint, concurrency: int = 16) -> None:
    """Create the transit key and write every KV key once (retrying while a fresh mount
    still upgrades), over HTTP."""
    async with httpx.AsyncClient(
        base_url=ep.http_url, headers={"X-Vault-Token": ep.token}, timeout=REQUEST_TIMEOUT
    ) as http:
        deadline = time.monotonic() + 30
        while True:
            r = await http.post(f"/v1/transit/keys/{TRANSIT_KEY}", json={"type": "aes256-gcm96"})
            w = await http.post("/v1/secret/data/bench/k0", json={"data": KV_DATA})
            if r.status_code in (200, 204) and w.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"set-up failed: {r.status_code} {r.text} {w.text}")
            await asyncio.sleep(0.5)
    clients = [HttpxClient(ep) for _ in range(concurrency)]
    todo = iter(range(KEYS))

    async def fill(c: HttpxClient) -> None:
        for n in todo:
            await c.request("kv-write", n)

    try:
        await asyncio.gather(*(fill(c) for c in clients))
    finally:
        for c in clients:
            await c.close()


def prepare(ep: Endpoint) -> None:
    """Create the transit key and the KV keys the benchmark reads."""
    asyncio.run(_prepare(ep))


async def _worker_main(spec: dict[str, Any], n_clients: int) -> dict[str, Any]:
    """Run ``n_clients`` closed loops until ``spec["t_end"]``; latencies of requests
    started in the measured window ``[t_measure, t_end)``."""
    ep, op, t_measure, t_end = spec["ep"], spec["op"], spec["t_measure"], spec["t_end"]
    clients = [make_client(ep, spec["interface"], spec["http_client"]) for _ in range(n_clients)]
    rnd = random.Random(os.getpid())
    lats = array("d")
    out: dict[str, Any] = {"errors": 0, "samples": [], "cpu_s": 0.0}

    async def loop(c: Client) -> None:
        while (start := time.monotonic()) < t_end:
            t0 = time.perf_counter()
            try:
                await c.request(op, rnd.randrange(KEYS))
            except Exception as exc:  # counted and reported
                if start >= t_measure:
                    out["errors"] += 1
                    if len(out["samples"]) < 3:
                        out["samples"].append(repr(exc)[:300])
                await asyncio.sleep(0.01)
                continue
            if start >= t_measure:
                lats.append(time.perf_counter() - t0)

    async def cpu_probe() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.monotonic()))
        c0 = time.process_time()
        await asyncio.sleep(max(0.0, t_end - time.monotonic()))
        out["cpu_s"] = time.process_time() - c0

    try:
        await asyncio.gather(cpu_probe(), *(loop(c) for c in clients))
    finally:
        for c in clients:
            await c.close()
    out["lats"] = lats.tobytes()
    return out


def _worker(spec: dict[str, Any], n: int, q: Any) -> None:
    """Worker process entry: uvloop if installed, run the loops, send the results."""
    die_with_parent()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    q.put(asyncio.run(_worker_main(spec, n)))


def measure(
    ep: Endpoint,
    interface: str,
    op: str,
    concurrency: int,
    *,
    duration: float,
    warmup: float,
    procs: int,
    http_client: str = "raw",
) -> dict[str, Any]:
    """One closed-loop run of ``op`` at ``concurrency``: throughput, latency, CPU."""
    nproc = max(1, min(procs, concurrency))
    shares = [concurrency // nproc + (i < concurrency % nproc) for i in range(nproc)]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    t_measure = time.monotonic() + SPAWN_SECONDS + warmup
    spec = {
        "ep": ep,
        "interface": interface,
        "op": op,
        "http_client": http_client,
        "t_measure": t_measure,
        "t_end": t_measure + duration,
    }
    workers = [ctx.Process(target=_worker, args=(spec, s, q), daemon=True) for s in shares]
    for w in workers:
        w.start()
    meter = CpuMeter(ep.pids)
    time.sleep(max(0.0, t_measure - time.monotonic()))
    meter.start()
    results = [q.get(timeout=duration + warmup + REQUEST_TIMEOUT + 60) for _ in workers]
    cpu = meter.stop()
    for w in workers:
        w.join(10)
        if w.is_alive():
            w.terminate()  # our own child, by its handle
    lats = array("d")
    for r in results:
        lats.frombytes(r["lats"])
    server_cpu = round(sum(cpu.get("pid_cpu_pct_of_one_core", {}).values()), 1)
    loadgen_cpu = round(100.0 * sum(r["cpu_s"] for r in results) / duration, 1)
    stats = lat_summary(lats)
    return {
        "bench": "secrets",
        "system": ep.system,
        "storage": ep.storage,
        "interface": interface,
        "http_client": http_client if interface == "http" else None,
        "nodes": ep.nodes,
        "op": op,
        "concurrency": concurrency,
        "duration_s": duration,
        "loadgen_procs": nproc,
        "ops": len(lats),
        "ops_per_s": round(len(lats) / duration, 1),
        "p50_ms": round(stats.get("p50_us", float("nan")) / 1e3, 3),
        "p99_ms": round(stats.get("p99_us", float("nan")) / 1e3, 3),
        "errors": sum(r["errors"] for r in results),
        "error_samples": [s for r in results for s in r["samples"]][:3],
        "server_cpu_pct_of_one_core": server_cpu,
        "loadgen_cpu_pct_of_one_core": loadgen_cpu,
        "machine_busy_pct": round(cpu["machine_busy_pct"], 1),
        "other_cpu_pct_of_one_core": other_cpu_pct(
            cpu["machine_busy_pct"], [server_cpu, loadgen_cpu]
        ),
    }
