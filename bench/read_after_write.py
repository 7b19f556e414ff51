"""Latency of a read right after a write on a local 3-node cluster: one client puts on the
leader, then reads the key at once on the leader and on a follower, linearizable and
serializable (each read kind from its own connection). For this checkout and, with
``--baseline DIR``, another one in the same run. With the apply batch (issue 10) a read
that must see the write commits the batch at once: its latency must not grow by
``--apply-batch-seconds`` (set it long here to see that it does not).

    .venv/bin/python bench/read_after_write.py --rounds 300 [--baseline /work/wt/base7] \
        [--apply-batch-seconds 0.5]

Prints one JSON line per checkout: p50/p99 (ms) of the put and of each read kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wal_costs import _roles

import aspen
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port

#: (name, on the leader, serializable) of each read kind measured.
_READS = (
    ("leader_linearizable", True, False),
    ("leader_serializable", True, True),
    ("follower_linearizable", False, False),
    ("follower_serializable", False, True),
)


def _figures(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(cuts[49] * 1e3, 2), "p99_ms": round(cuts[98] * 1e3, 2)}


def measure(rounds: int, label: str, batch_seconds: str | None) -> dict:
    """One checkout's figures (the environment's PYTHONPATH picks the checkout)."""
    env = {} if batch_seconds is None else {"ASPEN_APPLY_BATCH_SECONDS": batch_seconds}
    with tempfile.TemporaryDirectory(prefix="aspen-raw-") as tmp:
        cluster = DevCluster(Path(tmp) / "c", 3, free_base_port(3), env=env)
        cluster.up()
        try:
            leader, followers = _roles(cluster)
            token = cluster.token
            writer = aspen.connect(cluster.client_endpoint(leader), token=token, timeout=30)
            readers = {
                name: aspen.connect(
                    cluster.client_endpoint(leader if on_leader else followers[0]),
                    token=token,
                    timeout=30,
                )
                for name, on_leader, _ in _READS
            }
            times: dict[str, list[float]] = {"put": [], **{name: [] for name, *_ in _READS}}
            stale = 0
            for i in range(rounds):
                name, _, serializable = _READS[i % len(_READS)]
                key = f"raw/{i % 16}"
                t0 = time.perf_counter()
                revision = writer.kv.put(key, b"v" * 100).revision
                t1 = time.perf_counter()
                got = readers[name].kv.get(key, serializable=serializable)
                times["put"].append(t1 - t0)
                times[name].append(time.perf_counter() - t1)
                if got is None or got.mod_revision < revision:
                    stale += 1  # allowed only for a follower's serializable read
            for c in (writer, *readers.values()):
                c.close()
            return {
                "label": label,
                "rounds": rounds,
                "stale_follower_serializable": stale,
                **{name: _figures(samples) for name, samples in times.items()},
            }
        finally:
            cluster.down()


def main() -> None:
    """Measure this checkout (and ``--baseline``) and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--apply-batch-seconds", default=None)
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args()
    if args.baseline is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve() / "core" / "src")}
        cmd = [sys.executable, __file__, "--rounds", str(args.rounds)]
        cmd += ["--label", f"baseline {args.baseline}"]
        subprocess.run(cmd, env=env, check=True)
    print(json.dumps(measure(args.rounds, args.label, args.apply_batch_seconds)))


if __name__ == "__main__":
    main()
