"""Range page latency, Aspen vs etcd, same keys, same run (issue 18).

Loads ``--keys`` keys of ``--value-bytes`` bytes under ``k/`` into one Aspen node and one
etcd (both started here on free ports, stopped by the process ids started here), then times
one range page at the start, middle and end of the keyspace (limit 100, limit 1000,
keys-only limit 100, count-only) and a full page-by-page listing of ``k/`` (pages of
1000). A page costs O(page) when its latency is the same at the start and at the end.
The machine has 2 cores shared by both servers and this client: compare ratios, not
absolute figures.

    .venv/bin/python bench/range_pages.py [--keys 300000] [--repeat 20] [--skip-etcd]

etcd is reached through its HTTP/JSON gateway (one keep-alive connection), Aspen through
its own client with raw ``kv.range`` calls; etcd 3.4 always counts the whole range.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from compare import free_port, start_aspen

#: Puts per loading transaction (etcd is started with --max-txn-ops to match).
LOAD_TXN_OPS = 1000
#: Seconds etcd has to answer its first request.
ETCD_START_TIMEOUT = 30.0


def key_of(i: int) -> bytes:
    """The i-th key of the loaded keyspace."""
    return b"k/%07d" % i


def prefix_end(prefix: bytes) -> bytes:
    """The end of the prefix range (prefix with its last byte incremented)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) milliseconds of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), max(times)


class Etcd:
    """One etcd process on free ports in a temporary directory, driven over HTTP/JSON."""

    def __init__(self, tmp: Path) -> None:
        """Start etcd and wait until it answers."""
        client, peer = free_port(), free_port()
        self.log = open(tmp / "etcd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                shutil.which("etcd") or "/usr/bin/etcd",
                "--name=b",
                f"--data-dir={tmp / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=b=http://127.0.0.1:{peer}",
                f"--max-txn-ops={LOAD_TXN_OPS}",
                "--quota-backend-bytes=8589934592",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.conn = http.client.HTTPConnection("127.0.0.1", client, timeout=120)
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while True:
            try:
                self.post("/v3/kv/range", {"key": _b64(b"x")})
                return
            except (OSError, http.client.HTTPException):
                self.conn.close()
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("etcd did not start") from None
                time.sleep(0.1)

    def post(self, path: str, body: dict) -> dict:
        """POST a JSON body to the gateway; the decoded answer."""
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {resp.status} {data[:200]!r}")
        return json.loads(data)

    def load(self, keys: int, value: bytes) -> None:
        """Put ``keys`` keys in transactions of LOAD_TXN_OPS puts."""
        v = _b64(value)
        for lo in range(0, keys, LOAD_TXN_OPS):
            ops = [
                {"request_put": {"key": _b64(key_of(i)), "value": v}}
                for i in range(lo, min(keys, lo + LOAD_TXN_OPS))
            ]
            self.post("/v3/kv/txn", {"success": ops})

    def range(self, key: bytes, end: bytes, limit: int, **opts: bool) -> tuple[list, bool]:
        """One page: (kvs, more)."""
        body = {"key": _b64(key), "range_end": _b64(end), "limit": limit, **opts}
        answer = self.post("/v3/kv/range", body)
        return answer.get("kvs", []), bool(answer.get("more"))

    def stop(self) -> None:
        """Stop the etcd process started here."""
        self.conn.close()
        _terminate(self.proc)
        self.log.close()


class Aspen:
    """One Aspen node process, driven with raw ``kv.*`` calls of the client."""

    def __init__(self, tmp: Path) -> None:
        """Start the node and connect."""
        import aspen

        data_dir, port = tmp / "node", free_port()
        self.proc = start_aspen(data_dir, port)
        token = (data_dir / "root-token").read_text().strip()
        self.client = aspen.connect(f"127.0.0.1:{port}", token=token)

    def load(self, keys: int, value: bytes) -> None:
        """Put ``keys`` keys in transactions of LOAD_TXN_OPS puts."""
        for lo in range(0, keys, LOAD_TXN_OPS):
            ops = [
                {"put": {"key": key_of(i), "value": value}}
                for i in range(lo, min(keys, lo + LOAD_TXN_OPS))
            ]
            self.client.call("kv.txn", {"compare": [], "success": ops, "failure": []})

    def range(self, key: bytes, end: bytes, limit: int, **opts: bool) -> tuple[list, bool]:
        """One page: (kvs, more)."""
        answer = self.client.call("kv.range", {"key": key, "end": end, "limit": limit, **opts})
        return answer.get("kvs", []), bool(answer.get("more"))

    def stop(self) -> None:
        """Close the client and stop the node process started here."""
        self.client.close()
        _terminate(self.proc)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM a server process started here; SIGKILL it if it has not gone in 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def listing(store: Etcd | Aspen, page: int) -> int:
    """List every key of ``k/`` page by page (continuation by key); the number listed."""
    key, end, n = b"k/", prefix_end(b"k/"), 0
    while True:
        kvs, more = store.range(key, end, page)
        n += len(kvs)
        if not more or not kvs:
            return n
        last = kvs[-1]["key"]
        key = (base64.b64decode(last) if isinstance(last, str) else last) + b"\0"


def measure(name: str, store: Etcd | Aspen, keys: int, repeat: int) -> dict[str, object]:
    """Page latencies at the start, middle and end, and the full listing time."""
    end = prefix_end(b"k/")
    count = {"count_only": True}
    shapes: dict[str, tuple[int, dict[str, bool]]] = {
        "limit 100": (100, {}),
        "limit 1000": (1000, {}),
        "keys-only 100": (100, {"keys_only": True}),
        "count-only": (0, count),
    }
    rows: dict[str, object] = {}
    for where, at in (("start", 0), ("middle", keys // 2), ("end", keys - 150)):
        for shape, (limit, opts) in shapes.items():
            page = functools.partial(store.range, key_of(at), end, limit, **opts)
            med, worst = timed(page, repeat)
            rows[f"{shape} @{where}"] = (med, worst)
    t0 = time.perf_counter()
    listed = listing(store, 1000)
    rows["full listing (pages of 1000) s"] = time.perf_counter() - t0
    assert listed == keys, f"{name} listed {listed} keys of {keys}"
    return rows


def main() -> None:
    """Load both stores, measure, print a table with Aspen/etcd ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=300_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--skip-etcd", action="store_true")
    ap.add_argument("--label", default="", help="tag for the JSON line (e.g. before/after)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "range.jsonl")
    args = ap.parse_args()
    value = os.urandom(args.value_bytes // 2).hex().encode()[: args.value_bytes]
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="aspen-range-bench-") as tmp:
        for name, make in (("etcd", Etcd), ("aspen", Aspen)):
            if name == "etcd" and args.skip_etcd:
                continue
            (Path(tmp) / name).mkdir()
            store = make(Path(tmp) / name)
            try:
                t0 = time.perf_counter()
                store.load(args.keys, value)
                load_s = time.perf_counter() - t0
                print(f"{name}: loaded {args.keys} keys in {load_s:.1f} s", flush=True)
                results[name] = measure(name, store, args.keys, args.repeat)
            finally:
                store.stop()
    report(results, args)


def report(results: dict[str, dict[str, object]], args: argparse.Namespace) -> None:
    """Print the table and append one JSON line to ``args.out``."""
    names = list(results)
    print(f"\n{args.keys} keys of {args.value_bytes} B; median (max) ms of {args.repeat} calls")
    print(f"{'page':34}" + "".join(f"| {n:>18} " for n in names) + "| aspen/etcd")
    for row in results[names[0]]:
        cells, meds = "", []
        for n in names:
            v = results[n][row]
            if isinstance(v, tuple):
                cells += f"| {v[0]:8.2f} ({v[1]:7.2f}) "
                meds.append(v[0])
            else:
                cells += f"| {v:18.2f} "
                meds.append(v)
        ratio = f"{meds[-1] / meds[0]:8.2f}x" if len(meds) == 2 and meds[0] else ""
        print(f"{row:34}{cells}| {ratio}")
    print("(one Aspen node and one etcd 3.4 on this 2-core machine shared with the client)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps({"label": args.label, "keys": args.keys, "results": results}) + "\n")


if __name__ == "__main__":
    main()
