"""aspen-hooks on a 3-node cluster: event-to-handler-start latency, sustained hook
throughput, and what hooks cost the cluster's writes (same run).

Phases, on one local cluster of real node processes running the core and aspen-hooks:

1. put throughput with no handler (the shared load generator, 16 clients);
2. the same with a python handler on every put (``bench/hooks_support/bench_hook.py``),
   then how fast the runner works off that burst (events/s);
3. paced puts (one client, ``--paced`` puts at 50/s): time from sending the put to the
   handler starting, for the python handler and for a shell handler;
4. put throughput again with a handler stuck in ``sleep`` (it must not slow writes);
5. put throughput with no handler again (ratios are to the mean of 1 and 5).

    .venv/bin/python bench/hooks.py [--duration 5] [--paced 200]

No peer has this feature (etcd has no hooks), so the ratios are against Aspen itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import free_port, loadgen

import aspen
from aspen.node.devcluster import DevCluster

HERE = Path(__file__).resolve().parent
#: Seconds the runner has to work off a burst of events.
DRAIN_TIMEOUT = 300.0


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


def _run_load(cluster: DevCluster, leader: str, args, label: str, out: Path) -> dict:
    """One put load (16 clients) against the leader; returns its JSON result."""
    opts = SimpleNamespace(
        concurrency="16", duration=args.duration, repeat=1, nodes=f"3-{label}", out=out
    )
    pids = ",".join(str(p.pid) for p in cluster.procs)
    loadgen("aspen", leader, pids, "put", opts, out, env={"ASPEN_TOKEN": cluster.token})
    return json.loads(out.read_text().splitlines()[-1])  # the last (re-run if noisy) attempt


def _records(log: Path) -> list[tuple[float, str]]:
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        stamp, _, key = line.partition(" ")
        rows.append((float(stamp), key))
    return rows


def _drain(client, log: Path, expected: int) -> float:
    """Wait until ``expected`` runs are logged; return the handler throughput (events/s)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while len(_records(log)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = _records(log)
    span = rows[-1][0] - rows[0][0] if len(rows) > 1 else 0.0
    return len(rows) / span if span else float("nan")


def _paced(client, prefix: str, count: int, log: Path) -> list[float]:
    """Put ``count`` keys at 50/s; return send-to-handler-start latencies in seconds."""
    sent: dict[str, float] = {}
    for i in range(count):
        key = f"{prefix}{i:05d}"
        sent[key] = time.time()
        client.kv.put(key.encode(), b"v")
        time.sleep(0.02)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = {k: t for t, k in _records(log) if k in sent}
        if len(started) == count:
            break
        time.sleep(0.2)
    return [started[k] - sent[k] for k in started]


def _add(client, name: str, on: str, kind: str, target: dict, timeout: float = 30) -> None:
    params = {"name": name, "on": on, "kind": kind, "target": target, "timeout": timeout}
    client.call("hooks.add", params)


def main() -> None:
    """Run the phases and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--paced", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        log, shell_log, out = tmp / "python-hook.log", tmp / "shell-hook.log", tmp / "load.jsonl"
        cluster = DevCluster(
            tmp / "c",
            3,
            free_port() // 10 * 10 % 20000 + 30000,
            env={
                "ASPEN_LOAD_PLUGINS": "hooks",
                "PYTHONPATH": str(HERE / "hooks_support"),
                "ASPEN_BENCH_HOOK_LOG": str(log),
            },
        )
        try:
            cluster.up()
            endpoints = ",".join(cluster.client_endpoint(i) for i in (1, 2, 3))
            with aspen.connect(endpoints, token=cluster.token, timeout=30) as client:
                leader_id = client.call("cluster.status")["leader"]
                members = client.call("cluster.status")["members"]
                leader = members[leader_id]["client"]
                figures = _phases(cluster, client, leader, args, log, shell_log, out)
        finally:
            cluster.down()
    _report(figures)


def _phases(cluster, client, leader, args, log: Path, shell_log: Path, out: Path) -> dict:
    figures: dict = {}
    figures["no_handler"] = _run_load(cluster, leader, args, "no-handler", out)

    _add(client, "py", "kv.put:bench/*", "python", {"entrypoint": "bench_hook:record"})
    figures["python_handler"] = _run_load(cluster, leader, args, "python-handler", out)
    puts = figures["python_handler"]["ops"]
    figures["handler_events_per_s"] = _drain(client, log, puts)

    client.call("hooks.remove", {"name": "py"})
    _add(client, "py-paced", "kv.put:paced/*", "python", {"entrypoint": "bench_hook:record"})
    figures["python_latency"] = _paced(client, "paced/", args.paced, log)
    client.call("hooks.remove", {"name": "py-paced"})
    command = f'printf "%s %s\\n" "$(date +%s.%N)" "$ASPEN_HOOK_KEY" >> {shell_log}'
    _add(client, "sh-paced", "kv.put:spaced/*", "shell", {"command": command})
    figures["shell_latency"] = _paced(client, "spaced/", args.paced, shell_log)
    client.call("hooks.remove", {"name": "sh-paced"})

    _add(client, "stuck", "kv.put:bench/*", "shell", {"command": "sleep 600"}, timeout=600)
    figures["stuck_handler"] = _run_load(cluster, leader, args, "stuck-handler", out)
    client.call("hooks.remove", {"name": "stuck"})
    figures["no_handler_again"] = _run_load(cluster, leader, args, "no-handler-again", out)
    return figures


def _report(f: dict) -> None:
    # the baseline is the mean of the runs before and after (the machine drifts)
    before, after = f["no_handler"], f["no_handler_again"]
    base = {k: (before[k] + after[k]) / 2 for k in ("ops_per_s", "p50_us", "p99_us")}

    def row(label: str, r: dict) -> str:
        ratio = r["ops_per_s"] / base["ops_per_s"]
        return (
            f"{label:28} {r['ops_per_s']:9.0f} ops/s  p50 {r['p50_us'] / 1e3:6.2f} ms  "
            f"p99 {r['p99_us'] / 1e3:6.2f} ms  ({ratio:.2f}x of no handler)"
        )

    print("\nput throughput, 3 nodes, 16 clients on the leader")
    print(row("no handler (first run)", before))
    print(row("no handler (last run)", after))
    print(row("python handler on every put", f["python_handler"]))
    print(row("a stuck shell handler", f["stuck_handler"]))
    print(f"\nsustained python-handler throughput: {f['handler_events_per_s']:.0f} events/s")
    for kind in ("python", "shell"):
        lat = f[f"{kind}_latency"]
        print(
            f"event-to-handler-start, {kind:6}: p50 {statistics.median(lat) * 1e3:6.1f} ms  "
            f"p99 {_percentile(lat, 99) * 1e3:6.1f} ms  ({len(lat)} paced puts)"
        )
    print("(2 cores shared by 3 nodes, the handlers and the load generator)")


if __name__ == "__main__":
    main()
