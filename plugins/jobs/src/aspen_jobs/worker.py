"""The standalone worker: ``aspen jobs worker --queues q1,q2 --concurrency N``.

It registers a worker lease, runs ``concurrency`` slots that each lease a job (a long
poll, retried under the same claim after an error), run it with its type's callable and
report the end, and a heartbeat that keeps the lease, stops jobs cancelled (or lost)
meanwhile and hands back jobs leased to it in an answer it never used. On SIGTERM (or
SIGINT) it stops leasing, lets running jobs finish for ``drain`` seconds, hands back the
rest (``release``: queued again, their processes stopped) and revokes its lease.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import os
import signal
import socket
import time
from typing import Any

import anyio
import anyio.to_thread

import aspen
from aspen.errors import AspenError, CompareFailedError, NotFoundError
from aspen_jobs import limits
from aspen_jobs.shell import ShellPolicy
from aspen_jobs.types import JobContext, JobFailed, load_types

__all__ = ["Worker"]

log = logging.getLogger(__name__)

#: Seconds one lease call waits for a job before asking again.
LEASE_WAIT_SECONDS = 5.0
#: Seconds a worker keeps retrying a report through a failover before giving up on it.
REPORT_RETRY_SECONDS = 60.0
#: Fences remembered (see ``Worker._fences``).
KNOWN_FENCES = 4096
#: Pause after an unexpected error before a slot asks again.
ERROR_PAUSE_SECONDS = 0.5


class _Running:
    """One job this worker runs: its fence and the scope that stops it."""

    def __init__(self, job: dict[str, Any], fence: int) -> None:
        self.job, self.fence = job, fence
        self.scope = anyio.CancelScope()
        self.release = False  # stopped by the worker's shutdown: hand it back
        self.lost = False  # cancelled or no longer ours: report nothing


class Worker:
    """A worker process's loop (see the module docstring)."""

    def __init__(
        self,
        endpoints: str,
        token: str,
        queues: list[str],
        *,
        concurrency: int = 1,
        policy: ShellPolicy | None = None,
        name: str | None = None,
        ttl: int = limits.JOBS_DEFAULT_WORKER_TTL_SECONDS,
        drain: float = 10.0,
    ) -> None:
        self.endpoints, self.token, self.queues = endpoints, token, queues
        self.concurrency = concurrency
        self.policy = policy or ShellPolicy()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.ttl, self.drain = ttl, drain
        self.types = load_types()
        self.lease = 0
        self.running: dict[str, _Running] = {}
        self.stopping = anyio.Event()
        self.client: Any = None
        #: Claims of lease calls in flight.
        self._claims: set[str] = set()
        #: Fences of the attempts this worker got (the latest ``KNOWN_FENCES``): a job the
        #: heartbeat reports as unknown but that is one of these was run here, not lost.
        self._fences: collections.deque[int] = collections.deque(maxlen=KNOWN_FENCES)
        #: Scopes of lease calls waiting for a job (cancelled by :meth:`stop`).
        self._waiting: set[anyio.CancelScope] = set()
        self._group: Any = None
        #: Counts for the log line at exit.
        self.done = 0

    async def call(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """Call ``method`` on the cluster."""
        return await self.client.call(method, params, timeout=timeout)

    async def run(self) -> None:
        """Work until :meth:`stop` (or SIGTERM / SIGINT with :meth:`run_until_signal`)."""
        async with aspen.aconnect(self.endpoints, token=self.token) as client:
            self.client = client
            await self._register()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat_loop)
                async with anyio.create_task_group() as slots:
                    self._group = slots
                    for _ in range(self.concurrency):
                        slots.start_soon(self._slot)
                    await self.stopping.wait()
                    await self._drain()
                    await self._hand_back_unknown()
                tg.cancel_scope.cancel()
            shield, bound = anyio.CancelScope(shield=True), anyio.move_on_after(5)
            with shield, bound, contextlib.suppress(AspenError):  # else it expires by itself
                await self.call("lease.revoke", {"id": self.lease})

    async def run_until_signal(self) -> None:
        """:meth:`run`, stopping cleanly on SIGTERM or SIGINT."""
        async with anyio.create_task_group() as tg:

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                    async for _ in received:
                        self.stop()
                        return

            tg.start_soon(signals)
            await self.run()
            tg.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop leasing; finish or hand back what runs."""
        self.stopping.set()
        for scope in list(self._waiting):
            scope.cancel()

    async def _register(self) -> None:
        got = await self.call("jobs.worker.register", {"ttl": self.ttl, "worker": self.name})
        self.lease = int(got["lease"])
        log.info("jobs worker %s: lease %x, queues %s", self.name, self.lease, self.queues)

    async def _drain(self) -> None:
        """Give running jobs ``drain`` seconds, then stop and hand back the rest."""
        with anyio.move_on_after(self.drain):
            while self.running:
                await anyio.sleep(0.05)
        for run in list(self.running.values()):
            run.release = True
            run.scope.cancel()
        while self.running:
            await anyio.sleep(0.05)

    async def _hand_back_unknown(self) -> None:
        """Before leaving: hand back jobs a cancelled lease call got for us."""
        with contextlib.suppress(AspenError):
            got = await self.call("jobs.worker.heartbeat", {"lease": self.lease, "jobs": []})
            for item in got["unknown"]:
                if item["fence"] not in self._fences:
                    await self._hand_back(item)

    async def _slot(self) -> None:
        """Lease, run, report; until the worker stops. A lease call that failed is
        retried under the same claim, so a job leased in a lost answer is not orphaned."""
        while not self.stopping.is_set():
            claim = os.urandom(8).hex()
            self._claims.add(claim)
            got: dict[str, Any] = {}
            with anyio.CancelScope() as scope:
                self._waiting.add(scope)
                try:
                    while not got and not self.stopping.is_set():
                        got = await self._lease_call(claim)
                finally:
                    self._waiting.discard(scope)
            # no await from here to _run's registration: the heartbeat sees it either
            # as a claim in flight or as a running job
            self._claims.discard(claim)
            if got.get("job") is not None:
                await self._run(got["job"], int(got["fence"]))

    async def _lease_call(self, claim: str) -> dict[str, Any]:
        """One lease call (``{}`` after an error, to try again with the same claim)."""
        try:
            got: dict[str, Any] = await self.call(
                "jobs.worker.lease",
                {
                    "queues": self.queues,
                    "lease": self.lease,
                    "worker": self.name,
                    "wait": LEASE_WAIT_SECONDS,
                    "claim": claim,
                },
                timeout=LEASE_WAIT_SECONDS + 15,
            )
            return got
        except AspenError as exc:  # a lost lease is renewed by the heartbeat
            log.info("jobs worker: lease call failed: %s", exc)
            await anyio.sleep(ERROR_PAUSE_SECONDS)
            return {}

    async def _run(self, job: dict[str, Any], fence: int) -> None:
        """Run one leased job and report its end."""
        run = self.running[job["id"]] = _Running(job, fence)
        self._fences.append(fence)
        await self._execute_and_report(run)

    async def _execute_and_report(self, run: _Running) -> None:
        job = run.job
        ctx = JobContext(job=job, policy=self.policy, report=self._reporter(run))
        started = time.monotonic()
        report: dict[str, Any] = {"ok": False}
        try:
            with run.scope:
                report = await self._execute(ctx)
        finally:
            self.running.pop(job["id"], None)
        report["duration"] = time.monotonic() - started
        if run.lost:
            return
        if run.scope.cancelled_caught and run.release:
            report = {"release": True, "error": "released: the worker stopped"}
        await self._report(run, report)

    async def _execute(self, ctx: JobContext) -> dict[str, Any]:
        """Run ``ctx.job`` with its type; the report for ``jobs.worker.complete``."""
        kind = ctx.job["type"]
        func = self.types.get(kind)
        if func is None:
            known = ", ".join(sorted(self.types)) or "none"
            return {
                "ok": False,
                "permanent": True,
                "error": f"no job type {kind!r} on worker {self.name} (it has: {known})",
            }
        try:
            if inspect.iscoroutinefunction(func):
                value = await func(ctx)
            else:
                value = await anyio.to_thread.run_sync(func, ctx, abandon_on_cancel=True)
        except JobFailed as exc:
            return {
                "ok": False,
                "error": str(exc),
                "exit_code": exc.exit_code,
                "stdout": exc.stdout,
                "stderr": exc.stderr,
                "permanent": exc.permanent,
                "command": exc.command,
            }
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if kind == "shell" and isinstance(value, dict):
            return {"ok": True, **{k: v for k, v in value.items() if k != "duration"}}
        return {"ok": True, "exit_code": 0, "output": value}

    def _reporter(self, run: _Running) -> Any:
        async def report(progress: Any) -> None:
            await self.call(
                "jobs.worker.progress",
                {
                    "id": run.job["id"],
                    "lease": self.lease,
                    "fence": run.fence,
                    "progress": progress,
                },
            )

        return report

    async def _report(self, run: _Running, report: dict[str, Any]) -> None:
        """Send the end of ``run``, retrying through a failover; a fenced answer means
        the job is no longer ours (lost, cancelled, or this very report already landed)."""
        params = {"id": run.job["id"], "lease": self.lease, "fence": run.fence, **report}
        deadline = time.monotonic() + REPORT_RETRY_SECONDS
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    await self.call("jobs.worker.complete", params)
                self.done += 1
                return
            except CompareFailedError as exc:  # FencedError over the wire
                log.info("jobs worker: result of %s refused: %s", run.job["id"], exc)
                return
            except AspenError as exc:
                if time.monotonic() > deadline or isinstance(exc, NotFoundError):
                    log.warning("jobs worker: could not report %s: %s", run.job["id"], exc)
                    return
                await anyio.sleep(ERROR_PAUSE_SECONDS)

    async def _heartbeat_loop(self) -> None:
        """Keep the lease; stop lost jobs; adopt jobs leased to us in a lost answer."""
        interval = min(limits.JOBS_HEARTBEAT_SECONDS, self.ttl / 3)
        while True:
            await anyio.sleep(interval)
            try:
                got = await self.call(
                    "jobs.worker.heartbeat", {"lease": self.lease, "jobs": list(self.running)}
                )
            except NotFoundError:  # our lease expired: our jobs are being retried elsewhere
                for run in list(self.running.values()):
                    run.lost = True
                    run.scope.cancel()
                try:
                    await self._register()
                except AspenError as exc:
                    log.info("jobs worker: re-register failed: %s", exc)
                continue
            except AspenError as exc:
                log.info("jobs worker: heartbeat failed: %s", exc)
                continue
            for job_id in got["lost"]:
                lost = self.running.get(job_id)
                if lost is not None:
                    lost.lost = True
                    lost.scope.cancel()
            for item in got["unknown"]:
                known = item["fence"] in self._fences or item["claim"] in self._claims
                if not known and item["id"] not in self.running:
                    self._group.start_soon(self._hand_back, item)

    async def _hand_back(self, item: dict[str, Any]) -> None:
        """Give back a job leased to this worker in an answer it never used."""
        run = _Running({"id": item["id"]}, int(item["fence"]))
        await self._report(run, {"release": True, "error": "released: lease answer lost"})
