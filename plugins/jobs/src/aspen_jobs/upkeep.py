"""The leader's upkeep, every ``JOBS_UPKEEP_SECONDS``: retry the jobs of vanished workers,
release jobs whose dependencies are met (cancel those whose dependencies failed), fire
due schedules, and (every ``JOBS_AUDIT_TRIM_PASSES``) trim the audit records. Every
change is a compare-and-swap, so a second node that believes it
leads (for a moment, around a failover) changes nothing twice."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from aspen.errors import AspenError
from aspen_coord.store import cmp, collect, delete_op, get
from aspen_jobs import keys, limits
from aspen_jobs.audit import trim_audit
from aspen_jobs.jobs import enqueue_ops
from aspen_jobs.leasing import settle
from aspen_jobs.model import FINAL, decode
from aspen_jobs.schedules import fire_due
from aspen_jobs.state import change

__all__ = ["reap_lost", "release_waiting", "upkeep_loop", "upkeep_pass"]

log = logging.getLogger(__name__)


async def reap_lost(node: Any) -> int:
    """Retry (or bury) running jobs whose worker's lease is gone; how many."""
    running, _, _ = await collect(node, keys.RUNNING, most=limits.JOBS_UPKEEP_SCAN)
    if not running:
        return 0
    runs, _, _ = await collect(node, keys.RUN, most=limits.JOBS_UPKEEP_SCAN * 4)
    held = {kv["key"][len(keys.RUN) :] for kv in runs}
    reaped = 0
    for kv in running:
        job_id = keys.tail(kv["key"], keys.RUNNING)
        lease_hex = kv["value"].decode()
        if f"{lease_hex}/{job_id}".encode() in held:
            continue
        run_key = keys.run(int(lease_hex, 16), job_id)

        async def edit(
            job: dict[str, Any], run_key: bytes = run_key, lease_hex: str = lease_hex
        ) -> Any:
            if job["state"] != "running" or f"{job.get('lease', 0):016x}" != lease_hex:
                return None
            if await get(node, run_key) is not None:
                return None
            now = time.time()
            error = "worker lost: its lease expired before it reported (attempt retried)"
            job["attempts"][-1] = {
                **job["attempts"][-1],
                "state": "lost",
                "error": error,
                "finished": now,
            }
            return [cmp(run_key, "version", "==", 0)], settle(job, False, error, now)

        try:
            _, changed = await change(node, job_id, edit)
        except AspenError as exc:
            log.warning("jobs: could not retry lost job %s: %s", job_id, exc)
            continue
        reaped += changed
    return reaped


async def release_waiting(node: Any) -> int:
    """Queue the jobs whose dependencies all succeeded, cancel those with one that ended
    otherwise; how many changed."""
    waiting, _, _ = await collect(node, keys.WAIT, most=limits.JOBS_UPKEEP_SCAN)
    changed_count = 0
    for kv in waiting:
        job_id = keys.tail(kv["key"], keys.WAIT)

        async def edit(job: dict[str, Any], job_id: str = job_id) -> Any:
            if job["state"] != "queued" or not job["waiting"]:
                stale = [delete_op(keys.wait(job_id))]
                return ([], stale) if job["state"] in FINAL else None
            states = {}
            for dep in job["after"]:
                got = await get(node, keys.job(dep))
                states[dep] = decode(got["value"])["state"] if got else "cancelled"
            failed = {d: s for d, s in states.items() if s in FINAL and s != "succeeded"}
            if failed:
                dep, state = next(iter(failed.items()))
                job.update(state="cancelled", error=f"dependency {dep} ended {state}")
                return [], [delete_op(keys.wait(job_id))]
            if all(s == "succeeded" for s in states.values()):
                job.update(waiting=False, not_before=max(job["not_before"], time.time()))
                return [], [delete_op(keys.wait(job_id)), *enqueue_ops(job)]
            return None

        _, changed = await change(node, job_id, edit)
        changed_count += changed
    return changed_count


async def upkeep_pass(node: Any, number: int = 0) -> None:
    """One pass of the upkeep (on the leader); pass ``number`` decides the rare chores."""
    await reap_lost(node)
    await release_waiting(node)
    await fire_due(node)
    if number % limits.JOBS_AUDIT_TRIM_PASSES == 0:
        await trim_audit(node)


async def upkeep_loop(node: Any) -> None:
    """Run :func:`upkeep_pass` while this node leads, until the node stops."""
    number = 0
    while True:
        await anyio.sleep(limits.JOBS_UPKEEP_SECONDS)
        if not node.is_leader:
            continue
        number += 1
        try:
            await upkeep_pass(node, number)
        except AspenError as exc:  # lost leadership mid-pass, a busy store…
            log.info("jobs: upkeep pass stopped: %s", exc)
        except Exception:
            log.exception("jobs: upkeep pass failed")
