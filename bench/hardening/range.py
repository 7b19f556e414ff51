"""Issue 18, "a standalone kv.range over 10k values of 1 MiB builds ~10 GB before failing
with 'ask for less'": one node process, ``--values`` values of 1 MiB under ``big/``, a
writer putting small values in a loop, then for a few seconds each: ``kv.range big/``
with limit 10000 (one page), and a client scan of ``big/`` page by page. Prints each
shape's outcome, the node's peak RSS and the writer's put latency (p50/p99/max) meanwhile.

    .venv/bin/python bench/hardening/range.py [--values 200] [--seconds 3]

Scaled down from 10,000 values to 200 (200 MB stored) to stay below ~1 GB on a shared
machine; the shape is the issue's. Node and load share the same 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from txn import RssSampler, Writer, free_base, report, rss_mb, settle  # bench/hardening/txn.py

import aspen
from aspen.errors import AspenError
from aspen.limits import MAX_VALUE_BYTES
from aspen.node.devcluster import DevCluster


def main() -> None:
    """Run the reproduction once and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=200, help="1 MiB values under big/")
    ap.add_argument("--seconds", type=float, default=3.0, help="per shape of read")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = DevCluster(Path(tmp), 1, free_base())
        cluster.up()
        try:
            run(cluster, args)
        finally:
            cluster.down()


def run(cluster: DevCluster, args: argparse.Namespace) -> None:
    """Load, start the writer, read each shape for a few seconds, report."""
    endpoint, pid = cluster.client_endpoint(1), cluster.procs[0].pid
    value = b"x" * MAX_VALUE_BYTES
    with aspen.connect(endpoint, token=cluster.token, timeout=120) as c:
        for i in range(args.values):
            c.kv.put(f"big/{i:05d}", value)
    print(f"loaded {args.values} values of {MAX_VALUE_BYTES} bytes under big/ on 1 node")
    writer, sampler = Writer(endpoint, cluster.token), RssSampler(pid)
    writer.start()
    sampler.start()
    time.sleep(1.0)
    report("writer alone", writer.between(time.monotonic() - 1.0, time.monotonic()), "")

    def one_page(c: aspen.SyncClient) -> str:
        page = c.call("kv.range", {"key": b"big/", "end": b"big0", "limit": 10_000})
        return f"ok, {len(page['kvs'])} kvs, more={page.get('more')}"

    def scan(c: aspen.SyncClient) -> str:
        with c.kv.scan("big/", page_size=10_000) as records:
            return f"ok, {sum(1 for _ in records)} kvs in all"

    with aspen.connect(endpoint, token=cluster.token, timeout=120) as c:
        for name, read in (("kv.range big/ limit 10000", one_page), ("kv.scan big/", scan)):
            sampler.reset()
            t0, sent, outcome = time.monotonic(), 0, ""
            while sent == 0 or time.monotonic() - t0 < args.seconds:
                try:
                    outcome = read(c)
                except AspenError as exc:
                    outcome = f"{exc.code}: {exc}"
                sent += 1
            t1 = time.monotonic()
            settle(c)
            print(f"\n{name}: {sent} reads in {t1 - t0:.2f} s; last answer: {outcome[:200]}")
            report(
                "  writer meanwhile", writer.between(t0, t1), f"node peak RSS {sampler.top:.0f} MB"
            )
    writer.stop.set()
    writer.join()
    print(f"\nnode peak RSS over the run (VmHWM): {rss_mb(pid):.0f} MB")


if __name__ == "__main__":
    main()
