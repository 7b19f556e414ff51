"""Aspen vs etcd, same workload, same run, 1 or 3 nodes.

Runs ../shared/bench/loadgen.py (closed loop, 100-byte values) against etcd
(../shared/bench/etcd_cluster.sh) and then Aspen (real processes: one node, or a local
cluster like ``aspen dev up``), for put and linearizable get at the given concurrencies,
and prints throughput and latency ratios (Aspen / etcd). The machine has 2 cores shared by
the servers and the load generator.

    .venv/bin/python bench/compare.py --nodes 1|3 [--duration 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = Path(os.environ.get("ASPEN_SHARED_BENCH", ROOT.parent / "shared" / "bench"))
LOADGEN = SHARED_BENCH / "loadgen.py"
ETCD = SHARED_BENCH / "etcd_cluster.sh"
#: Seconds the Aspen node has to come up.
START_TIMEOUT = 30.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadgen(target: str, endpoints: str, pids: str, op: str, args, out: Path, env=None) -> None:
    """Run the shared load generator once for ``op`` at every concurrency."""
    cmd = [
        sys.executable,
        str(LOADGEN),
        "--target",
        target,
        "--endpoints",
        endpoints,
        "--server-pids",
        pids,
        "--op",
        op,
        "--concurrency",
        args.concurrency,
        "--duration",
        str(args.duration),
        "--repeat",
        str(args.repeat),
        "--label",
        f"{target}-{args.nodes}",
        "--json",
        str(out),
        "--quiet-wait",
        str(args.quiet_wait),
        "--noisy-retries",
        str(args.noisy_retries),
    ]
    if op == "get":
        cmd.append("--prefill")
    if target == "etcd" and args.nodes > 1:
        cmd += ["--endpoint-policy", "leader"]
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})


def start_aspen(data_dir: Path, port: int) -> subprocess.Popen:
    """Start a node process and wait until its token file exists and the port answers."""
    from aspen.node.devcluster import node_command

    proc = subprocess.Popen(
        node_command(data_dir, f"127.0.0.1:{port}"),
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir.parent / "aspen.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                if (data_dir / "root-token").exists():
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("aspen node did not start")


def summarize(path: Path) -> None:
    """Print medians per (target, op, concurrency) and Aspen/etcd ratios."""
    rows: dict[tuple[str, str, int], list[dict]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault((r["target"], r["op"], r["concurrency"]), []).append(r)
    for key, runs in rows.items():  # the quiet runs of a point, else all of them
        rows[key] = [r for r in runs if not r.get("noisy")] or runs

    def med(target, op, c, field):
        vals = [r.get(field, 0) for r in rows.get((target, op, c), [])]
        return statistics.median(vals) if vals else float("nan")

    print(
        "\nop   clients | etcd ops/s  p50/p99 ms   | aspen ops/s  p50/p99 ms   | ratio ops  p99"
        "    | aspen server CPU us/op"
    )
    for op in ("put", "get"):
        for c in sorted({k[2] for k in rows if k[1] == op}):
            e, a = med("etcd", op, c, "ops_per_s"), med("aspen", op, c, "ops_per_s")
            e50, e99 = med("etcd", op, c, "p50_us") / 1e3, med("etcd", op, c, "p99_us") / 1e3
            a50, a99 = med("aspen", op, c, "p50_us") / 1e3, med("aspen", op, c, "p99_us") / 1e3
            cpu = [
                sum(r.get("server_cpu_pct_of_one_core", {}).values()) * 1e4 / r["ops_per_s"]
                for r in rows.get(("aspen", op, c), [])
                if r.get("ops_per_s")
            ]
            us = statistics.median(cpu) if cpu else float("nan")
            print(
                f"{op:4} {c:7} | {e:10.0f}  {e50:5.2f}/{e99:6.2f} | {a:11.0f}  "
                f"{a50:5.2f}/{a99:6.2f} | {a / e:8.2f}x  {a99 / e99:5.2f}x | {us:8.0f}"
            )
    print("(2 cores shared by the server and the load generator; medians of the repeats)")


def main() -> None:
    """Run etcd then Aspen with the same workload and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--ops", default="put,get")
    ap.add_argument("--skip-etcd", action="store_true")
    ap.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--quiet-wait", type=float, default=30, help="seconds to wait for an idle machine"
    )
    ap.add_argument("--noisy-retries", type=int, default=2, help="re-runs of a run flagged noisy")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. a `git worktree` of main): its Aspen runs too, in the same "
        "run before this one, and is printed as a second table against the same etcd figures",
    )
    args = ap.parse_args()
    args.out = args.out or ROOT / "bench" / "results" / f"compare-{args.nodes}.jsonl"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.unlink(missing_ok=True)
    ops = args.ops.split(",")
    if not args.skip_etcd:
        run_etcd(ops, args)
    if args.baseline is not None:
        base_out = args.out.with_suffix(".baseline.jsonl")
        etcd_rows = [ln for ln in args.out.read_text().splitlines() if '"etcd"' in ln]
        base_out.write_text("".join(ln + "\n" for ln in etcd_rows))
        saved, os.environ["PYTHONPATH"] = (
            os.environ.get("PYTHONPATH"),
            str(args.baseline.resolve() / "core" / "src"),
        )
        try:
            run_aspen(ops, argparse.Namespace(**{**vars(args), "out": base_out}))
        finally:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
        print(f"\n== baseline: {args.baseline}")
        summarize(base_out)
        print("\n== this checkout")
    run_aspen(ops, args)
    summarize(args.out)


def run_aspen(ops: list[str], args) -> None:
    """Aspen's side: one node or a local cluster, in a fresh temporary directory."""
    with tempfile.TemporaryDirectory(prefix="aspen-bench-") as tmp:
        if args.nodes == 1:
            run_aspen_single(Path(tmp), ops, args)
        else:
            run_aspen_cluster(Path(tmp), ops, args)


def _etcd(*args: str) -> str:
    """Run the shared etcd script; return its output."""
    cmd = ["bash", str(ETCD), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def run_etcd(ops: list[str], args) -> None:
    """etcd with as many members as Aspen gets; clients go to its leader."""
    n = str(args.nodes)
    subprocess.run(["bash", str(ETCD), "start", n], check=True)
    try:
        for op in ops:
            loadgen("etcd", _etcd("endpoints", n), _etcd("pids", n), op, args, args.out)
    finally:
        subprocess.run(["bash", str(ETCD), "stop", n], check=False)


def run_aspen_single(tmp: Path, ops: list[str], args) -> None:
    """One node process."""
    data_dir, port = tmp / "node", free_port()
    proc = start_aspen(data_dir, port)
    try:
        token = (data_dir / "root-token").read_text().strip()
        for op in ops:
            loadgen(
                "aspen",
                f"127.0.0.1:{port}",
                str(proc.pid),
                op,
                args,
                args.out,
                env={"ASPEN_TOKEN": token},
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def run_aspen_cluster(tmp: Path, ops: list[str], args) -> None:
    """A local cluster of node processes; clients go to the leader, as with etcd."""
    import aspen
    from aspen.node.devcluster import DevCluster
    from aspen.testing import free_base_port

    cluster = DevCluster(tmp / "c", args.nodes, free_base_port(args.nodes))
    try:
        cluster.up()
        leader = ""
        for i in range(1, args.nodes + 1):
            with aspen.connect(cluster.client_endpoint(i), token=cluster.token) as c:
                if c.call("cluster.status")["role"] == "leader":
                    leader = cluster.client_endpoint(i)
        pids = ",".join(str(p.pid) for p in cluster.procs)
        for op in ops:
            loadgen("aspen", leader, pids, op, args, args.out, env={"ASPEN_TOKEN": cluster.token})
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
