"""Leader failover time: kill -9 the leader of a local 3-node cluster under writes and
measure the time to the first write acknowledged after the kill, with default timeouts.

    .venv/bin/python bench/failover.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import aspen
from aspen.errors import AspenError
from aspen.node.devcluster import DevCluster


def free_base() -> int:
    """A base port with room for client and peer ports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1] // 10 * 10


def leader_of(cluster: DevCluster) -> int:
    """1-based index of the leader."""
    while True:
        for i in range(1, cluster.nodes + 1):
            if cluster.procs[i - 1].poll() is not None:
                continue
            try:
                with aspen.connect(cluster.client_endpoint(i), token=cluster.token, timeout=1) as c:
                    if c.call("cluster.status")["role"] == "leader":
                        return i
            except (AspenError, OSError):
                pass
        time.sleep(0.05)


def one_round(cluster: DevCluster) -> float:
    """Kill the leader, return seconds until a write SENT after the kill is acknowledged
    (one in flight at the kill may be answered by the dying leader), restart it."""
    acked: list[tuple[float, float]] = []  # (sent, acknowledged)
    stop = threading.Event()

    def writer() -> None:
        endpoints = ",".join(cluster.client_endpoint(i) for i in range(1, cluster.nodes + 1))
        with aspen.connect(endpoints, token=cluster.token, timeout=10) as c:
            n = 0
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    c.kv.put("failover", str(n))
                    acked.append((sent, time.monotonic()))
                except AspenError:
                    pass
                n += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    while not acked:
        time.sleep(0.01)
    leader = leader_of(cluster)
    cluster.procs[leader - 1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    cluster.procs[leader - 1].wait(10)
    while not any(sent > killed for sent, _ in acked):
        time.sleep(0.005)
    elapsed = min(a for sent, a in acked if sent > killed) - killed
    stop.set()
    t.join(20)
    cluster.restart(leader)
    return elapsed


def main() -> None:
    """Run the rounds and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aspen-failover-") as tmp:
        cluster = DevCluster(Path(tmp) / "c", 3, free_base())
        try:
            cluster.up()
            times = [one_round(cluster) for _ in range(args.rounds)]
        finally:
            cluster.down()
    print(
        "failover (kill -9 leader -> first acknowledged write), seconds:",
        ", ".join(f"{t:.2f}" for t in times),
    )
    print(
        f"median {statistics.median(times):.2f} s, max {max(times):.2f} s "
        "(2 cores shared by 3 nodes and the writer)"
    )


if __name__ == "__main__":
    main()
