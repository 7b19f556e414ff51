"""The worker's methods: register, lease a job, heartbeat, progress, complete.

A worker holds an Aspen lease (``jobs.worker.register``). Leasing a job is one txn that
moves it from the ready index to ``running`` and puts ``run/<lease>/<id>`` attached to
the worker's lease: that key's ``create_revision`` (the txn's revision) is the attempt's
**fencing token**. Progress and completion commit only while that key still exists with
that ``create_revision``; when the worker vanishes its lease expires, the key goes, the
leader's upkeep retries the job, and the old worker's late result is refused with
``aspen_coord.errors.FencedError`` (``compare_failed``, reason ``fenced``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio

from aspen.client import prefix_end
from aspen.errors import InvalidArgumentError
from aspen.rpc.params import optional_int, require_int
from aspen_coord.errors import FencedError, raise_typed
from aspen_coord.store import (
    Deadline,
    cmp,
    collect,
    delete_op,
    get,
    lease_grant,
    lease_keepalive,
    put_op,
    txn,
)
from aspen_jobs import keys, limits
from aspen_jobs.jobs import enqueue_ops, require_queue
from aspen_jobs.model import (
    add_attempt,
    attempts_left,
    backoff,
    decode,
    encode,
    final_failure_state,
    public,
)
from aspen_jobs.state import change, state_event

__all__ = [
    "lease_job",
    "settle",
    "worker_complete",
    "worker_heartbeat",
    "worker_progress",
    "worker_register",
]


def queues_of(params: dict[str, Any]) -> list[str]:
    """The checked ``queues`` of a lease request."""
    queues = params.get("queues")
    if not isinstance(queues, list) or not 0 < len(queues) <= limits.JOBS_MAX_WORKER_QUEUES:
        raise InvalidArgumentError(
            f"'queues' must list 1 to JOBS_MAX_WORKER_QUEUES ({limits.JOBS_MAX_WORKER_QUEUES}) "
            "queue names",
            field="queues",
        )
    return [keys.check_name(q, "queues") for q in queues]


def _worker(ctx: Any, params: dict[str, Any]) -> str:
    """Who runs the job: the worker's name and the token's identity."""
    name = params.get("worker")
    label = name if isinstance(name, str) and len(name) <= limits.JOBS_MAX_NAME_BYTES else "?"
    return f"{label} ({ctx.identity})"


async def worker_register(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A new worker lease: ``{ttl?}`` → ``{lease, ttl}``. Keep it with heartbeats."""
    ttl = optional_int(
        params,
        "ttl",
        limits.JOBS_DEFAULT_WORKER_TTL_SECONDS,
        min=limits.JOBS_MIN_WORKER_TTL_SECONDS,
        max=limits.JOBS_MAX_WORKER_TTL_SECONDS,
    )
    return {"lease": await lease_grant(ctx.node, ttl), "ttl": ttl}


async def _claim(
    node: Any, ready_key: bytes, job_id: str, lease: int, worker: str, claim: str
) -> dict[str, Any] | None:
    """Lease job ``job_id`` (found at ``ready_key``) to ``lease``; None if someone else won."""
    kv = await get(node, keys.job(job_id))
    if kv is None:
        return None
    job = decode(kv["value"])
    if job["state"] != "queued" or job["waiting"]:
        return None
    now = time.time()
    job.update(state="running", lease=lease, worker=worker, started=now, updated=now)
    job["attempt_count"] += 1
    attempt = {"n": job["attempt_count"], "worker": worker, "started": now, "state": "running"}
    add_attempt(job, {**attempt, "exit_code": None})
    run_key = keys.run(lease, job_id)
    result = await txn(
        node,
        [
            cmp(keys.job(job_id), "mod_revision", "==", int(kv["mod_revision"])),
            cmp(ready_key, "version", ">", 0),
        ],
        [
            put_op(keys.job(job_id), encode(job)),
            delete_op(ready_key),
            put_op(keys.running(job_id), f"{lease:016x}".encode()),
            put_op(run_key, encode({"worker": worker, "claim": claim}), lease=lease),
            state_event(node, job, "queued"),
        ],
    )
    if not result["succeeded"]:
        return None
    return {"job": public(job), "fence": int(result["header"]["revision"])}


async def _wait_for_ready(node: Any, after_revision: int, seconds: float) -> None:
    """Wait (on a watch of the ready index, puts only: a claim by another worker deletes
    and wakes nobody) until a job becomes ready after ``after_revision``, or ``seconds``."""
    params = {
        "key": keys.READY,
        "end": prefix_end(keys.READY),
        "start_revision": after_revision + 1,
        "filters": ["nodelete"],
    }
    with anyio.move_on_after(seconds):
        async with contextlib.aclosing(node.stream("kv.watch", params)) as items:
            async for item in items:
                if item.get("events"):
                    return


async def _claimed(node: Any, lease: int, claim: str) -> dict[str, Any] | None:
    """The job an earlier try of lease call ``claim`` got, if it did."""
    records, _, _ = await collect(node, keys.run_prefix(lease), most=limits.JOBS_MAX_CONCURRENCY)
    for kv in records:
        if decode(kv["value"]).get("claim") == claim:
            job = await get(node, keys.job(keys.tail(kv["key"], keys.run_prefix(lease))))
            if job is not None:
                return {"job": decode(job["value"]), "fence": int(kv["create_revision"])}
    return None


async def lease_job(
    node: Any, queues: list[str], lease: int, worker: str, wait: float, claim: str = ""
) -> dict[str, Any]:
    """Lease the first due job of ``queues`` (waiting up to ``wait`` s): ``{job, fence}``
    or ``{job: None}``. ``claim`` names the call, so a retried call answers the job an
    earlier try got (its answer lost in a failover) instead of leasing a second one."""
    if claim:
        earlier = await _claimed(node, lease, claim)
        if earlier is not None:
            return earlier
    deadline = Deadline(wait)
    while True:
        now = time.time()
        earliest: float | None = None
        seen = 0
        for queue in queues:
            records, _, revision = await collect(
                node, keys.ready_prefix(queue), most=limits.JOBS_LEASE_SCAN
            )
            seen = revision if not seen else min(seen, revision)
            for kv in records:
                not_before = float(decode(kv["value"])["not_before"])
                if not_before > now:
                    earliest = not_before if earliest is None else min(earliest, not_before)
                    continue
                job_id = kv["key"].rsplit(b"/", 1)[1].decode()
                claimed = await _claim(node, kv["key"], job_id, lease, worker, claim)
                if claimed is not None:
                    return claimed
        left = deadline.left()
        if left <= 0:
            return {"job": None}
        if earliest is not None:
            left = min(left, max(0.05, earliest - time.time()))
        await _wait_for_ready(node, seen, left)


async def worker_lease(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Lease one job: ``{queues, lease, worker?, wait?, claim?}`` → ``{job, fence}``
    (``job`` None when none came within ``wait`` seconds; a retry with the same ``claim``
    answers what the first try got)."""
    queues = queues_of(params)
    lease = require_int(params, "lease", min=1)
    wait = params.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        raise InvalidArgumentError("'wait' must be a number of seconds", field="wait")
    wait = min(max(0.0, float(wait)), limits.JOBS_MAX_LEASE_WAIT_SECONDS)
    claim = params.get("claim") or ""
    if not isinstance(claim, str) or len(claim) > limits.JOBS_MAX_ID_BYTES:
        raise InvalidArgumentError("'claim' must be a short string", field="claim")
    return await lease_job(ctx.node, queues, lease, _worker(ctx, params), wait, claim)


async def worker_heartbeat(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Keep a worker's lease: ``{lease, jobs: [ids it runs]}`` → ``{ttl, lost, unknown}``:
    ``lost`` are jobs it must stop (cancelled, or no longer its own), ``unknown`` jobs
    leased to it that it did not list (``[{id, fence, claim}]``: a lease call still in
    flight, or one whose answer it gave up on, which it hands back)."""
    lease = require_int(params, "lease", min=1)
    running = params.get("jobs") or []
    if not isinstance(running, list) or len(running) > limits.JOBS_MAX_CONCURRENCY:
        raise InvalidArgumentError(
            f"'jobs' must list at most JOBS_MAX_CONCURRENCY ({limits.JOBS_MAX_CONCURRENCY}) ids",
            field="jobs",
        )
    ttl = await lease_keepalive(ctx.node, lease)
    records, _, _ = await collect(
        ctx.node, keys.run_prefix(lease), most=limits.JOBS_MAX_CONCURRENCY
    )
    held = {keys.tail(kv["key"], keys.run_prefix(lease)): kv for kv in records}
    unknown = [
        {
            "id": job_id,
            "fence": int(kv["create_revision"]),
            "claim": decode(kv["value"]).get("claim", ""),
        }
        for job_id, kv in held.items()
        if job_id not in running
    ]
    return {"ttl": ttl, "lost": [j for j in running if j not in held], "unknown": unknown}


def _fenced_ids(params: dict[str, Any]) -> tuple[str, int, int]:
    job_id = keys.check_name(params.get("id"), "id", limits.JOBS_MAX_ID_BYTES)
    return job_id, require_int(params, "lease", min=1), require_int(params, "fence", min=1)


async def _check_fence(node: Any, job: dict[str, Any], lease: int, fence: int) -> bytes:
    """The run key if ``lease`` still holds ``job`` at ``fence``; ``FencedError`` if not."""
    run_key = keys.run(lease, job["id"])
    kv = await get(node, run_key)
    if job["state"] != "running" or kv is None or int(kv["create_revision"]) != fence:
        raise_typed(
            FencedError,
            f"job {job['id']!r} is no longer leased at fence {fence} (it is {job['state']}; "
            "its worker lease expired, or it was cancelled): the result is refused",
            id=job["id"],
            fence=fence,
        )
    return run_key


async def worker_progress(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Record progress ``{id, lease, fence, progress}`` of a leased job."""
    job_id, lease, fence = _fenced_ids(params)
    progress = params.get("progress")
    size = len(encode({"p": progress}))
    if size > limits.JOBS_MAX_PROGRESS_BYTES:
        raise InvalidArgumentError(
            f"progress of {size} bytes exceeds JOBS_MAX_PROGRESS_BYTES "
            f"({limits.JOBS_MAX_PROGRESS_BYTES})",
            field="progress",
        )

    async def edit(job: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        require_queue(ctx, job, "work")
        run_key = await _check_fence(ctx.node, job, lease, fence)
        job["progress"] = progress
        return [cmp(run_key, "create_revision", "==", fence)], []

    await change(ctx.node, job_id, edit)
    return {"id": job_id}


async def _stored_output(node: Any, job_id: str, n: int, name: str, text: Any) -> dict[str, Any]:
    """``{name: text}`` when small, else the text in the blob store: ``{name: head,
    name_blob: hash}``."""
    if not isinstance(text, str):
        text = ""
    data = text.encode("utf-8", "replace")[: limits.JOBS_MAX_OUTPUT_BYTES]
    if len(data) <= limits.JOBS_MAX_INLINE_OUTPUT_BYTES:
        return {name: text}
    ref = await node.blobs.put(data, pin=f"jobs/{job_id}/{n}/{name}")
    head = data[: limits.JOBS_MAX_INLINE_OUTPUT_BYTES].decode("utf-8", "replace")
    return {name: head, f"{name}_blob": ref.hash, f"{name}_bytes": ref.size}


def settle(
    job: dict[str, Any], ok: bool, error: str, now: float, *, retry: bool = True
) -> list[dict[str, Any]]:
    """Move a running ``job`` whose attempt ended to its next state (no retry when
    ``retry`` is false: a permanent failure); ops to apply with it."""
    ops = [delete_op(keys.running(job["id"]))]
    if job.get("lease"):
        ops.append(delete_op(keys.run(job["lease"], job["id"])))
    job["lease"] = 0
    job["error"] = error[: limits.JOBS_MAX_ERROR_CHARS]
    if ok:
        job["state"] = "succeeded"
    elif retry and attempts_left(job):
        job.update(state="queued", not_before=now + backoff(job))
        ops += enqueue_ops(job)
    else:
        job["state"] = final_failure_state(job)
    return ops


async def worker_complete(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Report a leased attempt's end: ``{id, lease, fence, ok, exit_code?, error?,
    stdout?, stderr?, output?, duration?, command?, permanent?}`` → ``{id, state}``
    (``permanent``: do not retry, e.g. a command the worker's allow-list refuses;
    ``release``: the worker hands the job back unfinished, as it stops: queued again at
    once, the attempt not counted against its retries). Refused with
    ``FencedError`` unless the job is still leased to ``lease`` at ``fence``."""
    job_id, lease, fence = _fenced_ids(params)
    ok = params.get("ok") is True
    error = str(params["error"]) if isinstance(params.get("error"), str) else ""
    exit_code = params.get("exit_code")
    exit_code = (
        exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None
    )
    duration = params.get("duration")
    duration = float(duration) if isinstance(duration, int | float) else None
    size = len(encode({"o": params.get("output")}))
    if size > limits.JOBS_MAX_PAYLOAD_BYTES:
        raise InvalidArgumentError(
            f"output of {size} bytes exceeds JOBS_MAX_PAYLOAD_BYTES "
            f"({limits.JOBS_MAX_PAYLOAD_BYTES})",
            field="output",
        )
    outputs: dict[str, Any] | None = None

    async def edit(job: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        nonlocal outputs
        require_queue(ctx, job, "work")
        run_key = await _check_fence(ctx.node, job, lease, fence)
        n = job["attempt_count"]
        if outputs is None:
            outputs = {}
            for name in ("stdout", "stderr"):
                outputs |= await _stored_output(ctx.node, job_id, n, name, params.get(name))
        now = time.time()
        attempt = {
            **job["attempts"][-1],
            **outputs,
            "state": "succeeded" if ok else "failed",
            "exit_code": exit_code,
            "error": error[: limits.JOBS_MAX_ERROR_CHARS],
            "output": params.get("output"),
            "duration": duration,
            "finished": now,
            "fence": fence,
        }
        job["attempts"] = [
            {k: v for k, v in a.items() if k not in ("stdout", "stderr")}
            for a in job["attempts"][:-1]
        ] + [attempt]
        if params.get("release") is True:  # handed back unrun or stopped: not an attempt
            attempt["state"] = "released"
            job["attempts"][-1] = attempt
            job["attempt_base"] += 1
            job.update(state="queued", not_before=now, lease=0, error="")
            ops = [delete_op(keys.running(job_id)), delete_op(run_key), *enqueue_ops(job)]
            return [cmp(run_key, "create_revision", "==", fence)], ops
        ops = settle(job, ok, error, now, retry=params.get("permanent") is not True)
        audit = {
            "job": job_id,
            "queue": job["queue"],
            "type": job["type"],
            "attempt": n,
            "who": attempt.get("worker"),
            "what": params.get("command") or job["type"],
            "exit_code": exit_code,
            "ok": ok,
            "error": attempt["error"],
            "duration": duration,
            "time": now,
        }
        audit_key = keys.AUDIT + f"{now:017.6f}/{job_id}/{n}".encode()
        ops.append(put_op(audit_key, encode(audit)))
        return [cmp(run_key, "create_revision", "==", fence)], ops

    job, _ = await change(ctx.node, job_id, edit)
    return {"id": job_id, "state": job["state"]}
