"""The Aspen side of bench/scale.py: a local cluster of real node processes (DevCluster)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import lmdb

import aspen
from aspen.client.txn import Op
from aspen.errors import InvalidArgumentError
from aspen.node.devcluster import JOIN_TOKEN_FILE, DevCluster, node_command
from aspen.node.node import DB_DIR
from aspen.storage.env import DB_NAMES
from aspen.testing import free_base_port, free_port, wait_for
from scale_support.shared import KEY_PREFIX, VALUE, key, peak_rss, rss, tree_bytes

#: Puts per load txn (MAX_TXN_OPS).
LOAD_TXN_OPS = 1000
#: Load txns in flight at once.
LOAD_CONCURRENCY = 4


class AspenTarget:
    """One local Aspen cluster of ``nodes`` real processes."""

    name = "aspen"

    def __init__(self, work: Path, nodes: int) -> None:
        self.nodes = nodes
        # core only, as etcd: plugins would add their own keys and leases (the hooks
        # runner's election lease would make the 100,000th grant exceed MAX_LEASES)
        self.cluster = DevCluster(
            work / f"aspen{nodes}",
            nodes,
            free_base_port(nodes),
            env={"ASPEN_LOAD_PLUGINS": ""},
        )
        self.client: Any = None
        self.joined: subprocess.Popen | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start a fresh cluster and connect a client to it."""
        shutil.rmtree(self.cluster.data_dir, ignore_errors=True)
        self.cluster.up()
        self._connect()

    def _connect(self) -> None:
        eps = ",".join(self.cluster.client_endpoint(i) for i in range(1, self.nodes + 1))
        self.client = aspen.connect(eps, token=self.cluster.token, timeout=120)
        self.client.__enter__()

    def stop(self) -> None:
        """Stop every process this target started."""
        if self.client is not None:
            self.client.close()
        if self.joined is not None and self.joined.poll() is None:
            self.joined.kill()
            self.joined.wait()
        self.cluster.down()

    def pids(self) -> list[int]:
        """Process ids of the cluster's nodes."""
        return [p.pid for p in self.cluster.procs]

    # ------------------------------------------------------------------ load
    def load(self, first: int, count: int, lease_of: Any = None) -> None:
        """Put keys ``first..first+count``: txns of LOAD_TXN_OPS puts, LOAD_CONCURRENCY at once."""
        eps = ",".join(self.cluster.client_endpoint(i) for i in range(1, self.nodes + 1))

        async def run() -> None:
            async with aspen.aconnect(eps, token=self.cluster.token, timeout=120) as c:
                starts = iter(range(first, first + count, LOAD_TXN_OPS))

                async def worker() -> None:
                    for lo in starts:
                        hi = min(lo + LOAD_TXN_OPS, first + count)
                        ops = [
                            Op.put(key(i), VALUE, lease=lease_of(i) if lease_of else 0)
                            for i in range(lo, hi)
                        ]
                        await c.kv.txn(success=ops)

                async with anyio.create_task_group() as tg:
                    for _ in range(LOAD_CONCURRENCY):
                        tg.start_soon(worker)

        anyio.run(run)

    def grant_leases(self, count: int, ttl: int) -> list[int]:
        """Grant ``count`` leases of ``ttl`` seconds; return their ids."""
        eps = self.cluster.client_endpoint(1)
        ids: list[int] = []

        async def run() -> None:
            async with aspen.aconnect(eps, token=self.cluster.token, timeout=60) as c:
                todo = iter(range(1, count + 1))

                async def worker() -> None:
                    for lease_id in todo:  # chosen ids: a grant the client retried is no error
                        with contextlib.suppress(InvalidArgumentError):
                            await c.lease.grant(ttl, id=lease_id)
                        ids.append(lease_id)

                async with anyio.create_task_group() as tg:
                    for _ in range(16):
                        tg.start_soon(worker)

        anyio.run(run)
        return ids

    def keepalive(self, lease_id: int) -> None:
        """Renew one lease."""
        self.client.lease.keepalive(lease_id)

    # ------------------------------------------------------------------ operations
    def get(self, k: bytes) -> None:
        """Linearizable get of one key."""
        assert self.client.kv.get(k) is not None

    def put(self, k: bytes) -> None:
        """Overwrite one key."""
        self.client.kv.put(k, VALUE)

    def range_page(self, start: bytes, limit: int) -> None:
        """One page of ``limit`` keys from ``start`` to the end of the prefix."""
        page = self.client.kv.range(start, end=KEY_PREFIX[:-1] + b"0", limit=limit)
        assert len(page.kvs) == limit or not page.more

    def count(self) -> int:
        """Count every key of the prefix."""
        return self.client.kv.range(KEY_PREFIX, count_only=True).count

    def revision(self) -> int:
        """The store revision."""
        return self.client.kv.range(KEY_PREFIX + b"~", count_only=True).revision

    def watch_catchup(self, start_revision: int, events: int) -> float:
        """Seconds to receive ``events`` events watching the prefix from ``start_revision``."""
        seen = 0
        t0 = time.perf_counter()
        with self.client.watch(KEY_PREFIX, prefix=True, start_revision=start_revision) as w:
            for resp in w:
                seen += len(resp.events)
                if seen >= events:
                    break
        return time.perf_counter() - t0

    def snapshot(self) -> float:
        """Seconds for the leader to create a snapshot (compact its log to applied)."""
        t0 = time.perf_counter()
        self.client.call("cluster.snapshot")
        return time.perf_counter() - t0

    def join(self) -> dict[str, float]:
        """Start a new node that joins as a learner; seconds until it applied what the
        leader had, its peak RSS and the leader's."""
        target = self.client.call("cluster.status")["applied_index"]
        data = self.cluster.data_dir / "joiner"
        jt = (self.cluster.node_dir(1) / JOIN_TOKEN_FILE).read_text().strip()
        port, peer = free_port(), free_port()
        log = open(self.cluster.data_dir / "joiner.log", "wb")  # noqa: SIM115 - the child's
        t0 = time.perf_counter()
        self.joined = subprocess.Popen(
            node_command(
                data,
                f"127.0.0.1:{port}",
                peer_listen=f"127.0.0.1:{peer}",
                join=f"{jt}@{self.cluster.peer_endpoint(1)}",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        token = self.cluster.token
        peak = 0

        def caught_up() -> bool:
            nonlocal peak
            peak = max(peak, rss(self.joined.pid))
            with aspen.connect(f"127.0.0.1:{port}", token=token, timeout=5) as c:
                return c.call("cluster.status")["applied_index"] >= target

        wait_for(caught_up, timeout=3600, interval=0.2, ignore=(aspen.AspenError, OSError))
        took = time.perf_counter() - t0
        return {
            "join_s": took,
            "join_peak_rss": max(peak, peak_rss(self.joined.pid)),
            "leader_peak_rss": peak_rss(self.cluster.procs[0].pid),
        }

    def restart(self) -> float:
        """Seconds for node 1 to serve again after ``kill -9``."""
        self.client.close()
        self.cluster.kill(1)
        t0 = time.perf_counter()
        self.cluster.restart(1)
        took = time.perf_counter() - t0
        self._connect()
        wait_for(lambda: self.count() >= 0, timeout=120, ignore=(aspen.AspenError,))
        return took

    def disk_bytes(self) -> int:
        """Bytes node 1 keeps on disk (its data directory)."""
        return tree_bytes(self.cluster.node_dir(1))

    def disk_breakdown(self) -> dict[str, int]:
        """Bytes of LMDB pages per named database of node 1 (read while it runs)."""
        env = lmdb.open(
            str(self.cluster.node_dir(1) / DB_DIR),
            readonly=True,
            lock=False,
            max_dbs=32,
            subdir=True,
        )
        out = {}
        try:
            psize = env.stat()["psize"]
            with env.begin() as txn:
                for name in DB_NAMES:
                    st = txn.stat(env.open_db(name.encode(), txn=txn, create=False))
                    pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                    out[name] = pages * psize
                info = env.info()
                out["file_in_use"] = (info["last_pgno"] + 1) * psize
        finally:
            env.close()
        return out
