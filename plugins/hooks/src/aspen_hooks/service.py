"""One node's part of the hooks plugin: when this node is the Raft leader, it journals
``raft.*`` / ``cluster.*`` events and campaigns to be the cluster's runner.

Election: the runner key ``/_aspen/hooks/runner`` is created under a lease of
``HOOKS_RUNNER_LEASE_SECONDS`` only if absent; the winner's fencing token is the key's
``create_revision`` (it grows with every new runner). The runner keeps its lease alive
while it is the leader; when its node dies or loses leadership, the lease runs out, the
key goes with it, and the next leader's node takes over. Keeping the runner on the
leader's node makes its cursor commits local proposals.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio

from aspen.errors import AspenError
from aspen_hooks import kvops, limits
from aspen_hooks.executors import ExecutorSettings
from aspen_hooks.journal import Journal
from aspen_hooks.keys import RUNNER
from aspen_hooks.runner import Runner, RunnerLost

__all__ = ["HooksService"]

log = logging.getLogger(__name__)


class HooksService:
    """Supervises journal, election and runner on one node (``plugin_state("hooks")``)."""

    def __init__(self, node: Any, settings: ExecutorSettings) -> None:
        self.node = node
        self.settings = settings
        self.runner: Runner | None = None
        self.journal = Journal(node)
        self._nudged = anyio.Event()
        #: Set when the node stops (no more writes: leave the lease to run out).
        self.stopping = False

    def nudge(self) -> None:
        """Look again now (a leader or membership change arrived on the bus)."""
        self._nudged.set()

    async def run(self) -> None:
        """Supervise until the node stops: journal and election side by side."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._supervise, self.journal.reconcile, "journal")
            tg.start_soon(self._supervise, self._campaign, "election")

    async def _supervise(self, step: Any, what: str) -> None:
        """Run ``step`` whenever this node leads, every interval or nudge; a failing step is
        logged and tried again, never allowed to take the node down."""
        while True:
            if self.node.is_leader:
                try:
                    await step()
                except AspenError as exc:  # lost leadership, timeouts: look again soon
                    log.debug("hooks: %s: %s", what, exc)
                except Exception:
                    log.exception("hooks: %s failed", what)
            with anyio.move_on_after(limits.HOOKS_SUPERVISE_INTERVAL_SECONDS):
                await self._nudged.wait()
            if self._nudged.is_set():
                self._nudged = anyio.Event()

    async def _campaign(self) -> None:
        """Try to become the runner; if won, run until the role is lost."""
        if await kvops.get(self.node, RUNNER, serializable=True) is not None:
            return  # someone runs (or a dead runner's lease has yet to run out)
        lease = await self.node.call("lease.grant", {"ttl": limits.HOOKS_RUNNER_LEASE_SECONDS})
        lease_id = lease["id"]
        me = {"node_id": self.node.id, "endpoint": self.node.endpoint}
        result = await kvops.txn(
            self.node,
            [kvops.cmp_create(RUNNER, 0)],
            [kvops.put_op(RUNNER, me, lease=lease_id)],
        )
        if not result["succeeded"]:
            await self._revoke(lease_id)
            return
        token = result["header"]["revision"]
        log.info("hooks: this node is the runner (token %d)", token)
        runner = Runner(self.node, token, self.settings)
        self.runner = runner
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_alive, lease_id, tg.cancel_scope)
                await runner.run()
        except* (RunnerLost, AspenError) as lost:
            log.warning("hooks: runner role ended: %s", lost.exceptions[0])
        finally:
            self.runner = None
            if not self.stopping:  # a stopping node cannot commit; the lease runs out
                with anyio.move_on_after(limits.HOOKS_RUNNER_LEASE_SECONDS, shield=True):
                    await self._revoke(lease_id)

    async def _keep_alive(self, lease_id: int, scope: anyio.CancelScope) -> None:
        """Renew the runner lease; give the role up when not leader or the lease is gone."""
        interval = limits.HOOKS_RUNNER_LEASE_SECONDS / 3
        while True:
            await anyio.sleep(interval)
            if not self.node.is_leader:
                break
            try:
                await self.node.call("lease.keepalive", {"id": lease_id})
            except AspenError:
                break
        scope.cancel()

    async def _revoke(self, lease_id: int) -> None:
        """Drop the lease (and with it the runner key) if this node still can."""
        with contextlib.suppress(AspenError):  # not leader any more: it runs out on its own
            await self.node.call("lease.revoke", {"id": lease_id})
