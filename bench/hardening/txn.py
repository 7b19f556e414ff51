"""Issue 9, item "txn range ops are materialised inside apply": one node process, a writer
putting small values in a loop, and ``kv.txn`` of N x ``range g/..g0 limit 10000`` over
10,000 keys under ``g/`` (then txns within the read bounds, read-only and mixed), each sent
back to back for a few seconds. Prints each txn's outcome, the node's peak RSS and the
writer's put latency (p50/p99/max) meanwhile.

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
from aspen.client.txn import Op, TxnOp
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
    ap.add_argument("--seconds", type=float, default=3.0, help="per shape of txn")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = DevCluster(Path(tmp), 1, free_base())
        cluster.up()
        try:
            run(cluster, args)
        finally:
            cluster.down()


def scenarios(ops: int) -> list[tuple[str, list[TxnOp]]]:
    """(name, txn ops) of each shape measured: the issue's, then shapes within the bounds
    (10 x 1000 = MAX_RESPONSE_KVS rows), read-only and mixed with a put."""
    big = [Op.range("g/", limit=10_000) for _ in range(ops)]
    fair = [Op.range("g/", limit=1000) for _ in range(10)]
    return [
        (f"{ops} x range g/ limit 10000 (the issue's)", big),
        ("10 x range g/ limit 1000, read-only", fair),
        ("10 x range g/ limit 1000 + 1 put (through the log)", [*fair, Op.put("m/x", "1")]),
    ]


class Writer(threading.Thread):
    """Puts one small value after another, recording (start, seconds, error) of each."""

    def __init__(self, endpoint: str, token: str) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.token = endpoint, token
        self.stop = threading.Event()
        self.puts: list[tuple[float, float, str]] = []

    def run(self) -> None:
        """Put until stopped; a failed put counts with the time it took to fail."""
        with aspen.connect(self.endpoint, token=self.token, timeout=60) as w:
            n = 0
            while not self.stop.is_set():
                t0, error = time.monotonic(), ""
                try:
                    w.kv.put("w/counter", str(n))
                except AspenError as exc:
                    error = f"{exc.code}: {exc}"
                self.puts.append((t0, time.monotonic() - t0, error))
                n += 1

    def between(self, t0: float, t1: float) -> list[tuple[float, str]]:
        """(seconds, error) of the puts whose interval overlaps [t0, t1]."""
        return [(d, e) for start, d, e in self.puts if start <= t1 and start + d >= t0]


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 20 ms; ``peak()`` is the largest since ``reset()``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.top = pid, 0.0

    def run(self) -> None:
        """Sample until the process is gone."""
        while True:
            try:
                self.top = max(self.top, rss_mb(self.pid, "VmRSS"))
            except OSError:
                return
            time.sleep(0.02)

    def reset(self) -> None:
        """Start a new peak from the current RSS."""
        self.top = rss_mb(self.pid, "VmRSS")


def run(cluster: DevCluster, args: argparse.Namespace) -> None:
    """Load, start the writer, send each shape of txn for a few seconds, report."""
    endpoint, pid = cluster.client_endpoint(1), cluster.procs[0].pid
    with aspen.connect(endpoint, token=cluster.token, timeout=60) as c:
        load(c, args.keys, args.value_bytes)
    print(f"loaded {args.keys} keys of {args.value_bytes} bytes under g/ on 1 node")
    writer, sampler = Writer(endpoint, cluster.token), RssSampler(pid)
    writer.start()
    sampler.start()
    time.sleep(1.0)
    report("writer alone", writer.between(time.monotonic() - 1.0, time.monotonic()), "")
    with aspen.connect(endpoint, token=cluster.token, timeout=60) as c:
        for name, ops in scenarios(args.ops):
            sampler.reset()
            t0, sent, outcome = time.monotonic(), 0, ""
            while sent == 0 or time.monotonic() - t0 < args.seconds:
                try:
                    result = c.kv.txn(success=ops)
                    outcome = f"ok, {sum(len(getattr(r, 'kvs', ())) for r in result.responses)} kvs"
                except AspenError as exc:
                    outcome = f"{exc.code}: {exc}"
                sent += 1
            t1 = time.monotonic()
            settle(c)
            print(f"\n{name}: {sent} txns in {t1 - t0:.2f} s; last answer: {outcome}")
            report(
                "  writer meanwhile", writer.between(t0, t1), f"node peak RSS {sampler.top:.0f} MB"
            )
    writer.stop.set()
    writer.join()
    print(f"\nnode peak RSS over the run (VmHWM): {rss_mb(pid):.0f} MB")


def settle(c: SyncClient) -> None:
    """Wait until the node answers writes again (a txn that timed out may still be applying)."""
    while True:
        try:
            c.kv.put("bench/settle", "1")
            return
        except AspenError:
            time.sleep(0.5)


def report(label: str, puts: list[tuple[float, str]], extra: str) -> None:
    """Print p50/p99/max of the puts and their errors."""
    times = [d for d, _ in puts] or [0.0]
    errors = [e for _, e in puts if e]
    print(
        f"{label}: {len(puts)} puts, p50 {statistics.median(times) * 1000:.1f} ms, "
        f"p99 {percentile(times, 0.99) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms, "
        f"{len(errors)} errors {errors[:1]}; {extra}"
    )


if __name__ == "__main__":
    main()
