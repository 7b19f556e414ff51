"""What peers exchange per replicated write (issue 10): Raft messages, socket writes and bytes
per put on the leader and each follower of a local 3-node cluster, at 16 and 64 clients.

Counts, not times: they hold on a busy machine. For each client count it runs the shared load
generator (``../shared/bench/loadgen.py``, puts of 100-byte values on the leader) for
``--duration`` seconds and reads every node's ``node.status`` before and after: per put, the
Raft messages each node sent (``sent``), the socket writes they went out in (``writes``), the
bytes (``bytes``) and the messages it received (``recv``), plus the node's CPU µs per put (from
``/proc``). With ``--strace`` it then repeats the run with ``strace -f -c`` on a follower and
prints its socket syscalls per put (strace slows the node: its ops/s are not comparable).

    ASPEN_SHARED_BENCH=/work/shared/bench .venv/bin/python bench/peer_messages.py [--strace]

``--baseline DIR`` also runs another checkout (``PYTHONPATH=DIR/core/src``) first, in the same
run; a checkout whose ``node.status`` has no ``peers`` counters reports CPU and syscalls only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import LOADGEN

import aspen
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port

_TICKS = os.sysconf("SC_CLK_TCK")
_SOCKET_CALLS = "sendto,sendmsg,write,writev,recvfrom,recvmsg,read"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _peer_totals(endpoint: str, token: str) -> dict[str, int] | None:
    """One node's peer counters summed over its peers (None: the checkout has none)."""
    with aspen.connect(endpoint, token=token) as c:
        peers = c.call("node.status").get("peers")
    if not peers:
        return None
    totals = {"sent": 0, "writes": 0, "bytes": 0, "recv": 0}
    for link in peers["peers"].values():
        totals["sent"] += link["sent"]
        totals["writes"] += link.get("writes", 0)
        totals["bytes"] += link.get("sent_bytes", 0)
        totals["recv"] += link["received"]
    return totals


def _load(endpoint: str, token: str, clients: int, duration: float, out: Path) -> dict:
    """Run the shared load generator; return its JSON result."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(LOADGEN), "--target", "aspen", "--endpoints", endpoint]
    cmd += ["--op", "put", "--concurrency", str(clients), "--duration", str(duration)]
    cmd += ["--quiet-wait", "0", "--noisy-retries", "0", "--json", str(out)]
    subprocess.run(
        cmd, env={**os.environ, "ASPEN_TOKEN": token}, check=True, stdout=subprocess.DEVNULL
    )
    return json.loads(out.read_text().splitlines()[-1])


def _strace_counts(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in _SOCKET_CALLS.split(","):
            counts[parts[-1]] = int(parts[3])
    return counts


def measure(args: argparse.Namespace, label: str) -> dict:
    """One checkout's figures (the environment's PYTHONPATH picks the checkout)."""
    with tempfile.TemporaryDirectory(prefix="aspen-peermsg-") as tmp:
        cluster = DevCluster(Path(tmp) / "c", 3, free_base_port(3))
        cluster.up()
        try:
            roles = {}
            for i in range(1, 4):
                with aspen.connect(cluster.client_endpoint(i), token=cluster.token) as c:
                    roles[i] = c.call("cluster.status")["role"]
            leader = next(i for i, r in roles.items() if r == "leader")
            names = {leader: "leader"}
            names.update({i: f"follower{n}" for n, i in enumerate(i for i in roles if i != leader)})
            pids = {i: cluster.procs[i - 1].pid for i in roles}
            endpoint = cluster.client_endpoint(leader)
            result: dict = {"label": label}
            for clients in args.clients:
                before = {i: _peer_totals(cluster.client_endpoint(i), cluster.token) for i in roles}
                cpu = {i: _cpu_s(p) for i, p in pids.items()}
                run = _load(endpoint, cluster.token, clients, args.duration, Path(tmp) / "lg.json")
                used = {i: _cpu_s(p) - cpu[i] for i, p in pids.items()}
                after = {i: _peer_totals(cluster.client_endpoint(i), cluster.token) for i in roles}
                ops = run["ops"]
                row: dict = {"ops_per_s": round(run["ops_per_s"]), "p99_ms": run["p99_us"] / 1e3}
                for i, name in names.items():
                    node = {"cpu_us": round(used[i] * 1e6 / ops)}
                    if before[i] is not None and after[i] is not None:
                        for key in ("sent", "writes", "recv"):
                            node[key] = round((after[i][key] - before[i][key]) / ops, 3)
                        node["bytes"] = round((after[i]["bytes"] - before[i]["bytes"]) / ops)
                    row[name] = node
                result[f"c{clients}"] = row
                if args.strace:
                    follower = next(i for i in roles if i != leader)
                    trace = ["strace", "-f", "-c", "-e", f"trace={_SOCKET_CALLS}"]
                    tracer = subprocess.Popen(
                        [*trace, "-p", str(pids[follower])],
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    time.sleep(1.0)  # attached to every thread
                    traced = _load(endpoint, cluster.token, clients, 3.0, Path(tmp) / "st.json")
                    tracer.send_signal(signal.SIGINT)
                    calls = _strace_counts(tracer.communicate(timeout=30)[1])
                    row["follower_syscalls_per_put"] = {
                        k: round(v / traced["ops"], 2) for k, v in sorted(calls.items())
                    }
            return result
        finally:
            cluster.down()


def main() -> None:
    """Measure this checkout (and ``--baseline``) and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--strace", action="store_true", help="also count a follower's syscalls")
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args()
    if args.baseline is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve() / "core" / "src")}
        cmd = [sys.executable, __file__, "--duration", str(args.duration), "--clients"]
        cmd += [str(c) for c in args.clients] + (["--strace"] if args.strace else [])
        cmd += ["--label", f"baseline {args.baseline}"]
        subprocess.run(cmd, env=env, check=True)
    print(json.dumps(measure(args, args.label)))


if __name__ == "__main__":
    main()
