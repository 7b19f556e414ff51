"""A job's record and its life: validation of a submission, backoff, state changes.

States: ``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``dead`` | ``cancelled``.
A failed attempt with retries left goes back to ``queued`` (not before its backoff). A job
whose last allowed attempt failed ends ``failed`` when it had no retries, ``dead`` when it
had and used them all. A job waiting for dependencies is ``queued`` with ``waiting`` true;
one whose dependency ended other than ``succeeded`` is ``cancelled``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError
from aspen_jobs import limits
from aspen_jobs.keys import check_name

__all__ = ["FINAL", "STATES", "backoff", "decode", "encode", "new_job", "public"]

STATES = ("queued", "running", "succeeded", "failed", "dead", "cancelled")
#: States a job never leaves (except through ``jobs retry``).
FINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})
BACKOFFS = ("fixed", "exponential")


def encode(record: dict[str, Any]) -> bytes:
    """A record as stored."""
    return msgpack.packb(record, use_bin_type=True)  # type: ignore[no-any-return]


def decode(value: bytes) -> dict[str, Any]:
    """A stored record."""
    return msgpack.unpackb(value, raw=False)  # type: ignore[no-any-return]


def new_id() -> str:
    """A fresh job id: milliseconds since the epoch then randomness, so ids sort by time."""
    return f"{int(time.time() * 1000):012x}{os.urandom(5).hex()}"


def _number(params: dict[str, Any], field: str, default: float, low: float, high: float) -> float:
    value = params.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidArgumentError(f"{field!r} must be a number in [{low}, {high}]", field=field)
    return float(value)


def _int(params: dict[str, Any], field: str, default: int, high: int, bound: str) -> int:
    value = params.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise InvalidArgumentError(
            f"{field!r} must be an integer in [0, {high}] ({bound})", field=field, limit=high
        )
    return value


def new_job(params: dict[str, Any], now: float) -> dict[str, Any]:
    """Validate a submission (``jobs.submit`` params) into a new job record.

    Fields: ``queue``; ``type`` (default ``shell`` with ``command``, else required) and
    ``payload``; or ``command`` (a shell job); ``priority``, ``timeout``, ``retries``,
    ``backoff`` (``fixed``/``exponential``), ``backoff_seconds``, ``after`` (ids),
    ``idempotency_key``, ``not_before`` (epoch seconds) or ``delay`` (seconds), ``id``.
    """
    queue = check_name(params.get("queue"), "queue")
    command = params.get("command")
    payload = params.get("payload")
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise InvalidArgumentError("'command' must be a non-empty string", field="command")
        if len(command.encode()) > limits.JOBS_MAX_COMMAND_BYTES:
            raise InvalidArgumentError(
                "'command' is longer than JOBS_MAX_COMMAND_BYTES "
                f"({limits.JOBS_MAX_COMMAND_BYTES})",
                field="command",
                limit=limits.JOBS_MAX_COMMAND_BYTES,
            )
        payload = {"command": command, **(payload if isinstance(payload, dict) else {})}
    kind = check_name(params.get("type", "shell" if command is not None else None), "type")
    if kind == "shell" and not (isinstance(payload, dict) and "command" in payload):
        raise InvalidArgumentError("a shell job needs a 'command'", field="command")
    size = len(encode({"p": payload}))
    if size > limits.JOBS_MAX_PAYLOAD_BYTES:
        raise InvalidArgumentError(
            f"payload of {size} bytes exceeds JOBS_MAX_PAYLOAD_BYTES "
            f"({limits.JOBS_MAX_PAYLOAD_BYTES})",
            field="payload",
            limit=limits.JOBS_MAX_PAYLOAD_BYTES,
        )
    backoff_kind = params.get("backoff", "exponential")
    if backoff_kind not in BACKOFFS:
        raise InvalidArgumentError(
            f"'backoff' must be one of {', '.join(BACKOFFS)}", field="backoff"
        )
    after = params.get("after") or []
    if not isinstance(after, list) or len(after) > limits.JOBS_MAX_DEPENDENCIES:
        raise InvalidArgumentError(
            f"'after' must be a list of at most JOBS_MAX_DEPENDENCIES "
            f"({limits.JOBS_MAX_DEPENDENCIES}) job ids",
            field="after",
        )
    after = sorted({check_name(a, "after", limits.JOBS_MAX_ID_BYTES) for a in after})
    job_id = params.get("id")
    job_id = new_id() if job_id is None else check_name(job_id, "id", limits.JOBS_MAX_ID_BYTES)
    if job_id in after:
        raise InvalidArgumentError(
            f"job {job_id!r} depends on itself: a dependency cycle", field="after", reason="cycle"
        )
    key = params.get("idempotency_key")
    if key is not None:
        key = check_name(key, "idempotency_key", limits.JOBS_MAX_ID_BYTES)
    not_before = now + _number(params, "delay", 0.0, 0.0, limits.JOBS_MAX_DELAY_SECONDS)
    if params.get("not_before") is not None:
        not_before = _number(params, "not_before", 0.0, 0.0, now + limits.JOBS_MAX_DELAY_SECONDS)
    return {
        "id": job_id,
        "queue": queue,
        "type": kind,
        "payload": payload,
        "priority": _int(params, "priority", 0, limits.JOBS_MAX_PRIORITY, "JOBS_MAX_PRIORITY"),
        "timeout": _number(
            params,
            "timeout",
            limits.JOBS_DEFAULT_TIMEOUT_SECONDS,
            0.001,
            limits.JOBS_MAX_TIMEOUT_SECONDS,
        ),
        "retries": _int(params, "retries", 0, limits.JOBS_MAX_RETRIES, "JOBS_MAX_RETRIES"),
        "backoff": backoff_kind,
        "backoff_seconds": _number(
            params,
            "backoff_seconds",
            limits.JOBS_DEFAULT_BACKOFF_SECONDS,
            0.0,
            limits.JOBS_MAX_BACKOFF_SECONDS,
        ),
        "after": after,
        "idempotency_key": key,
        "not_before": not_before,
        "state": "queued",
        "waiting": bool(after),
        "attempts": [],
        "attempt_count": 0,
        "attempt_base": 0,
        "progress": None,
        "error": "",
        "created": now,
        "updated": now,
        "schedule": params.get("schedule") if isinstance(params.get("schedule"), str) else None,
    }


def backoff(job: dict[str, Any]) -> float:
    """Seconds before the next attempt after ``job``'s latest failure."""
    base = float(job["backoff_seconds"])
    if job["backoff"] == "fixed":
        return base
    failures = max(1, job["attempt_count"] - job["attempt_base"])
    return float(min(limits.JOBS_MAX_BACKOFF_SECONDS, base * 2 ** (failures - 1)))


def attempts_left(job: dict[str, Any]) -> bool:
    """Whether the job may be attempted again."""
    return job["attempt_count"] - job["attempt_base"] < job["retries"] + 1


def final_failure_state(job: dict[str, Any]) -> str:
    """``dead`` when retries were allowed and all used, else ``failed``."""
    return "dead" if job["retries"] > 0 else "failed"


def add_attempt(job: dict[str, Any], attempt: dict[str, Any]) -> None:
    """Append ``attempt`` (dropping the oldest beyond ``JOBS_MAX_ATTEMPT_RECORDS``)."""
    job["attempts"] = [*job["attempts"], attempt][-limits.JOBS_MAX_ATTEMPT_RECORDS :]


def public(job: dict[str, Any]) -> dict[str, Any]:
    """What ``jobs get`` answers."""
    return dict(job)
