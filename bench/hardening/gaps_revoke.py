"""``lease.revoke`` of one lease with very many keys: a 3-node cluster, one lease with
``--keys`` keys attached (txns of 1000 puts), then one revoke while a writer puts small
values on the leader. Prints the revoke's time and the writer's put latency (p50/p99/max)
during it, and the puts' latency before it as a baseline.

    .venv/bin/python bench/hardening/gaps_revoke.py [--keys 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from txn import Writer, percentile  # bench/hardening/txn.py

from aspen.client.txn import Op
from aspen.limits import MAX_TXN_OPS
from aspen.testing import LocalCluster, free_base_port, wait_for


def main() -> None:
    """Run the reproduction once and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-bytes", type=int, default=64)
    args = ap.parse_args()
    value = b"v" * args.value_bytes
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp), 3, free_base_port(3), env={"ASPEN_LOAD_PLUGINS": ""})
        cluster.up()
        try:
            leader = cluster.leader_index()
            with cluster.client(leader, timeout=300) as c:
                lease = c.lease.grant(3600).id
                for start in range(0, args.keys, MAX_TXN_OPS):
                    stop = min(args.keys, start + MAX_TXN_OPS)
                    c.kv.txn(
                        success=[
                            Op.put(f"r/{i:08d}", value, lease=lease) for i in range(start, stop)
                        ]
                    )
                writer = Writer(cluster.client_endpoint(leader), cluster.token)
                writer.start()
                wait_for(lambda: len(writer.puts) >= 200, timeout=60)
                t0 = time.monotonic()
                c.lease.revoke(lease)
                t1 = time.monotonic()
                wait_for(lambda: len(writer.between(t1, t1 + 1e9)) >= 50, timeout=60)
                writer.stop.set()
                writer.join(60)
                assert not c.kv.range("r/", limit=1).kvs
            base = [d for s, d, _ in writer.puts if s + d < t0]
            during = [d for d, _ in writer.between(t0, t1)]
            errors = [e for d, e in writer.between(t0, t1) if e]
            ms = 1000.0
            print(f"revoke of {args.keys} keys took {t1 - t0:.2f} s")
            print(
                f"puts before: n={len(base)} p50={percentile(base, 0.5) * ms:.1f} ms "
                f"p99={percentile(base, 0.99) * ms:.1f} ms"
            )
            print(
                f"puts during: n={len(during)} p50={percentile(during, 0.5) * ms:.1f} ms "
                f"p99={percentile(during, 0.99) * ms:.1f} ms max={max(during) * ms:.1f} ms "
                f"errors={len(errors)}"
            )
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
