"""Profile Aspen's write path: py-spy on the leader and a follower under put load.

Starts one node (``--nodes 1``) or a local cluster (``--nodes 3``), runs the shared load
generator (``../shared/bench/loadgen.py``, puts of 100-byte values, ``--clients`` closed-loop
clients on the leader) and, during the measured window, ``py-spy record`` on the leader and
on one follower. Prints for each: the functions with the most samples (self and inclusive),
the server CPU per put (µs, from the load generator's CPU meter) and the ops/s. The raw
collapsed stacks stay in ``--out`` (default ``bench/results/profile-<nodes>/``) for a
flame graph. Needs py-spy (``uv pip install --python .venv/bin/python py-spy``; it is not a
project dependency) and permission to ptrace the node processes (root, or
``kernel.yama.ptrace_scope=0``). The machine has 2 cores shared by servers, load generator
and py-spy (which samples at ``--rate`` Hz and costs some CPU itself).

    .venv/bin/python bench/profile_writes.py --nodes 3 --clients 64 --duration 10
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import LOADGEN, free_port, start_aspen

ROOT = Path(__file__).resolve().parent.parent


def _py_spy() -> str:
    """The py-spy executable next to this Python, or on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: uv pip install --python .venv/bin/python py-spy")
    return found


def summarize(raw: Path, top: int) -> str:
    """Top functions by self and inclusive samples of a py-spy ``--format raw`` file."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1] for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    lines = [f"  {total} samples"]
    lines.append("  self:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top * 2)]
    return "\n".join(lines)


def main() -> None:
    """Run the load, profile the servers, print what the profiles show."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, choices=(1, 3), default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--idle", action="store_true", help="include idle (waiting) frames")
    ap.add_argument(
        "--gil", action="store_true", help="only samples of the thread holding the GIL (CPU)"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"profile-{args.nodes}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aspen-prof-") as tmp:
        if args.nodes == 1:
            data_dir, port = Path(tmp) / "node", free_port()
            proc = start_aspen(data_dir, port)
            procs, endpoint = {"leader": proc}, f"127.0.0.1:{port}"
            token = (data_dir / "root-token").read_text().strip()
            stop = proc.terminate
        else:
            procs, endpoint, token, stop = _cluster(Path(tmp))
        try:
            _profile(args, out, procs, endpoint, token)
        finally:
            stop()


def _cluster(tmp: Path):
    """A local 3-node cluster: (processes by role, leader endpoint, token, stop)."""
    import aspen
    from aspen.node.devcluster import DevCluster
    from aspen.testing import free_base_port

    cluster = DevCluster(tmp / "c", 3, free_base_port(3))
    cluster.up()
    procs, endpoint = {}, ""
    for i in range(1, 4):
        with aspen.connect(cluster.client_endpoint(i), token=cluster.token) as c:
            role = c.call("cluster.status")["role"]
        if role == "leader":
            procs["leader"], endpoint = cluster.procs[i - 1], cluster.client_endpoint(i)
        elif "follower" not in procs:
            procs["follower"] = cluster.procs[i - 1]
    return procs, endpoint, cluster.token, cluster.down


def _profile(args, out: Path, procs: dict, endpoint: str, token: str) -> None:
    """Start py-spy on every process of ``procs`` and the load generator; print summaries."""
    result = out / "loadgen.jsonl"
    result.unlink(missing_ok=True)
    load = subprocess.Popen(
        [
            sys.executable,
            str(LOADGEN),
            "--target",
            "aspen",
            "--endpoints",
            endpoint,
            "--server-pids",
            ",".join(str(p.pid) for p in procs.values()),
            "--op",
            "put",
            "--concurrency",
            str(args.clients),
            "--duration",
            str(args.duration),
            "--quiet-wait",
            "0",
            "--noisy-retries",
            "0",
            "--json",
            str(result),
        ],
        env={**os.environ, "ASPEN_TOKEN": token},
    )
    spies = {}
    for role, proc in procs.items():
        cmd = [_py_spy(), "record", "--pid", str(proc.pid), "--rate", str(args.rate)]
        cmd += ["--duration", str(int(args.duration)), "--format", "raw", "--nonblocking"]
        cmd += ["--output", str(out / f"{role}.txt")] + (["--idle"] if args.idle else [])
        cmd += ["--gil"] if args.gil else []
        spies[role] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load.wait()
    for spy in spies.values():
        spy.wait()
    run = json.loads(result.read_text().splitlines()[-1])
    ops = run["ops_per_s"]
    print(f"put, {args.clients} clients, {args.nodes} node(s): {ops:.0f} ops/s (under py-spy)")
    cpu = run["server_cpu_pct_of_one_core"].values()
    for (role, proc), pct in zip(procs.items(), cpu, strict=False):
        print(f"{role} (pid {proc.pid}): {pct}% of a core, {pct / 100 * 1e6 / ops:.0f} µs CPU/put")
        print(summarize(out / f"{role}.txt", args.top))


if __name__ == "__main__":
    main()
