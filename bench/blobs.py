"""Blob store figures (issue 11), all from one run on this machine:

* physical limits: ``dd if=/dev/zero bs=1M conv=fdatasync`` to the disk the nodes use, and
  one TLS 1.3 stream over loopback between two processes (the nodes' own certificates);
* put and get throughput (MB/s, 10^6 bytes) of 1 MiB blobs (sequential) and big blobs
  (``--big-mib``, default 256) on 1 node (R=1) and on 3 nodes (R=1 and R=3), put through
  a follower, got through the leader;
* time to repair ``--repair-blobs`` x 1 MiB (default 200) after ``aspen cluster remove``
  of a holder, on 4 nodes with R=3;
* peak RSS of the node and of the ``aspen blob put`` CLI during a ``--rss-mib`` put
  (default 1024).

The machine has 2 cores shared by the nodes, the client and whatever else runs: compare
the ratios, not the absolute numbers. The nodes of a local cluster share one disk, so a put
with R=3 writes its bytes three times to it: its disk limit is a third of dd's
(``dd_per_copy_when_R3_MBps``).

    .venv/bin/python bench/blobs.py [--what limits,throughput,repair,rss] [--big-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aspen.testing.cluster import LocalCluster, local_cluster

MiB = 1024 * 1024
MB = 1_000_000
ENV = {"ASPEN_LOAD_PLUGINS": "", "ASPEN_BLOB_REPAIR_INTERVAL_SECONDS": "0.2"}


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes)."""
    return nbytes / MB / seconds


def chunks(total: int, seed: int) -> Iterator[bytes]:
    """``total`` bytes of a distinct blob, 1 MiB at a time (never held whole)."""
    block = os.urandom(MiB)
    for n in range(0, total, MiB):
        yield seed.to_bytes(8, "big") + n.to_bytes(8, "big") + block[16 : min(MiB, total - n)]


# ---------------------------------------------------------------------------------- limits
def dd_limit(directory: Path, mib: int) -> float:
    """MB/s of ``dd ... conv=fdatasync`` writing ``mib`` MiB into ``directory``."""
    target = directory / "dd.bin"
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    target.unlink()
    return mb_per_s(mib * MiB, elapsed)


async def _tls_sink(node_dir: Path, port_file: Path, expect: int) -> None:
    """Child: accept TLS with the node's credentials, read ``expect`` bytes, answer ``k``."""
    from aspen.transport.identity import load_or_create_identity
    from aspen.transport.tls import load_node_credentials, server_context

    creds = load_node_credentials(node_dir, load_or_create_identity(node_dir))
    assert creds is not None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while total < expect:
            data = await reader.read(4 * MiB)
            if not data:
                break
            total += len(data)
        writer.write(b"k")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(creds))
    port_file.write_text(f"{server.sockets[0].getsockname()[1]}\n")
    await server.serve_forever()


def tls_limit(node_dir: Path, mib: int) -> float:
    """MB/s of one TLS stream over loopback to a child process that reads and drops."""
    port_file = Path(tempfile.mkdtemp()) / "port"
    child = subprocess.Popen(
        [sys.executable, __file__, "--tls-sink", str(node_dir), str(port_file), str(mib * MiB)]
    )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().endswith("\n")):
            if time.monotonic() > deadline:
                raise SystemExit("TLS sink did not start")
            time.sleep(0.05)
        port = int(port_file.read_text())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        block = os.urandom(MiB)
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            start = time.perf_counter()
            for _ in range(mib):
                tls.sendall(block)
            assert tls.recv(1) == b"k"  # the sink has read every byte
            elapsed = time.perf_counter() - start
        return mb_per_s(mib * MiB, elapsed)
    finally:
        child.kill()
        child.wait(10)


# ---------------------------------------------------------------------------------- throughput
def _leader_and_follower(c: LocalCluster) -> tuple[int, int]:
    leader = c.leader_index()
    follower = next((i for i in range(1, c.nodes + 1) if i != leader), leader)
    return leader, follower


def throughput(c: LocalCluster, replicas: int, big_mib: int, small_count: int) -> dict[str, Any]:
    """Put through a follower and get through the leader: 1 MiB blobs and one big blob."""
    leader, follower = _leader_and_follower(c)
    out: dict[str, Any] = {"nodes": c.nodes, "replicas": replicas}
    with c.client(follower, timeout=600) as put_c, c.client(leader, timeout=600) as get_c:
        start = time.perf_counter()
        small = [
            put_c.blobs.put(b"".join(chunks(MiB, n)), replicas=replicas) for n in range(small_count)
        ]
        out["put_1MiB_MBps"] = mb_per_s(small_count * MiB, time.perf_counter() - start)
        start = time.perf_counter()
        for ref in small:
            get_c.blobs.get_bytes(ref.hash)
        out["get_1MiB_MBps"] = mb_per_s(small_count * MiB, time.perf_counter() - start)
        start = time.perf_counter()
        big = put_c.blobs.put(chunks(big_mib * MiB, 10**6), replicas=replicas)
        out[f"put_{big_mib}MiB_MBps"] = mb_per_s(big_mib * MiB, time.perf_counter() - start)
        start = time.perf_counter()
        got = sum(len(piece) for piece in get_c.blobs.get(big.hash))
        out[f"get_{big_mib}MiB_MBps"] = mb_per_s(got, time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------- repair
def repair_time(root: Path, blobs: int) -> dict[str, Any]:
    """4 nodes, R=3: remove a holder, time until nothing is under-replicated."""
    with local_cluster(root / "repair", 4, env=ENV) as c:
        leader = c.leader_index()
        with c.client(leader, timeout=600) as client:
            for n in range(blobs):
                client.blobs.put(b"".join(chunks(MiB, n)), replicas=3, pin=f"b{n}")
            victim = next(i for i in range(1, 5) if i != leader)
            victim_id = c.node_id(victim)
            held = sum(victim_id in b["holders"] for b in client.blobs.list())
            start = time.perf_counter()
            client.call("cluster.remove", {"id": victim_id})
            c.kill(victim)
            while client.blobs.status()["under_replicated"] > 0:
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
    return {"blobs": blobs, "held_by_removed_node": held, "repair_seconds": elapsed}


# ---------------------------------------------------------------------------------- rss
def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def rss_during_put(c: LocalCluster, mib: int, root: Path) -> dict[str, Any]:
    """Peak RSS of node 1 and of ``aspen blob put FILE`` while it puts ``mib`` MiB."""
    src = root / "rss.bin"
    with open(src, "wb") as f:
        for piece in chunks(mib * MiB, 7):
            f.write(piece)
    node_pid = c.procs[0].pid
    node_before = _rss(node_pid)
    env = {**os.environ, "ASPEN_ENDPOINT": c.client_endpoint(1), "ASPEN_TOKEN": c.token}
    cli = subprocess.Popen(
        [sys.executable, "-m", "aspen", "--timeout", "600", "blob", "put", str(src), "--json"],
        env=env,
        stdout=subprocess.PIPE,
    )
    node_peak = cli_peak = 0
    start = time.perf_counter()
    while cli.poll() is None:
        node_peak = max(node_peak, _rss(node_pid))
        cli_peak = max(cli_peak, _rss(cli.pid))
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    assert cli.returncode == 0, cli.returncode
    src.unlink()
    return {
        "put_MiB": mib,
        "put_MBps": mb_per_s(mib * MiB, elapsed),
        "node_rss_before_MiB": node_before / MiB,
        "node_rss_peak_MiB": node_peak / MiB,
        "cli_rss_peak_MiB": cli_peak / MiB,
    }


def main() -> None:
    """Run the parts asked for and print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--what", default="limits,throughput,repair,rss")
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--small-count", type=int, default=32)
    parser.add_argument("--repair-blobs", type=int, default=200)
    parser.add_argument("--rss-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="Where the nodes keep data.")
    parser.add_argument("--tls-sink", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tls_sink:
        sink_dir, port_file, expect = args.tls_sink
        asyncio.run(_tls_sink(Path(sink_dir), Path(port_file), int(expect)))
        return
    what = set(args.what.split(","))
    root = Path(tempfile.mkdtemp(prefix="aspen-blobs-bench-", dir=args.dir))
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, shared", "dir": str(root)}
    if what & {"limits", "throughput", "rss"}:
        with local_cluster(root / "one", 1, env=ENV) as one:
            if "limits" in what:
                report["dd_fdatasync_MBps"] = dd_limit(root, args.big_mib)
                # the nodes of a local cluster share this one disk: R copies cost R writes
                report["dd_per_copy_when_R3_MBps"] = report["dd_fdatasync_MBps"] / 3
                report["tls_stream_MBps"] = tls_limit(one.node_dir(1), args.big_mib)
            if "throughput" in what:
                report["one_node_R1"] = throughput(one, 1, args.big_mib, args.small_count)
            if "rss" in what:
                report["rss"] = rss_during_put(one, args.rss_mib, root)
        if "throughput" in what:
            with local_cluster(root / "three", 3, env=ENV) as three:
                report["three_nodes_R1"] = throughput(three, 1, args.big_mib, args.small_count)
                report["three_nodes_R3"] = throughput(three, 3, args.big_mib, args.small_count)
    if "repair" in what:
        report["repair"] = repair_time(root, args.repair_blobs)
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
