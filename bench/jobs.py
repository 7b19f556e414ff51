"""aspen-jobs vs RQ on a real Redis: no-op job throughput and submit→start latency, same
machine, same run.

* **throughput**: N no-op jobs are submitted while no worker runs, then W worker
  processes start; jobs/s = N / (last finish - first start), from the systems' own
  per-job timestamps (Aspen: the attempts' ``started``/``finished``; RQ: ``started_at``/
  ``ended_at``), so worker start-up is not counted. Submission is timed too (16 concurrent
  submitters for Aspen over one asyncio client; RQ enqueues from one connection, pipelined
  by redis-py per call).
* **latency**: with W idle workers waiting, one job every ``--pace`` seconds; submit→start
  = the job's start time - its submit time (Aspen: ``attempts[0].started - created``, both
  the leader's clock; RQ: ``started_at - enqueued_at``), p50/p99.

Aspen: a 3-node local cluster (fsync per commit, the default), ``aspen jobs worker
--queues bench`` processes running the ``noop`` type. RQ: ``redis-server`` (Debian) on a
free port, twice: default persistence (no fsync per write) and ``appendfsync always``
(durable per write, as Aspen), ``rq worker --worker-class rq.worker.SimpleWorker`` (no
fork per job) processes. 2 shared cores: compare the ratios of one run.

    .venv/bin/python bench/jobs.py [--jobs 300] [--workers 3] [--latency-jobs 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PY = sys.executable


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


# --- Aspen -----------------------------------------------------------------------------
def aspen_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import aspen
    from aspen.testing import local_cluster, wait_for

    with local_cluster(tmp / "aspen", 3, plugins=["jobs"]) as cluster:
        env = {**os.environ, "ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token}

        def workers(queue: str) -> list[subprocess.Popen[bytes]]:
            return [
                subprocess.Popen(
                    [PY, "-m", "aspen", "jobs", "worker", "--queues", queue],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.workers)
            ]

        async def submit_all(n: int, queue: str) -> float:
            async with aspen.aconnect(cluster.endpoints, token=cluster.token) as c:
                left = list(range(n))
                t0 = time.monotonic()

                async def submitter() -> None:
                    while left:
                        left.pop()
                        await c.call("jobs.submit", {"queue": queue, "type": "noop"})

                await asyncio.gather(*(submitter() for _ in range(16)))
                return n / (time.monotonic() - t0)

        submit_rate = asyncio.run(submit_all(args.jobs, "bench"))
        procs = workers("bench")
        try:
            with cluster.client(timeout=30) as c:

                def done() -> bool:
                    got = c.call("jobs.stats", {"queue": "bench"})["queues"]["bench"]
                    return got["succeeded"] == args.jobs

                wait_for(done, timeout=600, interval=0.5)
                jobs = c.call("jobs.list", {"queue": "bench", "limit": 1000})["jobs"]
                records = [c.call("jobs.get", {"id": j["id"]}) for j in jobs]
        finally:
            stop_all(procs)
        starts = [r["attempts"][-1]["started"] for r in records]
        ends = [r["attempts"][-1]["finished"] for r in records]
        throughput = len(records) / (max(ends) - min(starts))
        procs = workers("lat")
        try:
            time.sleep(3)  # the workers are up and waiting
            with cluster.client(timeout=30) as c:
                ids = []
                for _ in range(args.latency_jobs):
                    ids.append(c.call("jobs.submit", {"queue": "lat", "type": "noop"})["id"])
                    time.sleep(args.pace)
                wait_for(
                    lambda: (
                        c.call("jobs.stats", {"queue": "lat"})["queues"]["lat"]["succeeded"]
                        == args.latency_jobs
                    ),
                    timeout=300,
                    interval=0.5,
                )
                lat = []
                for job_id in ids:
                    r = c.call("jobs.get", {"id": job_id})
                    lat.append(r["attempts"][0]["started"] - r["created"])
        finally:
            stop_all(procs)
    return {"submit_per_s": submit_rate, "jobs_per_s": throughput, "latency": lat}


# --- RQ --------------------------------------------------------------------------------
def rq_run(args: argparse.Namespace, tmp: Path, fsync: str) -> dict[str, Any]:
    from redis import Redis
    from rq import Queue

    port = free_port()
    data = tmp / f"redis-{fsync}"
    data.mkdir()
    extra = ["--appendonly", "yes", "--appendfsync", "always"] if fsync == "always" else []
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--dir", str(data), "--save", "", *extra],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    try:
        redis = Redis.from_url(url)
        for _ in range(100):
            try:
                redis.ping()
                break
            except Exception:
                time.sleep(0.05)
        env = {**os.environ, "PYTHONPATH": str(BENCH)}

        def workers(queue: str) -> list[subprocess.Popen[bytes]]:
            rq = shutil.which("rq", path=str(Path(PY).parent)) or "rq"
            return [
                subprocess.Popen(
                    [rq, "worker", "-u", url, "--worker-class", "rq.worker.SimpleWorker", queue],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.workers)
            ]

        sys.path.insert(0, str(BENCH))
        from jobs_support.noop import noop

        queue = Queue("bench", connection=redis)
        t0 = time.monotonic()
        jobs = [queue.enqueue(noop) for _ in range(args.jobs)]
        submit_rate = args.jobs / (time.monotonic() - t0)
        procs = workers("bench")
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if queue.finished_job_registry.count == args.jobs:
                    break
                time.sleep(0.2)
            for job in jobs:
                job.refresh()
        finally:
            stop_all(procs)
        starts = [j.started_at.replace(tzinfo=UTC).timestamp() for j in jobs]
        ends = [j.ended_at.replace(tzinfo=UTC).timestamp() for j in jobs]
        throughput = len(jobs) / (max(ends) - min(starts))
        lat_queue = Queue("lat", connection=redis)
        procs = workers("lat")
        try:
            time.sleep(3)
            lat_jobs = []
            for _ in range(args.latency_jobs):
                lat_jobs.append(lat_queue.enqueue(noop))
                time.sleep(args.pace)
            deadline = time.monotonic() + 300
            while lat_queue.finished_job_registry.count < args.latency_jobs:
                if time.monotonic() > deadline:
                    raise RuntimeError("rq latency jobs did not finish")
                time.sleep(0.2)
            lat = []
            for job in lat_jobs:
                job.refresh()
                lat.append((job.started_at - job.enqueued_at).total_seconds())
        finally:
            stop_all(procs)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"submit_per_s": submit_rate, "jobs_per_s": throughput, "latency": lat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs of the throughput phase")
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--latency-jobs", type=int, default=60)
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between paced jobs")
    args = parser.parse_args()
    print(f"load before: {load()}  jobs={args.jobs} workers={args.workers}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="jobsbench-") as tmp:
        results["aspen-jobs (3 nodes, fsync)"] = aspen_run(args, Path(tmp))
        results["rq + redis (appendfsync always)"] = rq_run(args, Path(tmp), "always")
        results["rq + redis (default, no fsync)"] = rq_run(args, Path(tmp), "no")
    print(f"load after: {load()}")
    base = results["aspen-jobs (3 nodes, fsync)"]
    row = "{:34} {:>10} {:>10} {:>12} {:>12}"
    print(row.format("system", "submit/s", "jobs/s", "start p50 ms", "start p99 ms"))
    for name, r in results.items():
        print(
            row.format(
                name,
                f"{r['submit_per_s']:.0f}",
                f"{r['jobs_per_s']:.0f}",
                f"{1000 * statistics.median(r['latency']):.1f}",
                f"{1000 * pct(r['latency'], 0.99):.1f}",
            )
        )
    for name, r in results.items():
        if r is not base:
            latency = statistics.median(base["latency"]) / statistics.median(r["latency"])
            print(
                f"aspen / {name}: throughput {base['jobs_per_s'] / r['jobs_per_s']:.2f}x "
                f"(higher is better), start p50 {latency:.2f}x (lower is better)"
            )


if __name__ == "__main__":
    main()
