"""Issue 9, item "txn range ops are materialised inside apply": one node process, a writer
putting small values in a loop, and one ``kv.txn`` of N x ``range g/..g0 limit 10000``
over 10,000 keys under ``g/``. Prints the txn's outcome, the node's peak RSS (VmHWM) and
the writer's put latency (p50/p99/max) while the txn is in flight.

    .venv/bin/python bench/hardening/txn.py [--ops 200] [--keys 10000] [--value-bytes 100]

The issue's figures were for 400 ops (1.7 GB); the default of 200 keeps the reproduction
below ~1 GB on a shared machine. Both the node and the load run on the same 2 shared cores.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import aspen
from aspen.client import SyncClient
from aspen.client.txn import Op
from aspen.errors import AspenError
from aspen.node.devcluster import DevCluster


def free_base() -> int:
    """A base port with room for client and peer ports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1] // 10 * 10


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """``field`` (VmRSS or VmHWM, the peak) of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(c: SyncClient, keys: int, value_bytes: int) -> None:
    """Write ``keys`` keys under ``g/`` in txns of 1000 puts."""
    value = b"v" * value_bytes
    for start in range(0, keys, 1000):
        ops = [Op.put(f"g/{i:08d}", value) for i in range(start, min(keys, start + 1000))]
        c.kv.txn(success=ops)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    """Run the reproduction once and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=200, help="range ops in the txn")
    ap.add_argument("--keys", type=int, default=10_000, help="keys under g/")
    ap.add_argument("--value-bytes", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = DevCluster(Path(tmp), 1, free_base())
        cluster.up()
        try:
            run(cluster, args)
        finally:
            cluster.down()


def run(cluster: DevCluster, args: argparse.Namespace) -> None:
    """Load, start the writer, send the txn, report."""
    endpoint, pid = cluster.client_endpoint(1), cluster.procs[0].pid
    with aspen.connect(endpoint, token=cluster.token, timeout=60) as c:
        load(c, args.keys, args.value_bytes)
    print(f"loaded {args.keys} keys; node RSS {rss_mb(pid, 'VmRSS'):.0f} MB")

    stop = threading.Event()
    latencies: list[tuple[float, float]] = []  # (start, seconds)
    errors: list[str] = []

    def writer() -> None:
        with aspen.connect(endpoint, token=cluster.token, timeout=60) as w:
            n = 0
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    w.kv.put("w/counter", str(n))
                except AspenError as exc:
                    errors.append(f"{exc.code}: {exc}")
                latencies.append((t0, time.monotonic() - t0))  # failed puts count too
                n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.0)  # the writer's baseline
    ops = [Op.range("g/", limit=10_000) for _ in range(args.ops)]
    t0 = time.monotonic()
    with aspen.connect(endpoint, token=cluster.token, timeout=60) as c:
        try:
            result = c.kv.txn(success=ops)
            outcome = f"ok, {sum(len(r.kvs) for r in result.responses)} kvs returned"
        except AspenError as exc:
            outcome = f"{exc.code}: {exc}"
    t1 = time.monotonic()
    time.sleep(0.5)
    stop.set()
    thread.join()

    # every put whose interval overlaps the txn's
    during = [d for start, d in latencies if start <= t1 and start + d >= t0] or [0.0]
    before = [d for start, d in latencies if start + d < t0]
    print(f"txn of {args.ops} x range g/ limit 10000: {outcome} (after {t1 - t0:.2f} s)")
    print(f"node peak RSS (VmHWM): {rss_mb(pid):.0f} MB")
    print(
        f"writer before the txn: {len(before)} puts, p99 {percentile(before, 0.99) * 1000:.1f} ms"
    )
    print(
        f"writer during the txn: {len(during)} puts, p50 "
        f"{statistics.median(during) * 1000:.1f} ms, p99 {percentile(during, 0.99) * 1000:.1f} ms,"
        f" max {max(during) * 1000:.1f} ms; errors: {len(errors)} {errors[:2]}"
    )


if __name__ == "__main__":
    main()
