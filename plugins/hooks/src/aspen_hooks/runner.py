"""The runner: the one place in the cluster where handlers run.

A :class:`Runner` holds a fencing token (the ``create_revision`` of the runner key it
won). It keeps one :class:`HandlerWorker` per enabled handler, restarting a worker when
its spec changes (see :mod:`aspen_hooks.worker`). Each worker reads its events from the
KV history (a watch from its saved cursor), runs the handler for each matching event in
order, retries with exponential backoff, dead-letters what still fails, and saves cursor
and counters with a transaction that holds only while this runner still owns the token
and the handler still exists — a deposed runner cannot move a cursor. So under normal
operation an event runs once; across a runner change, events after the last saved cursor
run again (each with the same idempotency key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import msgpack

from aspen_hooks import kvops
from aspen_hooks.executors import ExecutorSettings
from aspen_hooks.keys import HANDLERS, RUNNER, prefix_end
from aspen_hooks.limits import HOOKS_MAX_HANDLERS
from aspen_hooks.model import HandlerSpec
from aspen_hooks.worker import HandlerWorker, RunnerLost

__all__ = ["Runner", "RunnerLost"]


@dataclass(frozen=True, slots=True)
class _Installed:
    spec: HandlerSpec
    scope: anyio.CancelScope
    done: anyio.Event


class Runner:
    """Runs every enabled handler while it holds ``token``."""

    def __init__(self, node: Any, token: int, settings: ExecutorSettings) -> None:
        self.node = node
        self.token = token
        self.settings = settings
        self.workers: dict[str, HandlerWorker] = {}
        self._installed: dict[str, _Installed] = {}

    async def metrics(self, names: list[str] | None) -> list[dict[str, Any]]:
        """Live figures of the running workers (or of ``names``)."""
        revision = await kvops.revision(self.node, serializable=True)
        out = []
        for name, worker in sorted(self.workers.items()):
            if names is None or name in names:
                figures = worker.state.metrics(name, revision)
                figures["lag"] = worker.lag(revision)
                out.append(figures)
        return out

    def fence(self) -> dict[str, Any]:
        """The compare that holds while this runner owns the cluster's runner key."""
        return kvops.cmp_create(RUNNER, self.token)

    async def run(self) -> None:
        """Start workers for the stored handlers and follow changes until cancelled (or
        :class:`RunnerLost` ends it)."""
        records, revision = await kvops.scan(self.node, HANDLERS, most=HOOKS_MAX_HANDLERS)
        async with anyio.create_task_group() as tg:
            for record in records:
                self._install(tg, record["key"], record)
            params = {
                "key": HANDLERS,
                "end": prefix_end(HANDLERS),
                "start_revision": revision + 1,
            }
            async for item in self.node.stream("kv.watch", params):
                for event in item.get("events") or ():
                    kv = event["kv"]
                    if event["type"] == "put":
                        kv = {**kv, "value": _decode(kv["value"])}
                        self._install(tg, kv["key"], kv)
                    else:
                        self._install(tg, kv["key"], None)

    def _install(self, tg: anyio.abc.TaskGroup, key: bytes, record: dict[str, Any] | None) -> None:
        """(Re)start the worker of the handler at ``key`` (``record`` None: removed). A new
        worker starts only after the old one has stopped and saved its progress."""
        name = key[len(HANDLERS) :].decode()
        old = self._installed.pop(name, None)
        old_worker = self.workers.pop(name, None)
        if old is not None:
            if old_worker is not None:
                old_worker.stop(old.scope)
            else:
                old.scope.cancel()
        if record is None or record["value"] is None:
            return
        spec = HandlerSpec(**record["value"])
        installed = _Installed(spec, anyio.CancelScope(), anyio.Event())
        self._installed[name] = installed
        worker = (
            HandlerWorker(self, spec, record["create_revision"], record["mod_revision"])
            if spec.enabled
            else None
        )
        if worker is not None:
            self.workers[name] = worker
        after = old.done if old is not None else None
        tg.start_soon(_run_worker, installed, worker, after, name=f"hooks:{name}")


async def _run_worker(
    installed: _Installed, worker: HandlerWorker | None, after: anyio.Event | None
) -> None:
    try:
        if after is not None:
            with anyio.CancelScope(shield=True):
                await after.wait()  # never start while the old worker still saves
        with installed.scope:
            if worker is not None:
                await worker.run()
    finally:
        installed.done.set()


def _decode(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw)
    except (ValueError, msgpack.UnpackException):
        return None
