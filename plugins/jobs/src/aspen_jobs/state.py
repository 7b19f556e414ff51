"""Reading and changing job records: every change is one ``kv.txn`` that compares the
record's ``mod_revision`` and publishes a ``jobs.state`` event with it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aspen.errors import NotFoundError, UnavailableError
from aspen_coord.store import cmp, get, put_op, txn
from aspen_jobs import keys
from aspen_jobs.model import decode, encode

__all__ = ["MAX_CAS_ROUNDS", "change", "load", "state_event"]

#: Rounds of read + compare-and-swap one change tries before answering ``unavailable``.
MAX_CAS_ROUNDS = 50

#: ``(job) -> (extra compares, extra ops)`` or ``None`` to leave the job unchanged; it
#: edits ``job`` in place.
Edit = Callable[[dict[str, Any]], Awaitable[tuple[list[Any], list[Any]] | None]]


async def load(node: Any, job_id: str) -> tuple[dict[str, Any], int]:
    """Job ``job_id``'s record and its ``mod_revision``; ``not_found`` if there is none."""
    kv = await get(node, keys.job(job_id))
    if kv is None:
        raise NotFoundError(f"no job {job_id!r}", field="id", id=job_id)
    return decode(kv["value"]), int(kv["mod_revision"])


def state_event(node: Any, job: dict[str, Any], previous: str) -> dict[str, Any]:
    """The ``jobs.state`` publish op for ``job``'s current state."""
    payload = {
        "id": job["id"],
        "queue": job["queue"],
        "state": job["state"],
        "previous": previous,
        "attempt": job["attempt_count"],
    }
    return node.events.op("jobs.state", f"{job['queue']}/{job['id']}", payload)  # type: ignore[no-any-return]


async def change(node: Any, job_id: str, edit: Edit) -> tuple[dict[str, Any], bool]:
    """Apply ``edit`` to job ``job_id`` by compare-and-swap; (the job, whether it changed).

    ``edit`` may raise to refuse; it returns ``None`` to change nothing. A ``jobs.state``
    event is published when the state changes.
    """
    for _ in range(MAX_CAS_ROUNDS):
        job, revision = await load(node, job_id)
        previous = job["state"]
        extra = await edit(job)
        if extra is None:
            return job, False
        compares, ops = extra
        job["updated"] = time.time()
        success = [put_op(keys.job(job_id), encode(job)), *ops]
        if job["state"] != previous:
            success.append(state_event(node, job, previous))
        compares = [cmp(keys.job(job_id), "mod_revision", "==", revision), *compares]
        result = await txn(node, compares, success)
        if result["succeeded"]:
            return job, True
    raise UnavailableError(f"job {job_id!r} kept changing; try again")
