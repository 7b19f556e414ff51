"""Issue 18: what each operation costs as the keyspace grows, Aspen vs etcd in one run.

For every size (``--sizes 10k,100k,1M``) and cluster (``--nodes 1,3``) it starts a fresh
cluster of real processes (Aspen: DevCluster; etcd: /usr/bin/etcd with a raised quota),
loads that many keys ``k/0000000000...`` with 100-byte values (txns of 1000 puts, 4 in
flight) and reports: load rate; get and put p50/p99 (one client, random keys); range page
latency (limit 100) at the start, middle and end of the keyspace; count of the prefix;
watch catch-up over the last 100k events; disk bytes per key (node 1's data directory,
with a breakdown per LMDB database / bbolt file and WAL); snapshot creation (Aspen: the
log compacted to the applied index; etcd: ``snapshot save``) and disk after it; RSS (and
anonymous RSS: without LMDB's mapped pages); a new node's catch-up time and peak RSS (a
learner joining; Aspen sends it a snapshot); restart time (kill -9 of node 1 until it
answers). ``--leases 100000`` also grants that many leases
before the load and attaches every key to one (``--lease-ttl`` long enough to outlive the
run) and reports grant rate, keepalive latency and the node's CPU while idle.

One JSON line per (target, nodes, size) goes to ``bench/results/scale.jsonl``; the table
is printed and ``--plot`` draws cost vs size into ``bench/results/scale.png`` (needs
matplotlib: run the plot step with a Python that has it, see bench/README.md).

    .venv/bin/python bench/scale.py --sizes 10k,100k,1M --nodes 1 [--no-etcd] [--leases 100000]

The machine has 2 cores shared by the servers and the client: compare ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from scale_support.report import plot, print_table
from scale_support.shared import key, peak_rss, rss

RESULTS = Path(__file__).resolve().parent / "results"
#: Latency samples per operation.
SAMPLES = 1000
#: Range pages sampled at each position (fewer, but at least 3, once they took RANGE_SECONDS).
RANGE_SAMPLES = 50
RANGE_SECONDS = 5.0
#: Events a catching-up watch must receive.
WATCH_EVENTS = 100_000


def parse_size(text: str) -> int:
    """``10k`` → 10000, ``1M`` → 1000000."""
    mult = {"k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}
    if text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(text)


def pcts(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples`` seconds, in milliseconds."""
    s = sorted(samples)
    return s[len(s) // 2] * 1e3, s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3


def timed(fn: Any, *args: Any) -> float:
    """Seconds ``fn(*args)`` took."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def measure(target: Any, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Load ``size`` keys into a fresh ``target`` and measure everything; return the row."""
    row: dict[str, Any] = {"target": target.name, "nodes": target.nodes, "size": size}
    rng = random.Random(size)
    lease_of = None
    if args.leases:
        t0 = time.perf_counter()
        ids = target.grant_leases(args.leases, args.lease_ttl) if target.name == "aspen" else []
        if ids:
            row["lease_grant_per_s"] = len(ids) / (time.perf_counter() - t0)
            lease_of = lambda i: ids[i % len(ids)]  # noqa: E731
    t0 = time.perf_counter()
    target.load(0, size, lease_of)
    row["load_s"] = time.perf_counter() - t0
    row["load_keys_per_s"] = size / row["load_s"]
    print(f"  loaded {size} keys in {row['load_s']:.1f}s", flush=True)
    os.sync()  # let writeback of the load finish: it would slow the fsyncs measured next
    keys = [key(rng.randrange(size)) for _ in range(SAMPLES)]
    row["get_p50_ms"], row["get_p99_ms"] = pcts([timed(target.get, k) for k in keys])
    row["put_p50_ms"], row["put_p99_ms"] = pcts([timed(target.put, k) for k in keys])
    for where, at in (("start", 0), ("middle", size // 2), ("end", max(0, size - 100))):
        samples: list[float] = []
        while len(samples) < RANGE_SAMPLES and (len(samples) < 3 or sum(samples) < RANGE_SECONDS):
            samples.append(timed(target.range_page, key(at), 100))
        row[f"range_{where}_p50_ms"] = pcts(samples)[0]
    count_s = [timed(target.count) for _ in range(3)]
    row["count_ms"] = statistics.median(count_s) * 1e3
    # the last WATCH_EVENTS puts were the load's tail and the SAMPLES puts above
    events = min(WATCH_EVENTS, size)
    revision = target.revision()
    start_rev = max(2, revision - SAMPLES - (events - SAMPLES) // 1000 - 1)
    row["watch_catchup_s"] = target.watch_catchup(start_rev, events)
    row["watch_events"] = events
    row["disk_bytes"] = target.disk_bytes()
    row["disk_bytes_per_key"] = row["disk_bytes"] / size
    row["disk_breakdown"] = target.disk_breakdown()
    row["snapshot_create_s"] = target.snapshot()
    row["disk_after_snapshot_per_key"] = target.disk_bytes() / size
    pids = target.pids()
    row["rss_bytes"] = rss(pids[0])
    row["rss_anon_bytes"] = rss(pids[0], anon=True)
    row["peak_rss_bytes"] = peak_rss(pids[0])
    if lease_of is not None:
        row["keepalive_p50_ms"], row["keepalive_p99_ms"] = pcts(
            [timed(target.keepalive, ids[rng.randrange(len(ids))]) for _ in range(SAMPLES)]
        )
        c0 = cpu_seconds(pids[0])
        time.sleep(args.idle_seconds)
        row["idle_cpu_pct"] = (cpu_seconds(pids[0]) - c0) / args.idle_seconds * 100
    if args.join:
        row.update(target.join())
    row["restart_s"] = target.restart()
    return row


def main() -> None:
    """Run every (size, nodes, target) and report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k,1M")
    ap.add_argument("--nodes", default="1", help="cluster sizes, e.g. 1,3")
    ap.add_argument("--no-etcd", action="store_true", help="Aspen only")
    ap.add_argument("--no-join", dest="join", action="store_false", help="skip the joining node")
    ap.add_argument("--leases", type=int, default=0, help="grant this many leases (Aspen)")
    ap.add_argument("--lease-ttl", type=int, default=3600)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.jsonl")
    ap.add_argument("--work", type=Path, default=None, help="data directory (default: a temp dir)")
    ap.add_argument("--plot", action="store_true", help="draw bench/results/scale.png")
    ap.add_argument("--report-only", action="store_true", help="table/plot of --out, no runs")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run_all(args)
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    print_table(rows)
    if args.plot:
        print("plot:", plot(rows, args.out.with_suffix(".png")))


def run_all(args: argparse.Namespace) -> None:
    """Measure every combination, appending rows to ``args.out``."""
    from scale_support.aspen_side import AspenTarget  # needs aspen (--report-only does not)
    from scale_support.etcd_side import EtcdTarget

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    nodes = [int(n) for n in args.nodes.split(",")]
    kinds = [AspenTarget] if args.no_etcd else [EtcdTarget, AspenTarget]
    with tempfile.TemporaryDirectory(prefix="aspen-scale-", dir=args.work) as tmp:
        for size in sizes:
            for n in nodes:
                for kind in kinds:
                    target = kind(Path(tmp), n)
                    print(f"{target.name} {n} node(s), {size} keys", flush=True)
                    t0 = time.perf_counter()
                    target.start()
                    try:
                        row = measure(target, size, args)
                    finally:
                        target.stop()
                    row["wall_s"] = time.perf_counter() - t0
                    row["leases"] = args.leases if target.name == "aspen" else 0
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"  done in {row['wall_s']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
