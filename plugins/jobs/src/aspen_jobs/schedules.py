"""Schedules: cron expressions (croniter) or fixed intervals, in a time zone, each fire
submitting one job.

**Once per cluster per tick.** Only the Raft leader's upkeep fires, and a fire is one txn
that compares the schedule record's ``mod_revision`` and, in the same commit, records the
tick as ``last_tick`` and submits the job. A node that still believes it leads after a
failover loses that compare, so a tick is fired at most once whoever proposes it.

**Missed ticks.** A pass fires the *latest* due tick only: ticks missed while no leader
was up (an election, a paused schedule) are skipped, not replayed, and counted in
``skipped``. A tick is due once its time has passed and it is later than both
``last_tick`` and the schedule's creation (or resume).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aspen.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen.rpc.params import optional_bool
from aspen_coord.store import cmp, collect, delete_op, get, put_op, range_op, txn
from aspen_jobs import keys, limits
from aspen_jobs.jobs import enqueue_ops
from aspen_jobs.model import decode, encode, new_job
from aspen_jobs.state import state_event

__all__ = ["fire_due", "latest_tick", "schedule_handlers"]

#: Fields of a schedule's job template (as ``jobs.submit`` takes them).
JOB_FIELDS = (
    "queue",
    "command",
    "type",
    "payload",
    "priority",
    "timeout",
    "retries",
    "backoff",
    "backoff_seconds",
)


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str):
        raise InvalidArgumentError("'tz' must be a time zone name", field="tz")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(f"unknown time zone {name!r}", field="tz") from None


def latest_tick(schedule: dict[str, Any], now: float) -> float | None:
    """The latest tick of ``schedule`` at or before ``now`` (None if none yet)."""
    since = float(schedule["since"])
    if schedule.get("cron"):
        from croniter import croniter  # type: ignore[import-untyped]

        zone = _zone(schedule.get("tz", "UTC"))
        tick = float(croniter(schedule["cron"], datetime.fromtimestamp(now, zone)).get_prev(float))
        # croniter's get_prev is strictly before its start: a tick exactly at now counts too.
        nxt = float(croniter(schedule["cron"], datetime.fromtimestamp(tick, zone)).get_next(float))
        tick = nxt if nxt <= now else tick
        return tick if tick > since else None
    interval = float(schedule["interval"])
    count = math.floor((now - since) / interval)
    return since + count * interval if count >= 1 else None


def _check_schedule(params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``jobs.schedule.add`` params into a schedule record."""
    name = keys.check_name(params.get("name"), "name")
    cron, interval = params.get("cron"), params.get("interval")
    if (cron is None) == (interval is None):
        raise InvalidArgumentError("give exactly one of 'cron' and 'interval'", field="cron")
    tz = params.get("tz", "UTC")
    _zone(tz)
    if cron is not None:
        from croniter import croniter  # type: ignore[import-untyped]

        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise InvalidArgumentError(f"bad cron expression {cron!r}", field="cron")
    elif (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not limits.JOBS_MIN_INTERVAL_SECONDS <= interval <= limits.JOBS_MAX_DELAY_SECONDS
    ):
        raise InvalidArgumentError(
            f"'interval' must be seconds in [JOBS_MIN_INTERVAL_SECONDS "
            f"({limits.JOBS_MIN_INTERVAL_SECONDS}), {limits.JOBS_MAX_DELAY_SECONDS}]",
            field="interval",
        )
    template = {k: params[k] for k in JOB_FIELDS if params.get(k) is not None}
    new_job(template, time.time())  # the template must make a valid job
    now = time.time()
    return {
        "name": name,
        "cron": cron,
        "interval": float(interval) if interval is not None else None,
        "tz": tz,
        "job": template,
        "paused": False,
        "since": now,
        "last_tick": 0.0,
        "fired": 0,
        "skipped": 0,
        "last_job": None,
        "created": now,
    }


async def fire(node: Any, kv: dict[str, Any], now: float) -> str | None:
    """Fire schedule record ``kv`` if a tick is due; the job id (None: nothing fired, or
    another proposer fired that tick first)."""
    schedule = decode(kv["value"])
    if schedule["paused"]:
        return None
    tick = latest_tick(schedule, now)
    if tick is None or tick <= float(schedule["last_tick"]):
        return None
    previous = float(schedule["last_tick"]) or float(schedule["since"])
    job = new_job({**schedule["job"], "idempotency_key": None, "schedule": schedule["name"]}, now)
    job["tick"] = tick
    if schedule.get("interval"):
        missed = max(0, math.floor((tick - previous) / schedule["interval"]) - 1)
        schedule["skipped"] += missed
    schedule.update(last_tick=tick, last_job=job["id"], fired=schedule["fired"] + 1)
    result = await txn(
        node,
        [cmp(kv["key"], "mod_revision", "==", int(kv["mod_revision"]))],
        [
            put_op(kv["key"], encode(schedule)),
            put_op(keys.job(job["id"]), encode(job)),
            *enqueue_ops(job),
            state_event(node, job, ""),
        ],
    )
    return job["id"] if result["succeeded"] else None


async def fire_due(node: Any) -> list[str]:
    """Fire every due schedule once; the ids of the jobs submitted."""
    records, _, _ = await collect(node, keys.SCHED, most=limits.JOBS_MAX_SCHEDULES)
    now = time.time()
    fired = []
    for kv in records:
        job_id = await fire(node, kv, now)
        if job_id:
            fired.append(job_id)
    return fired


def _public(schedule: dict[str, Any]) -> dict[str, Any]:
    return dict(schedule)


async def schedule_add(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Add a schedule ``{name, cron | interval, tz?, queue, command | type+payload, …,
    replace?}`` → ``{name}``. ``already exists`` unless ``replace``."""
    schedule = _check_schedule(params)
    key = keys.sched(schedule["name"])
    count, _, _ = await collect(ctx.node, keys.SCHED, most=limits.JOBS_MAX_SCHEDULES + 1)
    if len(count) >= limits.JOBS_MAX_SCHEDULES:
        raise ResourceExhaustedError(
            f"the cluster has JOBS_MAX_SCHEDULES ({limits.JOBS_MAX_SCHEDULES}) schedules"
        )
    compares = [] if optional_bool(params, "replace") else [cmp(key, "version", "==", 0)]
    result = await txn(ctx.node, compares, [put_op(key, encode(schedule))], [range_op(key)])
    if not result["succeeded"]:
        raise InvalidArgumentError(
            f"schedule {schedule['name']!r} already exists (remove it, or add with replace)",
            field="name",
        )
    return {"name": schedule["name"]}


async def _load(ctx: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    name = keys.check_name(params.get("name"), "name")
    kv = await get(ctx.node, keys.sched(name))
    if kv is None:
        raise NotFoundError(f"no schedule {name!r}", field="name")
    schedule = decode(kv["value"])
    ctx.authority.require(f"jobs:admin:{schedule['job']['queue']}")
    return schedule, kv


async def schedule_list(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Every schedule the caller administers: ``{schedules: [...]}``."""
    records, _, _ = await collect(ctx.node, keys.SCHED, most=limits.JOBS_MAX_SCHEDULES)
    out = []
    for kv in records:
        schedule = decode(kv["value"])
        if ctx.authority.allows(f"jobs:admin:{schedule['job']['queue']}"):
            out.append(_public(schedule))
    return {"schedules": out}


async def schedule_get(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One schedule."""
    schedule, _ = await _load(ctx, params)
    return _public(schedule)


async def schedule_remove(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Remove a schedule (jobs it submitted stay): ``{name, removed}``."""
    schedule, kv = await _load(ctx, params)
    await txn(ctx.node, [], [delete_op(kv["key"])])
    return {"name": schedule["name"], "removed": True}


def _pauser(paused: bool) -> Any:
    async def handler(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        for _ in range(10):
            schedule, kv = await _load(ctx, params)
            if schedule["paused"] == paused:
                return {"name": schedule["name"], "paused": paused}
            schedule["paused"] = paused
            if not paused:  # ticks that passed while paused are skipped
                schedule["since"] = max(float(schedule["since"]), time.time())
            result = await txn(
                ctx.node,
                [cmp(kv["key"], "mod_revision", "==", int(kv["mod_revision"]))],
                [put_op(kv["key"], encode(schedule))],
            )
            if result["succeeded"]:
                return {"name": schedule["name"], "paused": paused}
        raise InvalidArgumentError("the schedule kept changing; try again", field="name")

    handler.__doc__ = "Resume a schedule." if not paused else "Pause a schedule."
    return handler


def schedule_handlers() -> dict[str, Any]:
    """The ``jobs.schedule.*`` handlers by verb."""
    return {
        "add": schedule_add,
        "list": schedule_list,
        "get": schedule_get,
        "remove": schedule_remove,
        "pause": _pauser(True),
        "resume": _pauser(False),
    }
