"""Leader heartbeats during a long apply: a 3-node cluster, ``--keys`` keys under ``g/``
(txns of 1000 puts), then ONE ``kv.delete`` of the whole prefix (a single command the
leader applies in one write cycle), ``--rounds`` times. Prints, per round, the delete's
time, each node's Raft term before and after, and the leader before and after: a changed
term means a follower campaigned because no heartbeat came while the leader applied.

    .venv/bin/python bench/hardening/gaps_heartbeats.py [--keys 100000] [--rounds 3]
        [--squeeze-leader]

Normally the followers apply the same delete at the same time (the commit reaches them with
the leader's first messages), so none waits long for a heartbeat. ``--squeeze-leader`` makes
the leader's apply the slow one, as on a busier host: during the delete the leader is pinned
to CPU 0 with two busy loops, the followers to CPU 1 (needs 2 CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lease_expiry import terms  # bench/hardening/lease_expiry.py
from txn import load  # bench/hardening/txn.py

from aspen.limits import MAX_DELETE_RANGE_KEYS
from aspen.testing import LocalCluster, free_base_port


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process ``pid`` to ``cpus``."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task), cpus)


@contextlib.contextmanager
def squeezed(cluster: LocalCluster, leader: int, on: bool) -> Iterator[None]:
    """With ``on``: the leader on CPU 0 beside two busy loops, the followers on CPU 1."""
    if not on:
        yield
        return
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2)]
    try:
        for proc in busy:
            os.sched_setaffinity(proc.pid, {0})
        for i, proc in enumerate(cluster.procs, start=1):
            pin(proc.pid, {0} if i == leader else {1})
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        for proc in cluster.procs:
            pin(proc.pid, os.sched_getaffinity(0))


def main() -> None:
    """Run the reproduction and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=MAX_DELETE_RANGE_KEYS)
    ap.add_argument("--value-bytes", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--squeeze-leader", action="store_true", help="see the module doc")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp), 3, free_base_port(3), env={"ASPEN_LOAD_PLUGINS": ""})
        cluster.up()
        try:
            changed = 0
            for n in range(1, args.rounds + 1):
                leader = cluster.leader_index()
                with cluster.client(leader, timeout=300) as c:
                    load(c, args.keys, args.value_bytes)
                    before = terms(cluster)
                    with squeezed(cluster, leader, args.squeeze_leader):
                        t0 = time.monotonic()
                        deleted = c.kv.delete("g/", prefix=True).deleted
                        took = time.monotonic() - t0
                        time.sleep(1)  # elections, if any, while squeezed
                after = terms(cluster)
                with cluster.client(leader, timeout=30) as c:
                    bridged = c.call("cluster.status")["raft"].get("bridged_heartbeats", "n/a")
                changed += before != after
                print(
                    f"round {n}: deleted {deleted} keys in {took:.2f} s; terms {before} -> "
                    f"{after} ({'kept' if before == after else 'ELECTION'}); leader "
                    f"{leader} -> {cluster.leader_index()}; leader's heartbeats sent during write "
                    f"cycles so far: {bridged}",
                    flush=True,
                )
            print(f"rounds with an election: {changed}/{args.rounds}")
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
