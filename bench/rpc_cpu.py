"""CPU per client request of the wire protocol: RpcServer + client in one process, uvloop.

An echo method (no storage, no Raft) on plain TCP; ``--conns`` connections each run a closed
loop of ``--requests`` calls, then each pipelines ``--requests`` calls with ``gather``. Prints
process CPU µs per request (server and client together: both run in this process), which is
far less sensitive to other load on the machine than throughput. Run it on two checkouts to
compare them (2 cores shared with whatever else runs):

    .venv/bin/python bench/rpc_cpu.py [--conns 16] [--requests 2000] [--repeat 3]

"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import aspen
from aspen.auth.service import TokenService
from aspen.auth.tokens import TokenSigner
from aspen.node.auth import load_or_create_root_token
from aspen.plugins.types import RpcHandler
from aspen.rpc import MethodRegistry, RpcServer

PARAMS = {"key": b"k" * 16, "value": b"v" * 100}


async def echo(ctx: Any, params: dict[str, Any]) -> Any:
    """Return the params."""
    return params


async def measure(conns: int, requests: int) -> dict[str, float]:
    """One round: CPU µs per request, closed loop and pipelined."""
    token = load_or_create_root_token(Path(tempfile.mkdtemp(prefix="aspen-rpc-cpu-")))
    server = RpcServer(
        MethodRegistry([RpcHandler("bench.echo", echo, plugin="bench")]),
        node=None,
        authenticate=TokenService(
            TokenSigner.from_ca(Ed25519PrivateKey.generate(), "bench"), token
        ).authenticate,
        node_id="bench",
    )
    out: dict[str, float] = {}
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        clients = [aspen.aconnect(f"127.0.0.1:{port}", token=token) for _ in range(conns)]
        for c in clients:
            await c.__aenter__()

        async def closed(c: Any) -> None:
            for _ in range(requests):
                await c.call("bench.echo", PARAMS)

        async def pipelined(c: Any) -> None:
            await asyncio.gather(*(c.call("bench.echo", PARAMS) for _ in range(requests)))

        for name, fn in (("closed", closed), ("pipelined", pipelined)):
            cpu = time.process_time()
            async with anyio.create_task_group() as runs:
                for c in clients:
                    runs.start_soon(fn, c)
            out[name] = (time.process_time() - cpu) / (conns * requests) * 1e6
        for c in clients:
            await c.aclose()
        tg.cancel_scope.cancel()
    return out


def main() -> None:
    """Run the rounds and print medians."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rounds = [
        anyio.run(
            measure,
            args.conns,
            args.requests,
            backend="asyncio",
            backend_options={"use_uvloop": True},
        )
        for _ in range(args.repeat)
    ]
    for name in ("closed", "pipelined"):
        values = [r[name] for r in rounds]
        print(
            f"{name:9} {args.conns} conns: {statistics.median(values):5.1f} µs CPU per request "
            f"(server + client; rounds {', '.join(f'{v:.1f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
