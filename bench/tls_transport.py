"""What TLS costs on client links, and what peer links carry (the transport issue's figures).

* ``rpc``: an RPC server with one echo method (no storage, no Raft) in its own process, plain
  TCP and then TLS 1.3 (a cluster token); the client in this process runs a closed loop on
  1 and 16 connections (one request in flight each) and reports round trips/s, p50/p99.
* ``peer``: two PeerTransports in two processes over mutual TLS: one-way throughput of
  ~100-byte messages (the sender keeps at most ``--window`` unacknowledged, the receiver
  acks every 64th) and ping-pong round trips on one link.

The machine has 2 cores shared by the server and the client processes; both run on uvloop.

    .venv/bin/python bench/tls_transport.py [--duration 5] [--what rpc,peer]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a child process has to come up.
START_TIMEOUT = 30.0
UVLOOP = {"use_uvloop": True}


def wait_for_file(path: Path, proc: subprocess.Popen) -> str:
    """Wait until the child wrote ``path`` (its port); return the text."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        if proc.poll() is not None:
            raise SystemExit(f"child exited with {proc.returncode}")
        time.sleep(0.02)
    raise SystemExit("child did not start")


def spawn(*args: str) -> subprocess.Popen:
    """Start this script as a child with ``args``."""
    return subprocess.Popen([sys.executable, __file__, *args])


def stop(proc: subprocess.Popen) -> None:
    """Stop a child we started."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile of sorted ``values``."""
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


# ---------------------------------------------------------------------------------- rpc
async def rpc_server(data_dir: Path, tls: bool, port_file: Path) -> None:
    """Serve ``bench.echo`` (plain or TLS) until killed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from aspen.auth.service import TokenService
    from aspen.auth.tokens import TokenSigner
    from aspen.plugins.types import RpcHandler
    from aspen.rpc import MethodRegistry, RpcServer
    from aspen.transport.identity import load_or_create_identity
    from aspen.transport.tls import load_node_credentials, server_context

    async def echo(ctx: Any, params: dict[str, Any]) -> Any:
        return params

    identity = load_or_create_identity(data_dir)
    creds = load_node_credentials(data_dir, identity)
    token = (data_dir / "root-token").read_text().strip()
    server = RpcServer(
        MethodRegistry([RpcHandler("bench.echo", echo, plugin="bench")]),
        node=None,
        authenticate=TokenService(
            TokenSigner.from_ca(Ed25519PrivateKey.generate(), "bench"), token
        ).authenticate,
        node_id=identity.node_id,
        ssl_context=server_context(creds) if tls and creds else None,
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        port_file.write_text(f"{port}\n")


async def rpc_clients(
    endpoint: str, token: str, conns: int, duration: float, server_pid: int
) -> dict[str, Any]:
    """Closed loop on ``conns`` connections for ``duration`` s; return the figures."""
    import aspen

    latencies: list[float] = []
    clients = [aspen.aconnect(endpoint, token=token) for _ in range(conns)]
    params = {"key": b"k" * 16, "value": b"v" * 100}
    for c in clients:
        await c.__aenter__()
    try:
        stop_at = time.perf_counter() + duration

        async def loop(c: Any) -> None:
            now = time.perf_counter
            call = c.call
            while True:
                t0 = now()
                await call("bench.echo", params)
                t1 = now()
                latencies.append(t1 - t0)
                if t1 >= stop_at:
                    return

        started = time.perf_counter()
        cpu0, server0 = time.process_time(), proc_cpu(server_pid)
        async with anyio.create_task_group() as tg:
            for c in clients:
                tg.start_soon(loop, c)
        elapsed = time.perf_counter() - started
        cpu, server_cpu = time.process_time() - cpu0, proc_cpu(server_pid) - server0
    finally:
        for c in clients:
            await c.aclose()
    latencies.sort()
    return {
        "ops_per_s": len(latencies) / elapsed,
        "p50_us": pct(latencies, 50) * 1e6,
        "p99_us": pct(latencies, 99) * 1e6,
        "client_cpu_us_per_op": cpu / len(latencies) * 1e6,
        "server_cpu_us_per_op": server_cpu / len(latencies) * 1e6,
    }


def bench_rpc(duration: float, repeat: int) -> list[dict[str, Any]]:
    """Plain vs TLS, 1 and 16 connections; both servers run at once and the runs alternate
    (plain, TLS, plain, ...) so that load from elsewhere hits both alike."""
    from aspen.node.auth import load_or_create_root_token
    from aspen.transport.join import init_cluster

    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="aspen-tlsbench-") as tmp:
        plain_dir, tls_dir = Path(tmp) / "plain", Path(tmp) / "tls"
        plain_dir.mkdir()
        load_or_create_root_token(plain_dir)
        init_cluster(tls_dir, ["127.0.0.1:0"])
        servers = {}
        try:
            for mode, data_dir in (("plain", plain_dir), ("tls", tls_dir)):
                port_file = Path(tmp) / f"{mode}.port"
                proc = spawn("rpc-server", str(data_dir), mode, str(port_file))
                servers[mode] = (proc, f"127.0.0.1:{wait_for_file(port_file, proc)}", data_dir)
            for _ in range(repeat):
                for conns in (1, 16):
                    for mode, (proc, endpoint, data_dir) in servers.items():
                        token = (data_dir / "root-token").read_text().strip()
                        run = anyio.run(
                            rpc_clients,
                            endpoint,
                            token,
                            conns,
                            duration,
                            proc.pid,
                            backend_options=UVLOOP,
                        )
                        runs.setdefault((mode, conns), []).append(run)
        finally:
            for proc, _, _ in servers.values():
                stop(proc)
    rows = []
    for (mode, conns), results in runs.items():
        median = sorted(results, key=lambda r: r["ops_per_s"])[len(results) // 2]
        rows.append({"bench": "rpc", "mode": mode, "connections": conns, **median})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ---------------------------------------------------------------------------------- peer
def peer_creds(data_dir: Path, name: str) -> Any:
    """Credentials of node ``name`` under the shared CA in ``data_dir``."""
    from aspen.transport.identity import load_or_create_identity
    from aspen.transport.tls import ClusterCA, NodeCredentials

    node_dir = data_dir / name
    node_dir.mkdir(exist_ok=True)
    return NodeCredentials.issue(ClusterCA.load(data_dir), load_or_create_identity(node_dir))


async def peer_receiver(data_dir: Path, port_file: Path, driver: str) -> None:
    """Node B: ack every 64th message and answer pings, until killed."""
    from aspen.transport.peer import PeerTransport

    creds = peer_creds(data_dir, "b")
    sender = peer_creds(data_dir, "a").node_id
    transport: PeerTransport

    def on_message(peer_id: str, msg: dict[str, Any]) -> None:
        seq = msg["seq"]
        if msg.get("ping") or seq % 64 == 0:
            transport.send(peer_id, None, {"ack": seq})

    transport = PeerTransport(
        creds, "127.0.0.1:0", is_member=lambda _: True, on_message=on_message, driver=driver
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(transport.serve)
        port_file.write_text(f"{port}\n")
        while not (data_dir / "a.address").exists():
            await anyio.sleep(0.01)
        transport.update_addresses({sender: (data_dir / "a.address").read_text().strip()})


async def peer_sender(
    data_dir: Path, b_address: str, duration: float, window: int, driver: str
) -> list[dict]:
    """Node A: one-way throughput with an ack window, then ping-pong."""
    from aspen.transport.peer import PeerTransport

    creds = peer_creds(data_dir, "a")
    b_id = peer_creds(data_dir, "b").node_id
    acked = 0
    wake = anyio.Event()

    def on_message(peer_id: str, msg: dict[str, Any]) -> None:
        nonlocal acked, wake
        acked = max(acked, msg["ack"])
        wake.set()

    transport = PeerTransport(
        creds, "127.0.0.1:0", is_member=lambda _: True, on_message=on_message, driver=driver
    )
    rows = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(transport.serve)
        (data_dir / "a.address").write_text(f"127.0.0.1:{port}\n")
        transport.update_addresses({b_id: b_address})
        body = {"type": "append", "term": 3, "entries": [b"e" * 80]}
        seq = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        stop_at = t0 + duration
        while time.perf_counter() < stop_at:
            while seq - acked < window:
                seq += 1
                transport.send(b_id, None, {"seq": seq, **body})
            wake = anyio.Event()
            await wake.wait()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        rows.append(
            {
                "bench": "peer-throughput",
                "driver": driver,
                "window": window,
                "msgs_per_s": acked / elapsed,
                "sender_cpu_us_per_msg": cpu / max(acked, 1) * 1e6,
            }
        )
        lat = []
        stop_at = time.perf_counter() + duration
        while time.perf_counter() < stop_at:
            seq += 1
            wake = anyio.Event()
            t = time.perf_counter()
            transport.send(b_id, None, {"seq": seq, "ping": True, **body})
            while acked < seq:
                await wake.wait()
                wake = anyio.Event()
            lat.append(time.perf_counter() - t)
        lat.sort()
        rows.append(
            {
                "bench": "peer-pingpong",
                "driver": driver,
                "round_trips_per_s": len(lat) / duration,
                "p50_us": pct(lat, 50) * 1e6,
                "p99_us": pct(lat, 99) * 1e6,
            }
        )
        tg.cancel_scope.cancel()
    return rows


def bench_peer(duration: float, window: int, drivers: list[str]) -> list[dict[str, Any]]:
    """Two nodes, two processes, for each peer I/O driver."""
    from aspen.transport.tls import ClusterCA

    rows = []
    for driver in drivers:
        with tempfile.TemporaryDirectory(prefix="aspen-peerbench-") as tmp:
            data_dir = Path(tmp)
            ClusterCA.create(data_dir)
            port_file = data_dir / "b.port"
            proc = spawn("peer-receiver", str(data_dir), str(port_file), driver)
            try:
                b_address = f"127.0.0.1:{wait_for_file(port_file, proc)}"
                rows += anyio.run(
                    peer_sender,
                    data_dir,
                    b_address,
                    duration,
                    window,
                    driver,
                    backend_options=UVLOOP,
                )
            finally:
                stop(proc)
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def _row(r: dict[str, Any]) -> str:
    """One side of the summary table."""
    return (
        f"{r['ops_per_s']:9.0f}  {r['p50_us']:5.0f}/{r['p99_us']:5.0f}  "
        f"{r['client_cpu_us_per_op']:4.0f}/{r['server_cpu_us_per_op']:4.0f}"
    )


def main() -> None:
    """Run the benchmarks (or a child role)."""
    if len(sys.argv) > 1 and sys.argv[1] == "rpc-server":
        data_dir, mode, port_file = sys.argv[2:5]
        anyio.run(
            rpc_server, Path(data_dir), mode == "tls", Path(port_file), backend_options=UVLOOP
        )
        return
    if len(sys.argv) > 1 and sys.argv[1] == "peer-receiver":
        anyio.run(
            peer_receiver, Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], backend_options=UVLOOP
        )
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--what", default="rpc,peer")
    ap.add_argument("--peer-drivers", default="asyncio,anyio")
    args = ap.parse_args()
    rows = []
    if "rpc" in args.what:
        rows += bench_rpc(args.duration, args.repeat)
    if "peer" in args.what:
        rows += bench_peer(args.duration, args.window, args.peer_drivers.split(","))
    rpc = {(r["mode"], r["connections"]): r for r in rows if r["bench"] == "rpc"}
    if rpc:
        print("\nclient RPC round trips (echo, 100-byte value), uvloop, 2 cores shared")
        print(
            "conns | plain ops/s  p50/p99 us  cpu c/s us | TLS ops/s  p50/p99 us  cpu c/s us "
            "| TLS/plain"
        )
        for conns in (1, 16):
            p, t = rpc[("plain", conns)], rpc[("tls", conns)]
            print(f"{conns:5} | {_row(p)} | {_row(t)} | {t['ops_per_s'] / p['ops_per_s']:.2f}")
    if os.environ.get("ASPEN_BENCH_JSON"):
        Path(os.environ["ASPEN_BENCH_JSON"]).write_text("\n".join(map(json.dumps, rows)) + "\n")
    print(f"(median of {args.repeat} runs per RPC point)")


if __name__ == "__main__":
    main()
