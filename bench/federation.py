"""Time to discover a cluster by key alone in a private Mainline DHT on loopback.

Starts N libtorrent DHT sessions (aspen_federation.dht.DhtDiscovery, private mode), each
joined to a few others by ``add_dht_node``; one publishes a signed announcement (BEP-44
mutable item under its cluster key), then every other node looks it up by key and
verifies it. Prints the median and p99 lookup time and the publish time.

    .venv/bin/python bench/federation.py [--nodes 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import anyio

from aspen.testing import wait_for
from aspen_federation.announce import Announcement
from aspen_federation.dht import DhtDiscovery
from aspen_federation.identity import ClusterKey


async def _run(nodes: int, rounds: int) -> None:
    dht = [DhtDiscovery("127.0.0.1:0", private=True) for _ in range(nodes)]
    rng = random.Random(1)
    try:
        for i, node in enumerate(dht):
            for j in rng.sample([k for k in range(nodes) if k != i], 3):
                node.add_contact("127.0.0.1", dht[j].listen_port())
        wait_for(lambda: all(d.node_count() >= 3 for d in dht), timeout=60)
        lookups: list[float] = []
        puts: list[float] = []
        for _ in range(rounds):
            key = ClusterKey.generate()
            value = Announcement.create(key, "bench", ["127.0.0.1:2379"]).encode(check=True)
            start = time.perf_counter()
            await dht[0].publish(key, value)
            puts.append(time.perf_counter() - start)
            for node in dht[1:]:
                start = time.perf_counter()
                found = await node.lookup(key.public)
                assert found is not None
                Announcement.decode(found, expected_key=key.public)
                lookups.append(time.perf_counter() - start)
        lookups.sort()
        p99 = lookups[min(len(lookups) - 1, int(len(lookups) * 0.99))]
        print(f"nodes={nodes} rounds={rounds} lookups={len(lookups)}")
        print(f"publish   median {statistics.median(puts) * 1000:.0f} ms")
        slow = sum(1 for t in lookups if t > 1.0)
        print(
            f"discover  median {statistics.median(lookups) * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms"
            f"  max {lookups[-1] * 1000:.0f} ms  over 1 s: {slow}"
        )
    finally:
        for node in dht:
            node.close()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(_run, args.nodes, args.rounds)


if __name__ == "__main__":
    main()
