"""What the capability check costs: gets and puts with a scoped token vs the root token.

One real node process (``aspen node start``, via :func:`aspen.testing.local_cluster`), 16
closed-loop clients (one connection each) in this process, 100-byte values under
``/bench/``. Phases alternate root / scoped (``--rounds`` times each, so drift on a shared
machine hits both alike); the scoped token holds ``kv:read:/bench/`` and
``kv:write:/bench/`` with a rate limit far above the load. Prints ops/s and p50/p99 per
phase, the node's CPU µs per request (from ``/proc/<pid>/stat``: far less sensitive than
throughput to other load on a shared machine), and the scoped/root ratios (the issue asks
for a cost under 5%).

    .venv/bin/python bench/tokens.py --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aspen
from aspen.client.aclient import AsyncClient
from aspen.testing import local_cluster

VALUE = b"x" * 100


async def _client_loop(client: AsyncClient, op: str, n: int, stop: float, lat: list[float]) -> int:
    done = 0
    key = f"/bench/{n}"
    while time.perf_counter() < stop:
        start = time.perf_counter()
        if op == "put":
            await client.kv.put(key, VALUE)
        else:
            await client.kv.get(key)
        lat.append(time.perf_counter() - start)
        done += 1
    return done


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _phase(
    endpoint: str, token: str, op: str, clients: int, seconds: float, pid: int
) -> dict:
    """One closed-loop phase; returns ops/s, latency percentiles (ms) and the node's CPU µs
    per request."""
    conns = [AsyncClient(endpoint, token) for _ in range(clients)]
    for c in conns:
        await c.connect()
    try:
        for n, c in enumerate(conns):  # warm up, and make the keys exist
            await c.kv.put(f"/bench/{n}", VALUE)
        lat: list[float] = []
        cpu = _cpu_seconds(pid)
        stop = time.perf_counter() + seconds
        counts = await asyncio.gather(
            *(_client_loop(c, op, n, stop, lat) for n, c in enumerate(conns))
        )
        cpu = _cpu_seconds(pid) - cpu
    finally:
        for c in conns:
            await c.aclose()
    lat.sort()
    return {
        "ops": sum(counts) / seconds,
        "cpu_us": cpu / max(1, sum(counts)) * 1e6,
        "p50": lat[len(lat) // 2] * 1000,
        "p99": lat[int(len(lat) * 0.99)] * 1000,
    }


def check_cost_us(rounds: int = 100_000) -> dict[str, float]:
    """CPU µs of the capability check alone per get and per put (in-process, no I/O): the
    figure noise on a shared machine cannot blur."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from aspen.auth.capability import parse_capabilities
    from aspen.auth.kvscope import kv_spans
    from aspen.auth.service import TokenService
    from aspen.auth.tokens import TokenLimits, TokenSigner
    from aspen.plugins.types import RpcHandler

    signer = TokenSigner.from_ca(Ed25519PrivateKey.generate(), "bench")
    caps = parse_capabilities(["kv:read:/bench/", "kv:write:/bench/"])
    _, text, _ = signer.issue(caps, limits=TokenLimits(rate=1e9, burst=10**9))
    authority = TokenService(signer, "aspen_root").authenticate(text)
    assert authority is not None

    async def unused(ctx: Any, params: dict[str, Any]) -> Any:
        raise AssertionError("only the check runs")

    # the declarations kv.range and kv.put have in aspen.node.handlers
    handlers = {
        method: RpcHandler(
            method, unused, capability=cap, scope=functools.partial(kv_spans, method)
        )
        for method, cap in (("kv.range", "kv:read"), ("kv.put", "kv:write"))
    }
    out = {}
    for op, method, params in (
        ("get", "kv.range", {"key": b"/bench/3"}),
        ("put", "kv.put", {"key": b"/bench/3", "value": VALUE}),
    ):
        handler = handlers[method]
        start = time.process_time()
        for _ in range(rounds):
            authority.check(handler, params)
        out[op] = (time.process_time() - start) / rounds * 1e6
    return out


async def _rpc_round(conns: int, requests: int, scoped_first: bool) -> dict[str, float]:
    """Process CPU µs per ``kv.range``-shaped request through the real RpcServer (TLS, the
    core's declaration and check; a stub handler, no storage) for each token."""
    import anyio

    from aspen.auth.capability import parse_capabilities
    from aspen.auth.kvscope import kv_spans
    from aspen.auth.service import TokenService
    from aspen.auth.tokens import TokenLimits, TokenSigner
    from aspen.plugins.types import RpcHandler
    from aspen.rpc import MethodRegistry, RpcServer
    from aspen.transport.identity import NodeIdentity
    from aspen.transport.tls import ClusterCA, NodeCredentials, server_context
    from aspen.transport.tokens import new_cluster_token

    async def stub(ctx: Any, params: dict[str, Any]) -> Any:
        return {"kvs": [], "more": False}

    ca = ClusterCA.generate()
    assert ca.private_key is not None
    creds = NodeCredentials.issue(ca, NodeIdentity.generate(), ["127.0.0.1:1"])
    root = str(new_cluster_token("client", ca.public_raw))
    signer = TokenSigner.from_ca(ca.private_key, ca.cluster_id)
    caps = parse_capabilities(["kv:read:/bench/"])
    scoped = signer.issue(caps, limits=TokenLimits(rate=1e9, burst=10**9))[1]
    handler = RpcHandler(
        "kv.range",
        stub,
        plugin="core",
        capability="kv:read",
        scope=functools.partial(kv_spans, "kv.range"),
    )
    server = RpcServer(
        MethodRegistry([handler]),
        node=None,
        authenticate=TokenService(signer, root).authenticate,
        node_id="bench",
        ssl_context=server_context(creds),
    )
    out: dict[str, float] = {}
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        order = [("root", root), ("scoped", scoped)]
        for name, token in reversed(order) if scoped_first else order:
            clients = [aspen.aconnect(f"127.0.0.1:{port}", token=token) for _ in range(conns)]
            for c in clients:
                await c.__aenter__()

            async def closed(c: Any) -> None:
                for i in range(requests):
                    await c.call("kv.range", {"key": f"/bench/{i % 16}".encode()})

            cpu = time.process_time()
            async with anyio.create_task_group() as runs:
                for c in clients:
                    runs.start_soon(closed, c)
            out[name] = (time.process_time() - cpu) / (conns * requests) * 1e6
            for c in clients:
                await c.aclose()
        tg.cancel_scope.cancel()
    return out


def rpc_layer_cost(conns: int = 16, requests: int = 1500, repeat: int = 10) -> list[dict]:
    """:func:`_rpc_round` ``repeat`` times on uvloop, which token goes first alternating."""
    import anyio

    return [
        anyio.run(
            _rpc_round,
            conns,
            requests,
            bool(i % 2),
            backend="asyncio",
            backend_options={"use_uvloop": True},
        )
        for i in range(repeat)
    ]


def main() -> None:
    """Run the bench and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=3, help="phases per token and op")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_cluster(Path(tmp), 1) as cluster:
        endpoint = cluster.client_endpoint(1)
        with aspen.connect(endpoint, token=cluster.token) as c:
            scoped = c.call(
                "token.create",
                {
                    "capabilities": ["kv:read:/bench/", "kv:write:/bench/"],
                    "rate": 1e8,
                    "burst": 10**8,
                    "name": "bench",
                },
            )["token"]
        tokens = {"root": cluster.token, "scoped": scoped}
        cost = check_cost_us()
        print(f"check alone: {cost['get']:.2f} µs per get, {cost['put']:.2f} µs per put")
        rounds = rpc_layer_cost(args.clients)
        root_cpu = statistics.median(r["root"] for r in rounds)
        scoped_cpu = statistics.median(r["scoped"] for r in rounds)
        lowest = min(r["scoped"] for r in rounds) / min(r["root"] for r in rounds)
        print(
            f"RPC layer (TLS, stub get, {args.clients} conns, server + client CPU per request, "
            f"{len(rounds)} rounds): median root {root_cpu:.1f} µs, scoped {scoped_cpu:.1f} µs: "
            f"scoped/root {scoped_cpu / root_cpu:.3f} by medians, {lowest:.3f} by minima"
        )
        print(f"1 node, {args.clients} clients, {args.duration:g} s phases, 2 shared cores")
        print(f"{'op':<4} {'token':<7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'node µs/op':>10}")
        pid = cluster.procs[0].pid
        for op in ("put", "get"):
            runs: dict[str, list[dict]] = {"root": [], "scoped": []}
            for _ in range(args.rounds):
                for name in ("root", "scoped"):
                    result = asyncio.run(
                        _phase(endpoint, tokens[name], op, args.clients, args.duration, pid)
                    )
                    runs[name].append(result)
                    print(
                        f"{op:<4} {name:<7} {result['ops']:>9.0f} {result['p50']:>8.2f} "
                        f"{result['p99']:>8.2f} {result['cpu_us']:>10.1f}"
                    )
            root_ops = statistics.median(r["ops"] for r in runs["root"])
            scoped_ops = statistics.median(r["ops"] for r in runs["scoped"])
            root_cpu = statistics.median(r["cpu_us"] for r in runs["root"])
            scoped_cpu = statistics.median(r["cpu_us"] for r in runs["scoped"])
            print(
                f"{op}: median scoped/root throughput = {scoped_ops / root_ops:.3f} "
                f"(cost {100 * (1 - scoped_ops / root_ops):+.1f}%); node CPU per request "
                f"scoped/root = {scoped_cpu / root_cpu:.3f} (cost "
                f"{100 * (scoped_cpu / root_cpu - 1):+.1f}%)"
            )


if __name__ == "__main__":
    main()
