"""Calling the leader from inside a node: :class:`LeaderCaller`, for plugins that write
from any node.

``node.call("kv.txn", …)`` on a follower raises ``not_leader`` naming the leader's client
endpoint; :meth:`LeaderCaller.call` then sends the same call there, over a client that
presents the node's token, so a request served by a follower still ends in one Raft commit
on the leader. A plugin that forwards its *own* request instead (a different method, a
``forwarded`` flag) catches ``NotLeaderError`` and asks :meth:`LeaderCaller.client_for` for
the leader's client. Clients are kept per endpoint (at most ``max_clients``) until
:meth:`LeaderCaller.close`, which a plugin calls in ``aspen_shutdown``::

    leader = LeaderCaller(node)                     # in aspen_startup
    await leader.call("kv.put", {"key": k, "value": v})
    await leader.close()                            # in aspen_shutdown
"""

from __future__ import annotations

import logging
from typing import Any

from aspen.client.aclient import AsyncClient, aconnect
from aspen.errors import NotLeaderError, UnavailableError
from aspen.limits import LEADER_MAX_CLIENTS

__all__ = ["LeaderCaller"]

log = logging.getLogger(__name__)


class LeaderCaller:
    """Calls RPC methods of the cluster's leader from ``node`` (an ``aspen.NodeAPI``),
    wherever the node stands."""

    def __init__(self, node: Any, *, max_clients: int = LEADER_MAX_CLIENTS) -> None:
        self.node = node
        #: Leader connections kept at most (all are closed when one more is needed).
        self.max_clients = max_clients
        self._clients: dict[str, AsyncClient] = {}

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call ``method`` on this node, or on the leader it names when it cannot commit
        (``unavailable`` while no leader is known)."""
        try:
            return await self.node.call(method, params)
        except NotLeaderError as exc:
            client = await self.client_for(exc)
            return await client.call(method, params)

    async def client_for(self, exc: NotLeaderError) -> AsyncClient:
        """A connected client to the leader ``exc`` names (kept for later calls);
        ``unavailable`` when it names none (an election is under way)."""
        leader = exc.details.get("leader")
        if not isinstance(leader, str) or not leader:
            raise UnavailableError(
                "this node is not the leader and no leader is known yet; retry",
                **exc.details,
            ) from exc
        client = self._clients.get(leader)
        if client is None:
            if len(self._clients) >= self.max_clients:
                await self.close()
            client = aconnect(leader, token=self.node.token)
            self._clients[leader] = client
        await client.connect()
        return client

    async def close(self) -> None:
        """Close the connections kept to leaders (a failure to close one is only logged)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            try:
                await client.aclose()
            except Exception:  # closing must not fail a shutdown
                log.debug("closing a connection to the leader failed", exc_info=True)
