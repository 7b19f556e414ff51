"""The etcd side of bench/scale.py: ``/usr/bin/etcd`` processes on loopback, driven through
the v3 HTTP/JSON gateway (as ../shared/bench/loadgen.py does) and ``etcdctl``."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from aspen.testing import free_port, wait_for
from scale_support.shared import KEY_PREFIX, VALUE, key, peak_rss, rss, tree_bytes

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
#: Puts per load txn (etcd's --max-txn-ops is raised to this).
LOAD_TXN_OPS = 1000
#: Load txns in flight at once.
LOAD_CONCURRENCY = 4
#: Backend quota: far above what the largest run stores.
QUOTA_BYTES = 60 * 1024**3


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EtcdTarget:
    """``nodes`` etcd 3.4 processes forming one cluster."""

    name = "etcd"

    def __init__(self, work: Path, nodes: int) -> None:
        self.nodes = nodes
        self.dir = work / f"etcd{nodes}"
        self.ports = [(free_port(), free_port()) for _ in range(nodes)]
        self.procs: list[subprocess.Popen] = []
        self._local = threading.local()

    def _cmd(self, i: int, state: str) -> list[str]:
        client, peer = self.ports[i]
        members = self.ports[: max(self.nodes, i + 1)]
        initial = ",".join(f"e{j}=http://127.0.0.1:{p}" for j, (_, p) in enumerate(members))
        return [
            ETCD,
            "--name",
            f"e{i}",
            "--data-dir",
            str(self.dir / f"e{i}"),
            "--listen-client-urls",
            f"http://127.0.0.1:{client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            state,
            "--quota-backend-bytes",
            str(QUOTA_BYTES),
            "--max-txn-ops",
            str(LOAD_TXN_OPS),
            "--max-request-bytes",
            str(8 * 1024 * 1024),
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]

    def _spawn(self, i: int, state: str) -> subprocess.Popen:
        log = open(self.dir / f"e{i}.log", "ab")  # noqa: SIM115 - the child's
        return subprocess.Popen(self._cmd(i, state), stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        """Start a fresh cluster and wait until it answers."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.procs = [self._spawn(i, "new") for i in range(self.nodes)]
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        def healthy() -> bool:
            self.post("/kv/range", {"key": _b64(b"health")})
            return True

        wait_for(healthy, timeout=120, interval=0.2, ignore=(OSError, RuntimeError))

    def stop(self) -> None:
        """Stop every etcd this target started."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def pids(self) -> list[int]:
        """Process ids of the etcd members."""
        return [p.pid for p in self.procs]

    # ------------------------------------------------------------------ HTTP
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self._leader_port(), timeout=600)
            self._local.conn = conn
        return conn

    def _leader_port(self) -> int:
        for client, _ in self.ports:
            try:
                c = http.client.HTTPConnection("127.0.0.1", client, timeout=5)
                c.request("POST", "/v3/maintenance/status", b"{}")
                st = json.loads(c.getresponse().read())
                c.close()
                if st.get("leader") == st["header"]["member_id"]:
                    return client
            except OSError:
                continue
        return self.ports[0][0]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a gateway request on this thread's keep-alive connection."""
        conn = self._conn()
        try:
            conn.request("POST", "/v3" + path, json.dumps(body).encode())
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._local.conn = None
            conn.close()
            raise
        if resp.status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {resp.status} {data[:200]!r}")
        return json.loads(data)

    # ------------------------------------------------------------------ load
    def load(self, first: int, count: int, lease_of: Any = None) -> None:
        """Put keys ``first..first+count``: txns of LOAD_TXN_OPS puts, LOAD_CONCURRENCY at once."""
        starts = iter(range(first, first + count, LOAD_TXN_OPS))
        lock = threading.Lock()
        value = _b64(VALUE)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while True:
                    with lock:
                        lo = next(starts, None)
                    if lo is None:
                        return
                    hi = min(lo + LOAD_TXN_OPS, first + count)
                    ops = []
                    for i in range(lo, hi):
                        put = {"key": _b64(key(i)), "value": value}
                        if lease_of:
                            put["lease"] = lease_of(i)
                        ops.append({"requestPut": put})
                    self.post("/kv/txn", {"success": ops})
            except BaseException as exc:  # reported by the caller
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(LOAD_CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ operations
    def get(self, k: bytes) -> None:
        """Linearizable get of one key."""
        assert self.post("/kv/range", {"key": _b64(k)}).get("kvs")

    def put(self, k: bytes) -> None:
        """Overwrite one key."""
        self.post("/kv/put", {"key": _b64(k), "value": _b64(VALUE)})

    def range_page(self, start: bytes, limit: int) -> None:
        """One page of ``limit`` keys from ``start`` to the end of the prefix."""
        end = KEY_PREFIX[:-1] + b"0"
        self.post("/kv/range", {"key": _b64(start), "range_end": _b64(end), "limit": limit})

    def count(self) -> int:
        """Count every key of the prefix."""
        end = KEY_PREFIX[:-1] + b"0"
        body = {"key": _b64(KEY_PREFIX), "range_end": _b64(end), "count_only": True}
        return int(self.post("/kv/range", body).get("count", 0))

    def revision(self) -> int:
        """The store revision."""
        return int(self.post("/kv/range", {"key": _b64(b"x")})["header"]["revision"])

    def watch_catchup(self, start_revision: int, events: int) -> float:
        """Seconds for ``etcdctl watch`` to print ``events`` events from ``start_revision``."""
        cmd = [ETCDCTL, "--endpoints", f"http://127.0.0.1:{self._leader_port()}", "watch"]
        cmd += ["--prefix", KEY_PREFIX.decode(), "--rev", str(start_revision)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env={"ETCDCTL_API": "3"})
        seen = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if line == b"PUT\n":
                seen += 1
                if seen >= events:
                    break
        took = time.perf_counter() - t0
        proc.kill()
        proc.wait()
        return took

    def snapshot(self) -> float:
        """Seconds for ``etcdctl snapshot save`` (the state to a file)."""
        out = self.dir / "snap.db"
        cmd = [ETCDCTL, "--endpoints", f"http://127.0.0.1:{self._leader_port()}"]
        cmd += ["snapshot", "save", str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={"ETCDCTL_API": "3"})
        took = time.perf_counter() - t0
        out.unlink()
        return took

    def join(self) -> dict[str, float]:
        """Add a learner member and start it; seconds until it applied what the leader had,
        its peak RSS and the leader's."""
        leader = self._leader_port()
        target = self._status(leader)["raftIndex"]
        client, peer = free_port(), free_port()
        name = f"e{self.nodes}"
        add = [ETCDCTL, "--endpoints", f"http://127.0.0.1:{leader}", "member", "add", name]
        add += [f"--peer-urls=http://127.0.0.1:{peer}", "--learner"]
        subprocess.run(add, check=True, capture_output=True, env={"ETCDCTL_API": "3"})
        self.ports.append((client, peer))
        t0 = time.perf_counter()
        self.procs.append(self._spawn(self.nodes, "existing"))
        joiner = self.procs[-1].pid
        peak = 0

        def caught_up() -> bool:
            nonlocal peak
            peak = max(peak, rss(joiner))
            return self._status(client).get("raftAppliedIndex", 0) >= target

        wait_for(caught_up, timeout=3600, interval=0.2, ignore=(OSError, KeyError, ValueError))
        return {
            "join_s": time.perf_counter() - t0,
            "join_peak_rss": max(peak, peak_rss(joiner)),
            "leader_peak_rss": peak_rss(self.procs[0].pid),
        }

    def _status(self, port: int) -> dict[str, Any]:
        """``/maintenance/status`` of the member at client ``port``."""
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("POST", "/v3/maintenance/status", b"{}")
            st = json.loads(c.getresponse().read())
        finally:
            c.close()
        return {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in st.items()}

    def restart(self) -> float:
        """Seconds for member 0 to answer again after ``kill -9``."""
        self.procs[0].kill()
        self.procs[0].wait()
        self._local.conn = None
        t0 = time.perf_counter()
        self.procs[0] = self._spawn(0, "existing")
        port = self.ports[0][0]

        def answers() -> bool:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/v3/kv/range", json.dumps({"key": _b64(b"x")}).encode())
            ok = c.getresponse().status == 200
            c.close()
            return ok

        wait_for(answers, timeout=600, interval=0.05, ignore=(OSError, http.client.HTTPException))
        return time.perf_counter() - t0

    def disk_bytes(self) -> int:
        """Bytes member 0 keeps on disk (db file + WAL + snapshots)."""
        return tree_bytes(self.dir / "e0")

    def disk_breakdown(self) -> dict[str, int]:
        """Bytes of member 0's bbolt file and of its WAL (preallocated in 64 MB files)."""
        member = self.dir / "e0" / "member"
        return {"db": tree_bytes(member / "snap"), "wal": tree_bytes(member / "wal")}
