"""How late a watcher on a follower hears a put (issue 10, lazy commit notices): the time
from the put's answer (on the leader) to the follower's watch event, for lone puts (each
followed by a pause, so no later write carries its commit) and for back-to-back puts of
one client (the next put's APPEND carries it).

    ASPEN_SHARED_BENCH=/work/shared/bench .venv/bin/python bench/follower_watch_lag.py \\
        [--puts 200] [--pause 0.03] [--rounds 2] [--baseline DIR]

One local 3-node cluster per checkout (``--baseline DIR``: another checkout's
``core/src``, run in the same run, rounds alternating); the watcher is a client of a
follower, the writer of the leader. Prints the median and p90/p99 lag in ms per mode, one
JSON line per checkout. A follower learns a commit from the next APPEND, a commit notice
(at most ``aspen.limits.COMMIT_NOTICE_DELAY_SECONDS`` after the commit), or a heartbeat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_messages import Checkout

import aspen


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _lags(checkout: Checkout, puts: int, pause: float, tag: str) -> list[float]:
    """Put ``puts`` keys on the leader (``pause`` s after each); return each put's lag from
    its answer to the event on a follower's watch, in ms."""
    follower = next(i for i in checkout.names if i != checkout.leader)
    token = checkout.cluster.token
    heard: dict[int, float] = {}
    answered: dict[int, float] = {}
    ready = threading.Event()
    prefix = f"lag/{tag}/"

    def watch() -> None:
        with aspen.connect(checkout.endpoint(follower), token=token, timeout=60) as c:
            stream = c.watch(prefix, prefix=True)
            ready.set()
            for resp in stream:
                now = time.monotonic()
                for ev in resp.events:
                    heard[ev.kv.mod_revision] = now
                if len(heard) >= puts:
                    break
            stream.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(30)
    with aspen.connect(checkout.endpoint(), token=token) as c:
        for i in range(puts):
            revision = c.kv.put(f"{prefix}{i}", b"x" * 100).revision
            answered[revision] = time.monotonic()
            if pause:
                time.sleep(pause)
    watcher.join(60)
    return [(heard[r] - t) * 1e3 for r, t in answered.items() if r in heard]


def main() -> None:
    """Measure this checkout (and ``--baseline``, alternating) and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--puts", type=int, default=200)
    ap.add_argument("--pause", type=float, default=0.03, help="seconds after each lone put")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="aspen-watchlag-") as tmp_name:
        tmp = Path(tmp_name)
        checkouts: list[Checkout] = []
        lags: dict[str, dict[str, list[float]]] = {}
        try:
            if args.baseline is not None:
                src = args.baseline.resolve() / "core" / "src"
                checkouts.append(Checkout(f"baseline {args.baseline}", tmp, src))
            checkouts.append(Checkout("this checkout", tmp, None))
            for n in range(args.rounds):
                order = checkouts if n % 2 == 0 else checkouts[::-1]
                for checkout in order:
                    mine = lags.setdefault(checkout.label, {"lone": [], "back_to_back": []})
                    mine["lone"] += _lags(checkout, args.puts, args.pause, f"lone{n}")
                    mine["back_to_back"] += _lags(checkout, args.puts, 0.0, f"b2b{n}")
            for checkout in checkouts:
                out: dict = {"label": checkout.label}
                for mode, values in lags[checkout.label].items():
                    out[mode] = {
                        "n": len(values),
                        "p50_ms": round(statistics.median(values), 2),
                        "p90_ms": round(_quantile(values, 0.9), 2),
                        "p99_ms": round(_quantile(values, 0.99), 2),
                    }
                print(json.dumps(out))
        finally:
            for checkout in checkouts:
                checkout.cluster.down()


if __name__ == "__main__":
    main()
