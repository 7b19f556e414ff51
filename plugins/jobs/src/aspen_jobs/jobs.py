"""The submitter's methods: ``jobs.submit|get|list|cancel|retry|result|stats``."""

from __future__ import annotations

import time
from typing import Any

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen.rpc.params import optional_int, optional_str
from aspen_coord.store import cmp, collect, delete_op, get, put_op, range_op, txn
from aspen_jobs import keys, limits
from aspen_jobs.model import FINAL, STATES, decode, encode, new_job, public
from aspen_jobs.state import change, load, state_event

__all__ = [
    "enqueue_ops",
    "jobs_cancel",
    "jobs_get",
    "jobs_list",
    "jobs_result",
    "jobs_retry",
    "jobs_stats",
    "jobs_submit",
    "submit",
]


def require_queue(ctx: Any, job: dict[str, Any], operation: str = "submit") -> None:
    """Refuse unless the caller holds ``jobs:<operation>:<queue>`` of ``job`` (or admin)."""
    queue = job["queue"]
    if not ctx.authority.allows(f"jobs:admin:{queue}"):
        ctx.authority.require(f"jobs:{operation}:{queue}")


def enqueue_ops(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Ops putting a queued job in the index it waits in (ready, or waiting for deps)."""
    if job["waiting"]:
        return [put_op(keys.wait(job["id"]), b"")]
    key = keys.ready(job["queue"], job["priority"], job["id"])
    return [put_op(key, encode({"not_before": job["not_before"]}))]


async def submit(node: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Submit a job (also used by schedules and hooks); ``{id, existing}``."""
    job = new_job(params, time.time())
    for dep in job["after"]:
        kv = await get(node, keys.job(dep))
        if kv is None:
            raise NotFoundError(
                f"unknown dependency {dep!r}: a job may only wait for existing jobs",
                field="after",
                id=dep,
            )
        if decode(kv["value"])["state"] != "succeeded":
            job["waiting"] = True
    job["waiting"] = job["waiting"] and bool(job["after"])
    job_key = keys.job(job["id"])
    compares = [cmp(job_key, "version", "==", 0)]
    failure = [range_op(job_key)]
    idem_key = None
    if job["idempotency_key"]:
        idem_key = keys.idem(job["queue"], job["idempotency_key"])
        compares.append(cmp(idem_key, "version", "==", 0))
        failure.append(range_op(idem_key))
    success = [put_op(job_key, encode(job)), *enqueue_ops(job), state_event(node, job, "")]
    if idem_key is not None:
        success.append(put_op(idem_key, job["id"].encode()))
    result = await txn(node, compares, success, failure)
    if result["succeeded"]:
        return {"id": job["id"], "existing": False, "state": "queued"}
    if idem_key is not None:
        kvs = result["responses"][1]["range"]["kvs"]
        if kvs:
            return {"id": kvs[0]["value"].decode(), "existing": True}
    raise InvalidArgumentError(f"job id {job['id']!r} is taken", field="id")


async def jobs_submit(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Submit a job: ``{queue, command | type+payload, priority?, timeout?, retries?,
    backoff?, backoff_seconds?, after?, idempotency_key?, not_before? | delay?, id?}`` →
    ``{id, existing}`` (the same id for the same idempotency key)."""
    return await submit(ctx.node, params)


def _job_id(params: dict[str, Any]) -> str:
    return keys.check_name(params.get("id"), "id", limits.JOBS_MAX_ID_BYTES)


async def jobs_get(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A job's record: ``{id, queue, state, attempts: [{exit_code, …}], progress, …}``."""
    job, revision = await load(ctx.node, _job_id(params))
    require_queue(ctx, job)
    return {**public(job), "revision": revision}


async def jobs_result(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The latest attempt's outputs ``{state, exit_code, stdout, stderr, output}``; big
    outputs are read back from the blob store."""
    job, _ = await load(ctx.node, _job_id(params))
    require_queue(ctx, job)
    last = job["attempts"][-1] if job["attempts"] else {}
    answer = {
        "id": job["id"],
        "state": job["state"],
        "exit_code": last.get("exit_code"),
        "output": last.get("output"),
    }
    for stream in ("stdout", "stderr"):
        text = last.get(stream, "")
        blob = last.get(f"{stream}_blob")
        if blob:
            data = bytearray()
            async for piece in ctx.node.blobs.open(blob):
                data += piece
            text = data.decode("utf-8", "replace")
        answer[stream] = text
    return answer


async def jobs_list(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Jobs (optionally of one ``queue`` and one ``state``), oldest first: ``{jobs, more}``."""
    queue = params.get("queue")
    if queue is not None:
        keys.check_name(queue, "queue")
    state = optional_str(params, "state", None, choices=STATES)
    most = optional_int(params, "limit", 100, min=1, max=limits.JOBS_MAX_LIST)
    records, more, _ = await collect(ctx.node, keys.JOB, most=limits.JOBS_UPKEEP_SCAN)
    out = []
    for kv in records:
        job = decode(kv["value"])
        if (queue and job["queue"] != queue) or (state and job["state"] != state):
            continue
        if queue is None and not ctx.authority.allows(f"jobs:submit:{job['queue']}"):
            continue
        out.append(
            {k: job[k] for k in ("id", "queue", "type", "state", "attempt_count", "created")}
        )
        if len(out) >= most:
            more = True
            break
    return {"jobs": out, "more": more}


async def jobs_stats(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Counts per queue and state: ``{queues: {q: {state: n}}, ready: {q: n}, running}``."""
    records, more, _ = await collect(ctx.node, keys.JOB, most=100 * limits.JOBS_UPKEEP_SCAN)
    queues: dict[str, dict[str, int]] = {}
    for kv in records:
        job = decode(kv["value"])
        if not ctx.authority.allows(f"jobs:submit:{job['queue']}"):
            continue
        counts = queues.setdefault(job["queue"], dict.fromkeys(STATES, 0))
        counts[job["state"]] += 1
    queue = params.get("queue")
    if queue is not None:
        if queue not in queues:
            raise NotFoundError(f"unknown queue {queue!r}: no job was ever submitted to it")
        queues = {queue: queues[queue]}
    return {"queues": queues, "truncated": more}


async def jobs_cancel(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Cancel a queued or running job (a running job's worker stops its process at its
    next heartbeat, and its late result is refused); ``{id, state, changed}``."""
    job_id = _job_id(params)

    async def edit(job: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
        require_queue(ctx, job)
        if job["state"] in FINAL:
            return None
        ops = [
            delete_op(keys.ready(job["queue"], job["priority"], job_id)),
            delete_op(keys.wait(job_id)),
        ]
        if job["state"] == "running":
            ops.append(delete_op(keys.running(job_id)))
            lease = job.get("lease")
            if lease:
                ops.append(delete_op(keys.run(lease, job_id)))
        job["state"] = "cancelled"
        job["error"] = "cancelled"
        return [], ops

    job, changed = await change(ctx.node, job_id, edit)
    return {"id": job_id, "state": job["state"], "changed": changed}


async def jobs_retry(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a failed, dead or cancelled job again with its full retries; ``{id, state}``."""
    job_id = _job_id(params)

    async def edit(job: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
        require_queue(ctx, job)
        if job["state"] not in ("failed", "dead", "cancelled"):
            raise InvalidArgumentError(
                f"job {job_id!r} is {job['state']}: only failed, dead or cancelled jobs are "
                "retried",
                field="id",
            )
        job.update(state="queued", waiting=False, error="", not_before=time.time())
        job["attempt_base"] = job["attempt_count"]
        return [], enqueue_ops(job)

    job, _ = await change(ctx.node, job_id, edit)
    return {"id": job_id, "state": job["state"]}
