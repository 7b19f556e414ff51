"""Issue 9 §1, the watch items, reproduced on a local 3-node cluster of real processes.

1. Catch-up: ``--keys`` keys under ``e/``, a live watch on ``e/`` at the leader, then one
   delete-range of all of them while a writer puts another key in a loop.
2. Big history: ``--big`` keys of 1 MiB written twice, then ``--watches`` watches from
   the first of those revisions with ``prev_kv`` (every event carries ~2 MiB), while the
   writer goes on.

For each it prints the leader's peak RSS, the writer's put p50/p99/max, the Raft term
before and after, and what the watches received. Machine: 2 shared cores, servers and
clients on it together, so latencies are noisy.

    .venv/bin/python bench/hardening/watch.py [--keys 100000] [--big 16] [--watches 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aspen
from aspen.client import Op
from aspen.errors import AspenError
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port, wait_for

MiB = 1024 * 1024


def rss_bytes(pid: int) -> tuple[int, int]:
    """(resident set size, its anonymous part) of process ``pid``: the rest is LMDB's
    file pages mapped in by reads, which the kernel may drop at will."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(rest.split()[0]) * 1024
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0)


class Sampler(threading.Thread):
    """Peak RSS (and peak anonymous RSS) of one process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_anon, self.stop = pid, 0, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            rss, anon = rss_bytes(self.pid)
            self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)


class Writer(threading.Thread):
    """Puts one key in a loop and records each put's latency (and failures)."""

    def __init__(self, endpoints: str, token: str) -> None:
        super().__init__(daemon=True)
        self.endpoints, self.token = endpoints, token
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with aspen.connect(self.endpoints, token=self.token, timeout=60) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.kv.put("p/x", "v")
                except AspenError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.latencies.append(time.perf_counter() - t0)
                time.sleep(0.005)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"puts {len(lat)}  p50 {statistics.median(lat) * 1000:.1f} ms  "
            f"p99 {p99 * 1000:.1f} ms  max {lat[-1] * 1000:.1f} ms  errors {len(self.errors)}"
            + (f" (first: {self.errors[0]})" if self.errors else "")
        )


def leader(c: DevCluster) -> tuple[int, int]:
    """(1-based index, term) of the current leader."""

    def find() -> tuple[int, int] | None:
        for i in range(1, c.nodes + 1):
            try:
                with aspen.connect(c.client_endpoint(i), token=c.token, timeout=2) as cl:
                    st = cl.call("cluster.status")
                    if st["role"] == "leader":
                        return i, int(st["raft"]["term"])
            except (AspenError, OSError):
                continue
        return None

    return wait_for(find, timeout=30)


def measured(c: DevCluster, title: str, body: Callable[[Writer], str]) -> None:
    """Run ``body`` with a writer and an RSS sampler on the leader; print the figures."""
    index, term = leader(c)
    sampler = Sampler(c.procs[index - 1].pid)
    everyone = ",".join(c.client_endpoint(i) for i in range(1, c.nodes + 1))
    writer = Writer(everyone, c.token)
    sampler.start()
    writer.start()
    t0 = time.monotonic()
    try:
        outcome = body(writer)
    finally:
        writer.stop.set()
        writer.join()
        sampler.stop.set()
        sampler.join()
    after = leader(c)
    print(f"== {title}")
    print(f"   {outcome} in {time.monotonic() - t0:.1f} s")
    print(
        f"   leader RSS peak {sampler.peak / MiB:.0f} MiB "
        f"(anonymous {sampler.peak_anon / MiB:.0f} MiB); {writer.summary()}"
    )
    print(f"   leader n{index} term {term} -> n{after[0]} term {after[1]}")


def catch_up(c: DevCluster, keys: int, *, watched: bool) -> None:
    """Item 1: a live watch over ``keys`` keys, then one delete-range of all of them
    (``watched=False``: the same delete with no watch, the control)."""
    with aspen.connect(c.client_endpoint(1), token=c.token, timeout=60) as cl:
        for start in range(0, keys, 1000):
            ops = [Op.put(f"e/{i:07d}", "v") for i in range(start, min(keys, start + 1000))]
            cl.kv.txn(success=ops)
    index, _ = leader(c)

    def body(writer: Writer) -> str:
        with aspen.connect(c.client_endpoint(index), token=c.token, timeout=60) as cl:
            if not watched:
                return f"deleted {cl.kv.delete('e/', prefix=True).deleted} keys"
            watch = cl.watch("e/", prefix=True)
            cl.kv.delete("e/", prefix=True)
            seen = 0
            for resp in watch:
                seen += sum(1 for ev in resp.events if ev.type == "delete")
                if seen >= keys:
                    break
            watch.close()
        return f"watch saw {seen} deletes"

    what = "live watch + delete-range" if watched else "control, no watch: delete-range"
    measured(c, f"catch-up: {what} of {keys} keys", body)


def big_history(c: DevCluster, big: int, watches: int) -> None:
    """Item 2: ``watches`` watches with prev_kv from an old revision over 1 MiB values."""
    value = b"x" * MiB
    with aspen.connect(c.client_endpoint(1), token=c.token, timeout=60) as cl:
        first = cl.kv.put("b/0000", value).revision
        for round_ in range(2):
            for i in range(big):
                if (round_, i) != (0, 0):
                    cl.kv.put(f"b/{i:04d}", value)
    index, _ = leader(c)
    results: list[str] = []

    def one_watch() -> None:
        got = 0
        try:
            with aspen.connect(c.client_endpoint(index), token=c.token, timeout=60) as cl:
                watch = cl.watch("b/", prefix=True, start_revision=first, prev_kv=True)
                for resp in watch:
                    got += len(resp.events)
                    if got >= 2 * big:
                        break
                watch.close()
            results.append(f"{got}")
        except AspenError as exc:
            results.append(f"{got} then {exc.code}: {str(exc)[:90]}")

    def body(writer: Writer) -> str:
        threads = [threading.Thread(target=one_watch) for _ in range(watches)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return f"events received of {2 * big} per watch: " + "; ".join(sorted(set(results)))

    measured(c, f"big history: {watches} watches, prev_kv, {2 * big} x 1 MiB events", body)


def main() -> None:
    """Run both reproductions on a fresh 3-node cluster."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=16)
    ap.add_argument("--watches", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        c = DevCluster(Path(tmp) / "c", 3, free_base_port(3))
        c.up()
        try:
            catch_up(c, args.keys, watched=False)
            catch_up(c, args.keys, watched=True)
            big_history(c, args.big, args.watches)
        finally:
            c.down()


if __name__ == "__main__":
    main()
