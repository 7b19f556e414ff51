"""Latency anatomy of one put on a local cluster: where the time of a sequential put goes,
stage by stage, across the leader and the followers.

    .venv/bin/python bench/put_timeline.py --nodes 3 --puts 300 [--baseline DIR --rounds 3]

With ``--baseline DIR`` (a checkout without the stamps, e.g. a worktree of main) the same
sequential puts run alternately on it and on this checkout, ``--rounds`` times each, and
only the client's figures (p50, p99, puts/s) are printed for both: a same-run A/B.

Starts a ``DevCluster`` whose nodes stamp each stage of a write into files
(``aspen.node.timeline``, on only when ``ASPEN_PUT_TIMELINE`` names a directory), does
``--puts`` sequential puts from one client on the leader, then matches the stamps of every
log index across the processes (``CLOCK_MONOTONIC`` is shared on one machine) and prints,
for each stage, the median and p90 of the time since the previous stage, and how often a
stage found a write cycle still running in the driver's thread (``busy``: the step then
waited for that cycle, e.g. an LMDB commit). A stage a follower reaches is that of the
FIRST follower to reach it (the one that makes the quorum on 3 nodes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aspen
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port

#: (label, stage, where: "C" client, "L" leader, "F" first follower, since: the stage the
#: time is measured from) in the order a put passes them. The leader's own WAL sync runs
#: beside the followers' work (its APPENDs leave first), so it is timed from the send.
STAGES = [
    ("client send", "client_send", "C", ""),
    ("leader: proposal in Replicator", "propose", "L", "C:client_send"),
    ("leader: proposal stepped", "proposal_stepped", "L", "L:propose"),
    ("leader: APPEND written to peers", "append_sent", "L", "L:proposal_stepped"),
    ("  leader: WAL synced (beside)", "wal_synced", "L", "L:append_sent"),
    ("follower: APPEND decoded", "append_decoded", "F", "L:append_sent"),
    ("follower: APPEND stepped", "append_stepped", "F", "F:append_decoded"),
    ("follower: write cycle begins", "persist_begin", "F", "F:append_stepped"),
    ("follower: WAL synced", "wal_synced", "F", "F:persist_begin"),
    ("follower: ack sent", "ack_sent", "F", "F:wal_synced"),
    ("leader: ack decoded", "ack_decoded", "L", "F:ack_sent"),
    ("leader: ack stepped", "ack_stepped", "L", "L:ack_decoded"),
    ("leader: apply cycle begins", "apply_begin", "L", "L:ack_stepped"),
    ("leader: entry applied", "apply", "L", "L:apply_begin"),
    ("leader: answer resolved", "answered", "L", "L:apply"),
    ("client received", "client_recv", "C", "L:answered"),
    ("  leader: LMDB commit of the apply done", "lmdb_committed", "L", "L:answered"),
    ("  follower: entry applied", "apply", "F", "L:answered"),
]
#: Stages whose ``busy`` share is printed: did a write cycle run when it arrived?
_BUSY = ("propose", "append_decoded", "ack_decoded")


def _read_stamps(directory: Path) -> dict[int, list[tuple[str, int, float, int]]]:
    stamps: dict[int, list[tuple[str, int, float, int]]] = {}
    for path in directory.glob("*.tl"):
        rows = []
        for line in path.read_text().splitlines():
            stage, index, t, flag = line.split()
            rows.append((stage, int(index), float(t), int(flag)))
        stamps[int(path.stem)] = rows
    return stamps


def _first(rows, stage: str) -> dict[int, tuple[float, int]]:
    """index -> (first time, flag) of ``stage`` in one process's rows."""
    out: dict[int, tuple[float, int]] = {}
    for s, index, t, flag in rows:
        if s == stage and index not in out:
            out[index] = (t, flag)
    return out


def _leader_pid(cluster: DevCluster) -> tuple[int, str]:
    for i in range(1, cluster.nodes + 1):
        with aspen.connect(cluster.client_endpoint(i), token=cluster.token) as c:
            if c.call("cluster.status")["role"] == "leader":
                return cluster.procs[i - 1].pid, cluster.client_endpoint(i)
    raise SystemExit("no leader")


def measure(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="aspen-timeline-") as tmp:
        stamps_dir = Path(tmp) / "stamps"
        stamps_dir.mkdir()
        cluster = DevCluster(Path(tmp) / "c", args.nodes, free_base_port(args.nodes))
        cluster.env = {"ASPEN_PUT_TIMELINE": str(stamps_dir)}
        cluster.up()
        try:
            leader_pid, endpoint = _leader_pid(cluster)
            sends: list[tuple[float, float]] = []

            def one(k: int) -> None:
                with aspen.connect(endpoint, token=cluster.token, timeout=30) as c:
                    for i in range(k, args.warmup, args.clients):
                        c.kv.put(f"warm/{i:06d}", b"v" * 100)
                    for i in range(k, args.puts, args.clients):
                        t0 = time.monotonic()
                        c.kv.put(f"tl/{i:06d}", b"v" * 100)
                        sends.append((t0, time.monotonic()))

            threads = [threading.Thread(target=one, args=(k,)) for k in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(0.5)  # the last stamps (follower applies) land
        finally:
            cluster.down()
        stamps = _read_stamps(stamps_dir)
    return _table(args, stamps, leader_pid, sends)


def _table(args, stamps, leader_pid: int, sends: list[tuple[float, float]]) -> str:
    leader = stamps[leader_pid]
    followers = [rows for pid, rows in stamps.items() if pid != leader_pid]
    proposes = sorted((t, seq, flag) for s, seq, t, flag in leader if s == "propose_seq")
    seq_index = {flag: index for s, index, _, flag in leader if s == "proposal_stepped"}
    per: dict[int, dict[str, tuple[float, int]]] = collections.defaultdict(dict)
    if args.clients > 1:  # no client stages: every proposal of the run, by its index
        for t, seq, flag in proposes:
            if seq in seq_index:
                per[seq_index[seq]]["L:propose"] = (t, flag)
        sends = []
    k = 0
    for t0, t1 in sends:  # the one proposal inside [t0, t1] is this put's
        while k < len(proposes) and proposes[k][0] < t0:
            k += 1
        if k < len(proposes) and proposes[k][0] <= t1 and proposes[k][1] in seq_index:
            index = seq_index[proposes[k][1]]
            per[index]["C:client_send"] = (t0, 0)
            per[index]["C:client_recv"] = (t1, 0)
            per[index]["L:propose"] = (proposes[k][0], proposes[k][2])
    for where, rowsets in (("L", [leader]), ("F", followers)):
        for _, stage, w, _ in STAGES:
            if w != where:
                continue
            for rows in rowsets:
                for index, (t, flag) in _first(rows, stage).items():
                    if index in per:
                        key = f"{where}:{stage}"
                        if key not in per[index] or t < per[index][key][0]:
                            per[index][key] = (t, flag)
    lines = [
        f"{args.nodes} nodes, {args.clients} client(s), {len(per)} puts matched (of {args.puts}), "
        f"load average {os.getloadavg()[0]:.2f}",
        f"{'stage':44} {'median us':>10} {'p90 us':>8} {'busy':>6}   (time since the stage named)",
    ]
    for label, stage, where, since in STAGES[1:]:
        key = f"{where}:{stage}"
        if args.clients > 1 and "C:" in key + since:
            continue
        gaps = [v[key][0] - v[since][0] for v in per.values() if key in v and since in v]
        if len(gaps) < 2:
            lines.append(f"{label:44} {'-':>10}")
            continue
        busy = [v[key][1] for v in per.values() if key in v]
        share = f"{100 * sum(busy) / len(busy):.0f}%" if stage in _BUSY else ""
        q = statistics.quantiles([g * 1e6 for g in gaps], n=10)
        lines.append(
            f"{label:44} {statistics.median(gaps) * 1e6:10.0f} {q[8]:8.0f} {share:>6}"
            f"   since {since}"
        )
    total = [
        v["C:client_recv"][0] - v["C:client_send"][0] for v in per.values() if "C:client_recv" in v
    ]
    if total:
        q = statistics.quantiles([g * 1e6 for g in total], n=100)
        lines.append(
            f"{'put total (client)':44} {statistics.median(total) * 1e6:10.0f} "
            f"{q[89]:8.0f}   p99 {q[98]:.0f} us, {len(total) / sum(total):.0f} puts/s"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the table for this checkout."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--puts", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument(
        "--clients", type=int, default=1, help="concurrent clients (>1: no client stages)"
    )
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--client-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client_only:
        print(json.dumps(_client_only(args)))
        return
    if args.baseline is None:
        print(measure(args))
        return
    here = str(Path(__file__).resolve().parent.parent / "core" / "src")
    figures: dict[str, list[dict]] = {"baseline": [], "this checkout": []}
    for _ in range(args.rounds):
        for label, src in (
            ("baseline", str(args.baseline.resolve() / "core" / "src")),
            ("this checkout", here),
        ):
            cmd = [sys.executable, __file__, "--client-only", "--nodes", str(args.nodes)]
            cmd += ["--puts", str(args.puts)]
            env = {**os.environ, "PYTHONPATH": src}
            env.pop("ASPEN_PUT_TIMELINE", None)
            done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            figures[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for label, runs in figures.items():
        p50 = statistics.median(r["p50_us"] for r in runs)
        p99 = statistics.median(r["p99_us"] for r in runs)
        rate = statistics.median(r["puts_per_s"] for r in runs)
        print(
            f"{label:14} 1 client, {args.nodes} nodes: p50 {p50:.0f} us, p99 {p99:.0f} us, "
            f"{rate:.0f} puts/s (medians of {len(runs)} runs: "
            + ", ".join(f"{r['p50_us']:.0f}" for r in runs)
            + ")"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")


def _client_only(args: argparse.Namespace) -> dict:
    """Sequential puts on the leader of a fresh cluster: the client's latency figures."""
    with tempfile.TemporaryDirectory(prefix="aspen-timeline-") as tmp:
        cluster = DevCluster(Path(tmp) / "c", args.nodes, free_base_port(args.nodes))
        cluster.up()
        try:
            _, endpoint = _leader_pid(cluster)
            took = []
            with aspen.connect(endpoint, token=cluster.token, timeout=30) as c:
                for i in range(args.warmup):
                    c.kv.put(f"warm/{i:06d}", b"v" * 100)
                for i in range(args.puts):
                    t0 = time.monotonic()
                    c.kv.put(f"tl/{i:06d}", b"v" * 100)
                    took.append(time.monotonic() - t0)
        finally:
            cluster.down()
    q = statistics.quantiles([t * 1e6 for t in took], n=100)
    return {"p50_us": q[49], "p99_us": q[98], "puts_per_s": len(took) / sum(took)}


if __name__ == "__main__":
    main()
