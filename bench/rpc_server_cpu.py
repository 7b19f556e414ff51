"""Server CPU per client request of the RPC path alone (no storage, no Raft).

``bench/rpc_cpu.py`` runs server and client in one process; this one runs the
:class:`~aspen.rpc.RpcServer` (uvloop, plain TCP, an echo method answering like ``kv.put``)
in a child process and the clients in this one, and reads the child's CPU from ``/proc``:
what the node pays per request for framing, decoding, the session, the capability check,
dispatch, the task, reply encoding and the socket write. ``--conns`` connections each run a
closed loop (one request in flight, as ``bench/compare.py``'s clients), then each pipelines
``--window`` requests (as a windowed publisher). The root token is used (``bench/tokens.py``
measures the capability check on a real node).
``--py-spy FILE`` records the server (``--gil``, raw stacks) for the whole run.

    .venv/bin/python bench/rpc_server_cpu.py [--conns 16] [--requests 3000] [--repeat 3]

Compare two checkouts by running each one's ``.venv/bin/python`` on this script.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import aspen

_CLK_TCK = os.sysconf("SC_CLK_TCK")
PARAMS = {"key": b"/bench/k0000001", "value": b"v" * 100}


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from ``/proc``."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


# ------------------------------------------------------------------ the server (child)
async def _serve(workdir: Path) -> None:
    """Serve ``kv.put`` (an echo) on a free port; write ``port token`` to ``ready``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from aspen.auth.service import TokenService
    from aspen.auth.tokens import TokenSigner
    from aspen.node.auth import load_or_create_root_token
    from aspen.plugins.types import RpcHandler
    from aspen.rpc import MethodRegistry, RpcServer

    revision = 0

    async def put(ctx: Any, params: dict[str, Any]) -> Any:
        """Answer like ``kv.put`` after one loop turn (a proposal is awaited there)."""
        nonlocal revision
        await asyncio.sleep(0)
        revision += 1
        return {"header": {"revision": revision, "member_id": "bench", "raft_term": 1}}

    token = load_or_create_root_token(workdir)
    signer = TokenSigner.from_ca(Ed25519PrivateKey.generate(), "bench")
    service = TokenService(signer, token)
    server = RpcServer(
        MethodRegistry(
            [
                RpcHandler(
                    "kv.put", put, plugin="bench", capability="kv:write", scope=_kv_put_scope()
                )
            ]
        ),
        node=None,
        authenticate=service.authenticate,
        node_id="bench",
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        (workdir / "ready").write_text(f"{port} {token}")
        await anyio.sleep_forever()


def _kv_put_scope() -> Any:
    """The scope function ``kv.put`` declares (every key it touches)."""
    from functools import partial

    from aspen.auth.kvscope import kv_spans

    return partial(kv_spans, "kv.put")


# ------------------------------------------------------------------ the clients (parent)
async def _measure(endpoint: str, token: str, pid: int, args: argparse.Namespace) -> dict:
    """Server CPU µs per request, closed loop and windowed."""
    clients = [aspen.aconnect(endpoint, token=token) for _ in range(args.conns)]
    opened = [await c.__aenter__() for c in clients]
    out: dict[str, float] = {}

    async def closed(c: Any) -> None:
        for _ in range(args.requests):
            await c.call("kv.put", PARAMS)

    async def windowed(c: Any) -> None:
        for _ in range(0, args.requests, args.window):
            await asyncio.gather(*(c.call("kv.put", PARAMS) for _ in range(args.window)))

    for name, fn in (("closed", closed), ("windowed", windowed)):
        cpu, start = _cpu_seconds(pid), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for c in opened:
                tg.start_soon(fn, c)
        n = args.conns * args.requests
        out[name] = (_cpu_seconds(pid) - cpu) / n * 1e6
        out[name + "_ops"] = n / (time.perf_counter() - start)
    for c in clients:
        await c.__aexit__(None, None, None)
    return out


def _start_server(workdir: Path) -> subprocess.Popen:
    """Start the child server and wait for its ready file."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(workdir)])
    deadline = time.monotonic() + 30
    while not (workdir / "ready").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the bench server did not start")
        time.sleep(0.05)
    return proc


def main() -> None:
    """Start the server, run the rounds, print medians."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--py-spy", type=Path, default=None, help="record the server to this file")
    ap.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        anyio.run(_serve, args.serve, backend="asyncio", backend_options={"use_uvloop": True})
        return
    with tempfile.TemporaryDirectory(prefix="aspen-rpc-srv-") as tmp:
        proc = _start_server(Path(tmp))
        spy = None
        try:
            port, token = (Path(tmp) / "ready").read_text().split(" ")
            if args.py_spy is not None:
                exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                cmd = [exe, "record", "--pid", str(proc.pid), "--gil", "--format", "raw"]
                cmd += ["--rate", "500", "--nonblocking", "--output", str(args.py_spy)]
                spy = subprocess.Popen(
                    cmd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            rounds = [
                anyio.run(
                    _measure,
                    f"127.0.0.1:{port}",
                    token,
                    proc.pid,
                    args,
                    backend="asyncio",
                    backend_options={"use_uvloop": True},
                )
                for _ in range(args.repeat)
            ]
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=30)
            proc.terminate()
            proc.wait(timeout=10)
    for name in ("closed", "windowed"):
        values = [r[name] for r in rounds]
        ops = statistics.median(r[name + "_ops"] for r in rounds)
        print(
            f"{name:8} {args.conns} conns: {statistics.median(values):5.1f} µs server CPU per "
            f"request ({ops:.0f} req/s; rounds {', '.join(f'{v:.1f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
