"""The ``jobs.*`` RPC methods and the capability each declares.

``jobs:submit:<queue>`` submits to a queue and reads, cancels and retries its jobs;
``jobs:work:<queue>`` leases and completes its jobs; ``jobs:admin:<queue>`` does both
and manages the schedules submitting to it (and reads the audit records). Methods naming
a job by id check its queue inside the handler (the id alone does not tell it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aspen.plugins.types import RpcHandler
from aspen_jobs import audit, jobs, keys, leasing
from aspen_jobs.schedules import schedule_handlers

__all__ = ["rpc_handlers"]


def _none(params: dict[str, Any]) -> list[Any]:
    """No name in the request: the handler checks the job's queue itself."""
    return []


def _queue(operation: str) -> Callable[[dict[str, Any]], list[Any]]:
    def scope(params: dict[str, Any]) -> list[Any]:
        return [f"jobs:{operation}:{keys.check_name(params.get('queue'), 'queue')}"]

    return scope


def _optional_queue(params: dict[str, Any]) -> list[Any]:
    queue = params.get("queue")
    return [] if queue is None else _queue("submit")(params)


def _queues(params: dict[str, Any]) -> list[Any]:
    return [f"jobs:work:{q}" for q in leasing.queues_of(params)]


def _handler(name: str, func: Any, operation: str, scope: Any = _none) -> RpcHandler:
    return RpcHandler(
        f"jobs.{name}",
        func,
        doc=(func.__doc__ or "").strip().split("\n")[0],
        capability=f"jobs:{operation}",
        scope=scope,
    )


def rpc_handlers() -> list[RpcHandler]:
    """Every ``jobs.*`` method."""
    handlers = [
        _handler("submit", jobs.jobs_submit, "submit", _queue("submit")),
        _handler("get", jobs.jobs_get, "submit"),
        _handler("result", jobs.jobs_result, "submit"),
        _handler("list", jobs.jobs_list, "submit", _optional_queue),
        _handler("stats", jobs.jobs_stats, "submit", _optional_queue),
        _handler("cancel", jobs.jobs_cancel, "submit"),
        _handler("retry", jobs.jobs_retry, "submit"),
        _handler("worker.register", leasing.worker_register, "work"),
        _handler("worker.heartbeat", leasing.worker_heartbeat, "work"),
        _handler("worker.lease", leasing.worker_lease, "work", _queues),
        _handler("worker.progress", leasing.worker_progress, "work"),
        _handler("worker.complete", leasing.worker_complete, "work"),
        _handler("audit", audit.jobs_audit, "admin"),
    ]
    for verb, func in schedule_handlers().items():
        scope = _queue("admin") if verb == "add" else _none
        handlers.append(_handler(f"schedule.{verb}", func, "admin", scope))
    return handlers
