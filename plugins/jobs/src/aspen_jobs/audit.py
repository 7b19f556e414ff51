"""The audit records of job runs: who ran what, its exit and duration, one per attempt
(written with the attempt's completion), and the upkeep's trim to ``JOBS_MAX_AUDIT_RECORDS``."""

from __future__ import annotations

from typing import Any

from aspen.rpc.params import optional_int
from aspen_coord.store import collect
from aspen_jobs import keys, limits
from aspen_jobs.model import decode

__all__ = ["jobs_audit", "trim_audit"]


async def jobs_audit(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The newest audit records (``limit``, default 100) of queues the caller administers:
    ``{records: [{job, queue, attempt, who, what, exit_code, ok, error, duration, time}]}``."""
    most = optional_int(params, "limit", 100, min=1, max=limits.JOBS_MAX_LIST)
    records, _, _ = await collect(ctx.node, keys.AUDIT, most=limits.JOBS_MAX_AUDIT_RECORDS + 100)
    out = []
    for kv in reversed(records):
        record = decode(kv["value"])
        if ctx.authority.allows(f"jobs:admin:{record['queue']}"):
            out.append(record)
        if len(out) >= most:
            break
    return {"records": out}


async def trim_audit(node: Any) -> int:
    """Drop the oldest audit records beyond ``JOBS_MAX_AUDIT_RECORDS``; how many."""
    records, _, _ = await collect(node, keys.AUDIT, most=limits.JOBS_MAX_AUDIT_RECORDS + 100)
    extra = len(records) - limits.JOBS_MAX_AUDIT_RECORDS
    if extra <= 0:
        return 0
    end = records[extra - 1]["key"] + b"\x00"
    await node.call("kv.delete", {"key": keys.AUDIT, "end": end})
    return extra
