"""HTTP servers for ``aspen.http``, side by side: one trivial ASGI app behind each candidate.

Each candidate serves the same app (reads the body, answers a 60-byte JSON document) in
its own process on uvloop; a closed loop of keep-alive clients (the shared harness's
minimal HTTP/1.1 client) sends ``GET`` and then Vault's ``LIST`` for a few seconds. It
prints requests/s and the server's CPU per request (what bounds a node that also runs
Raft and the plugin). Candidates whose package is missing are skipped:

* ``aspen``: the core's own listener (:mod:`aspen.http`, what plugins get);
* ``uvicorn-h11`` / ``uvicorn-httptools``: uvicorn with each of its parsers;
* ``granian``: granian's Rust (hyper) server, embedded in the asyncio loop.

    uv pip install --python .venv/bin/python granian httptools uvicorn   # not project deps
    .venv/bin/python bench/http_servers.py [--seconds 4] [--clients 16] [candidates...]

Servers and load generator share the machine's cores: compare the CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The answer of every request.
BODY = json.dumps({"data": {"x": "y" * 40}}).encode()
CANDIDATES = ("aspen", "uvicorn-h11", "uvicorn-httptools", "granian")
_NEEDS = {"uvicorn-h11": "uvicorn", "uvicorn-httptools": "httptools", "granian": "granian"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the body, answer :data:`BODY`."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def serve(kind: str, port: int) -> None:
    """Run candidate ``kind`` on ``port`` until killed."""
    import uvloop

    if kind == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        async def main() -> None:
            server = Server(app, port=port, interface=Interfaces.ASGI, log_enabled=False)
            await server.serve()

        uvloop.run(main())
    elif kind.startswith("uvicorn"):
        import uvicorn

        config = uvicorn.Config(
            app,
            port=port,
            http=kind.split("-")[1],  # type: ignore[arg-type]
            loop="uvloop",
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        uvicorn.Server(config).run()
    else:
        from aspen.http import HttpServer

        async def main() -> None:
            server = HttpServer(app, f"127.0.0.1:{port}", name="bench")
            server.bind()
            await server.serve()

        uvloop.run(main())


async def load(port: int, clients: int, seconds: float, method: str) -> int:
    """Closed loop of ``clients`` keep-alive connections; answered requests (all 200)."""
    from loadgen import RawHttpConn  # the shared harness's client

    request = f"{method} /v1/secret/data/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    conns = [await RawHttpConn.connect("127.0.0.1", port) for _ in range(clients)]
    done = 0
    stop = time.monotonic() + seconds

    async def one(conn: Any) -> None:
        nonlocal done
        while time.monotonic() < stop:
            conn.fut = asyncio.get_running_loop().create_future()
            conn.transport.write(request.encode())
            status, _ = await conn.fut
            if status != 200:
                raise RuntimeError(f"{method} answered {status}")
            done += 1

    try:
        await asyncio.gather(*(one(c) for c in conns))
    finally:
        for conn in conns:
            conn.transport.close()
    return done


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port: int) -> None:
    """Return once something accepts on ``port`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run(kind: str, method: str, args: argparse.Namespace) -> str:
    """One candidate, one method: the result line."""
    import uvloop

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
    try:
        wait_listening(port)
        before = cpu_seconds(proc.pid)
        try:
            done = uvloop.run(load(port, args.clients, args.seconds, method))
        except Exception as exc:
            return f"| {kind} | {method} | refused ({exc}) | |"
        cpu = cpu_seconds(proc.pid) - before
        return f"| {kind} | {method} | {done / args.seconds:.0f} | {cpu / done * 1e6:.1f} |"
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    """Parse options, run every available candidate, print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("candidates", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    shared = Path(os.environ.get("ASPEN_SHARED_BENCH", Path(__file__).parents[2] / "shared/bench"))
    sys.path.insert(0, str(shared))
    print(f"{args.clients} keep-alive clients, {args.seconds:g} s per line, same machine\n")
    print("| server | method | requests/s | server CPU µs/request |")
    print("|---|---|---|---|")
    for kind in args.candidates:
        if importlib.util.find_spec(_NEEDS.get(kind, "aspen")) is None:
            print(f"| {kind} | | not installed | |")
            continue
        for method in ("GET", "LIST"):
            print(run(kind, method, args), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
