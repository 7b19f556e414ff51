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

``--baseline DIR`` also runs another checkout (``PYTHONPATH=DIR/core/src``) in the same run: both
clusters run at once and their load phases alternate back to back (``--rounds``, medians), so
both see the same machine load; a checkout whose ``node.status`` has no ``peers`` counters
reports CPU and syscalls only.
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


class Checkout:
    """One checkout's 3-node cluster, its roles and its figures."""

    def __init__(self, label: str, tmp: Path, src: Path | None) -> None:
        self.label = label
        env = {"PYTHONPATH": str(src)} if src is not None else {}
        self.cluster = DevCluster(tmp / label.replace("/", "_"), 3, free_base_port(3), env=env)
        self.cluster.up()
        roles = {}
        for i in range(1, 4):
            with aspen.connect(self.cluster.client_endpoint(i), token=self.cluster.token) as c:
                roles[i] = c.call("cluster.status")["role"]
        self.leader = next(i for i, r in roles.items() if r == "leader")
        self.names = {self.leader: "leader"}
        followers = [i for i in roles if i != self.leader]
        self.names.update({i: f"follower{n}" for n, i in enumerate(followers)})
        self.pids = {i: self.cluster.procs[i - 1].pid for i in roles}
        #: Per client count: a list of rows, one per round.
        self.rows: dict[int, list[dict]] = {}

    def endpoint(self, i: int | None = None) -> str:
        """Client endpoint of node ``i`` (default: the leader)."""
        return self.cluster.client_endpoint(self.leader if i is None else i)

    def run(self, clients: int, duration: float, out: Path) -> None:
        """One load phase; append its per-put figures to ``rows``."""
        token = self.cluster.token
        before = {i: _peer_totals(self.endpoint(i), token) for i in self.names}
        cpu = {i: _cpu_s(p) for i, p in self.pids.items()}
        run = _load(self.endpoint(), token, clients, duration, out)
        used = {i: _cpu_s(p) - cpu[i] for i, p in self.pids.items()}
        after = {i: _peer_totals(self.endpoint(i), token) for i in self.names}
        ops = run["ops"]
        row: dict = {"ops_per_s": round(run["ops_per_s"]), "p99_ms": round(run["p99_us"] / 1e3, 1)}
        row["cpu_us_total"] = round(sum(used.values()) * 1e6 / ops)
        for i, name in self.names.items():
            node = {"cpu_us": round(used[i] * 1e6 / ops)}
            if before[i] is not None and after[i] is not None:
                for key in ("sent", "writes", "recv"):
                    node[key] = round((after[i][key] - before[i][key]) / ops, 3)
                node["bytes"] = round((after[i]["bytes"] - before[i]["bytes"]) / ops)
            row[name] = node
        self.rows.setdefault(clients, []).append(row)

    def strace(self, clients: int, out: Path) -> dict[str, float]:
        """A follower's socket syscalls per put during a 3 s phase under ``strace -f -c``."""
        follower = next(i for i in self.names if i != self.leader)
        trace = ["strace", "-f", "-c", "-e", f"trace={_SOCKET_CALLS}"]
        tracer = subprocess.Popen(
            [*trace, "-p", str(self.pids[follower])], stderr=subprocess.PIPE, text=True
        )
        time.sleep(1.0)  # attached to every thread
        traced = _load(self.endpoint(), self.cluster.token, clients, 3.0, out)
        tracer.send_signal(signal.SIGINT)
        calls = _strace_counts(tracer.communicate(timeout=30)[1])
        return {k: round(v / traced["ops"], 2) for k, v in sorted(calls.items())}

    def summary(self) -> dict:
        """Medians over the rounds, per client count."""
        out: dict = {"label": self.label}
        for clients, rows in self.rows.items():
            out[f"c{clients}"] = _median_rows(rows)
        return out


def _median_rows(rows: list[dict]) -> dict:
    """Field-wise median of rows of the same shape."""
    first = rows[0]
    out: dict = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _median_rows([r[key] for r in rows])
        else:
            out[key] = statistics.median(r[key] for r in rows)
    return out


def main() -> None:
    """Measure this checkout (and ``--baseline``, interleaved) and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--strace", action="store_true", help="also count a follower's syscalls")
    ap.add_argument("--baseline", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aspen-peermsg-") as tmp_name:
        tmp = Path(tmp_name)
        checkouts: list[Checkout] = []
        try:
            if args.baseline is not None:
                src = args.baseline.resolve() / "core" / "src"
                checkouts.append(Checkout(f"baseline {args.baseline}", tmp, src))
            checkouts.append(Checkout("this checkout", tmp, None))
            for n in range(args.rounds):
                for clients in args.clients:
                    order = checkouts if n % 2 == 0 else checkouts[::-1]
                    for checkout in order:  # back to back: the same machine load
                        checkout.run(clients, args.duration, tmp / "load.json")
            results = [c.summary() for c in checkouts]
            if args.strace:
                for checkout, result in zip(checkouts, results, strict=True):
                    for clients in args.clients:
                        calls = checkout.strace(clients, tmp / "load.json")
                        result[f"c{clients}"]["follower_syscalls_per_put"] = calls
            for result in results:
                print(json.dumps(result))
        finally:
            for checkout in checkouts:
                checkout.cluster.down()


if __name__ == "__main__":
    main()
