"""Load-independent costs of a write on a local cluster: fsyncs per put on the leader and on
a follower (``strace -c``), and CPU µs per put of each node (``/proc/<pid>/stat``), for this
checkout and, with ``--baseline DIR``, another one (a ``git worktree`` of main) in the same
run. Counts, not times: they hold on a busy machine.

    .venv/bin/python bench/wal_costs.py --nodes 3 --puts 400 [--baseline /work/wt/wal-base]

Phase 1 (CPU): ``--puts`` sequential puts from one client, then the same count from
``--clients`` concurrent clients; CPU of every node process over each phase / puts.
Phase 2 (fsyncs): the same sequential puts with ``strace -f -c -e trace=fsync,fdatasync``
attached to every node (strace slows the node down; its CPU is not measured then).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aspen
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _roles(cluster: DevCluster) -> tuple[int, list[int]]:
    leader, followers = 0, []
    for i in range(1, cluster.nodes + 1):
        with aspen.connect(cluster.client_endpoint(i), token=cluster.token) as c:
            if c.call("cluster.status")["role"] == "leader":
                leader = i
            else:
                followers.append(i)
    return leader, followers


def _puts(endpoint: str, token: str, n: int, clients: int, tag: str) -> None:
    def one(k: int) -> None:
        with aspen.connect(endpoint, token=token, timeout=30) as c:
            for i in range(k, n, clients):
                c.kv.put(f"{tag}/{i:07d}", b"v" * 100)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _strace_counts(out: str) -> dict[str, int]:
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync", "msync"):
            counts[parts[-1]] = int(parts[3])
    return counts


def measure(args: argparse.Namespace, label: str) -> dict:
    """One checkout's figures (the environment's PYTHONPATH picks the checkout)."""
    with tempfile.TemporaryDirectory(prefix="aspen-walcost-") as tmp:
        cluster = DevCluster(Path(tmp) / "c", args.nodes, free_base_port(args.nodes))
        cluster.up()
        try:
            leader, followers = _roles(cluster)
            pids = {i: cluster.procs[i - 1].pid for i in range(1, args.nodes + 1)}
            endpoint = cluster.client_endpoint(leader)
            _puts(endpoint, cluster.token, 100, 1, "warm")
            result: dict = {"label": label, "nodes": args.nodes}
            for clients in (1, args.clients):
                before = {i: _cpu_s(p) for i, p in pids.items()}
                _puts(endpoint, cluster.token, args.puts, clients, f"cpu{clients}")
                used = {i: _cpu_s(p) - before[i] for i, p in pids.items()}
                result[f"cpu_us_per_put_c{clients}"] = {
                    "leader": round(used[leader] * 1e6 / args.puts),
                    **{
                        f"follower{n}": round(used[f] * 1e6 / args.puts)
                        for n, f in enumerate(followers)
                    },
                }
            tracers = {
                i: subprocess.Popen(
                    ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,msync", "-p", str(p)],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i, p in pids.items()
            }
            time.sleep(1.0)  # strace attached to every thread
            _puts(endpoint, cluster.token, args.puts, 1, "fsync")
            fsyncs = {}
            for i, tracer in tracers.items():
                tracer.send_signal(signal.SIGINT)
                fsyncs[i] = _strace_counts(tracer.communicate(timeout=30)[1])
            per_put = {i: round(sum(c.values()) / args.puts, 2) for i, c in fsyncs.items()}
            result["fsyncs_per_put_c1"] = {
                "leader": per_put[leader],
                **{f"follower{n}": per_put[f] for n, f in enumerate(followers)},
            }
            result["fsync_calls"] = {
                "leader": fsyncs[leader],
                **({"follower0": fsyncs[followers[0]]} if followers else {}),
            }
            return result
        finally:
            cluster.down()


def main() -> None:
    """Measure this checkout (and ``--baseline``) and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--puts", type=int, default=400)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args()
    if args.baseline is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve() / "core" / "src")}
        cmd = [sys.executable, __file__, "--nodes", str(args.nodes), "--puts", str(args.puts)]
        cmd += ["--clients", str(args.clients), "--label", f"baseline {args.baseline}"]
        subprocess.run(cmd, env=env, check=True)
    print(json.dumps(measure(args, args.label)))


if __name__ == "__main__":
    main()
