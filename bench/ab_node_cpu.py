"""Interleaved A/B of a node's CPU per request: this checkout vs another, turn by turn.

``bench/compare.py --baseline`` runs the other checkout's node first and this one after, so
load from other work on a shared machine can land on one side only. Here one node of each
checkout runs side by side, and short rounds of the shared load generator alternate between
them (A B B A A B …); the node's CPU µs per request (from ``/proc``, load-independent
enough) and ops/s are printed per side as medians over the rounds, with the ratio.

    .venv/bin/python bench/ab_node_cpu.py --baseline /work/wt/base6 [--op put] \\
        [--clients 16] [--duration 4] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import LOADGEN, free_port, start_aspen

ROOT = Path(__file__).resolve().parent.parent


def _round(endpoint: str, pid: int, token: str, args: argparse.Namespace, out: Path) -> dict:
    """One load generator run against one node; its JSON result."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(LOADGEN), "--target", "aspen", "--endpoints", endpoint]
    cmd += ["--server-pids", str(pid), "--op", args.op, "--concurrency", str(args.clients)]
    cmd += ["--duration", str(args.duration), "--quiet-wait", "0", "--noisy-retries", "0"]
    cmd += ["--json", str(out)] + (["--prefill"] if args.op == "get" else [])
    env = {**os.environ, "ASPEN_TOKEN": token}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text().splitlines()[-1])


def main() -> None:
    """Start both nodes, alternate rounds, print medians."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    ap.add_argument("--op", choices=("put", "get"), default="put")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    sides = {"this": ROOT / "core" / "src", "baseline": args.baseline.resolve() / "core" / "src"}
    results: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="aspen-ab-") as tmp:
        nodes = {}
        try:
            for name, src in sides.items():
                saved = os.environ.get("PYTHONPATH")
                os.environ["PYTHONPATH"] = str(src)
                try:
                    data_dir = Path(tmp) / name / "node"
                    data_dir.parent.mkdir()
                    port = free_port()
                    nodes[name] = (start_aspen(data_dir, port), port, data_dir)
                finally:
                    if saved is None:
                        del os.environ["PYTHONPATH"]
                    else:
                        os.environ["PYTHONPATH"] = saved
            order = ["baseline", "this"]
            for i in range(args.rounds):
                for name in order if i % 2 == 0 else order[::-1]:
                    proc, port, data_dir = nodes[name]
                    token = (data_dir / "root-token").read_text().strip()
                    run = _round(f"127.0.0.1:{port}", proc.pid, token, args, Path(tmp) / "r.json")
                    results[name].append(run)
        finally:
            for proc, _, _ in nodes.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    figures = {}
    for name, runs in results.items():
        ops = [r["ops_per_s"] for r in runs]
        cpu = [
            next(iter(r["server_cpu_pct_of_one_core"].values())) / 100 * 1e6 / r["ops_per_s"]
            for r in runs
        ]
        figures[name] = (statistics.median(cpu), statistics.median(ops))
        print(
            f"{name:9} {args.op} c={args.clients}: {figures[name][0]:6.1f} µs node CPU/op "
            f"(rounds {', '.join(f'{c:.0f}' for c in cpu)}), {figures[name][1]:7.0f} ops/s"
        )
    cpu_ratio = figures["this"][0] / figures["baseline"][0]
    ops_ratio = figures["this"][1] / figures["baseline"][1]
    print(f"this / baseline: CPU per op {cpu_ratio:.2f}x, ops/s {ops_ratio:.2f}x")


if __name__ == "__main__":
    main()
