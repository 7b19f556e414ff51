"""The ``job`` executor (``aspen hooks add NAME --on … --job QUEUE``): submit the event
as an aspen-jobs job, so heavy work leaves the hook runner for the job workers.

The target is ``{"queue": str, "type"?: str, "command"?: str}``: a ``shell`` job running
``command`` (``--job QUEUE --shell CMD``), else a job of ``type`` (default ``event``,
which a worker serves with an ``aspen.jobs`` entry point of that name). The payload is
``{"event", "handler"}`` (plus ``command``); the job's idempotency key is derived from the
run's, so a retried or re-run delivery submits the same job once. A run is ok once the job
is submitted (``output``: ``{"job": id}``), not when it has run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aspen.errors import AspenError
from aspen_hooks import limits
from aspen_hooks.executors.base import ExecutorSettings, Invocation, Outcome, compact_json, failed
from aspen_hooks.executors.fields import check_fields, require_text

__all__ = ["execute", "validate"]

#: Events bigger than this as JSON are submitted without their ``value``.
_MAX_EVENT_CHARS = 32 * 1024


def validate(target: Any, settings: ExecutorSettings) -> dict[str, Any]:
    """Check a job target ``{"queue", "type"?, "command"?}``."""
    target = check_fields("job", target, ("queue", "type", "command"))
    normal = {
        "queue": require_text(
            "job", target, "queue", limits.HOOKS_MAX_NAME_CHARS, limit_name="HOOKS_MAX_NAME_CHARS"
        )
    }
    if target.get("command") is not None:
        normal["command"] = require_text(
            "job",
            target,
            "command",
            limits.HOOKS_MAX_COMMAND_CHARS,
            limit_name="HOOKS_MAX_COMMAND_CHARS",
        )
    elif target.get("type") is not None:
        normal["type"] = require_text(
            "job", target, "type", limits.HOOKS_MAX_NAME_CHARS, limit_name="HOOKS_MAX_NAME_CHARS"
        )
    return normal


async def execute(
    target: dict[str, Any], invocation: Invocation, settings: ExecutorSettings
) -> Outcome:
    """Submit the job through the node's ``jobs.submit`` (aspen-jobs must be loaded)."""
    if settings.call is None:
        return failed("job handlers need the node's in-process call (not set on this node)")
    event = dict(invocation.event)
    if len(compact_json(event)) > _MAX_EVENT_CHARS and "value" in event:
        event.pop("value")
        event["value_omitted"] = True
    key = hashlib.blake2b(invocation.idempotency_key.encode(), digest_size=16).hexdigest()
    params: dict[str, Any] = {
        "queue": target["queue"],
        "payload": {"event": event, "handler": invocation.handler},
        "idempotency_key": f"hook-{key}",
    }
    if "command" in target:
        params["command"] = target["command"]
    else:
        params["type"] = target.get("type", "event")
    try:
        got = await settings.call("jobs.submit", params)
    except AspenError as exc:
        return failed(f"could not submit the job: {exc.code}: {exc.message}")
    return Outcome(ok=True, duration=0.0, output={"job": got["id"]})
