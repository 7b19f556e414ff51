"""Writes from any node: proposed locally on the leader, forwarded to it from a follower.

``node.call("kv.txn", …)`` on a follower raises ``not_leader`` naming the leader's client
endpoint; :class:`LeaderCaller` then sends the same call there with the node's token, so an
HTTP push served by a follower still ends in one Raft commit.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aspen.errors import NotLeaderError, UnavailableError
from aspen_forge import limits

__all__ = ["LeaderCaller"]


class LeaderCaller:
    """Calls core write methods on the leader, wherever this node stands."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._clients: dict[str, Any] = {}

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call ``method`` here, or on the leader this node names when it cannot commit
        (``unavailable`` while no leader is known)."""
        try:
            return await self.node.call(method, params)
        except NotLeaderError as exc:
            leader = exc.details.get("leader")
            if not isinstance(leader, str) or not leader:
                raise UnavailableError(
                    "this node is not the leader and no leader is known yet; retry",
                    **exc.details,
                ) from exc
            client = await self._client(leader)
            return await client.call(method, params)

    async def _client(self, endpoint: str) -> Any:
        client = self._clients.get(endpoint)
        if client is None:
            from aspen.client import aconnect

            if len(self._clients) >= limits.MAX_FORWARD_CLIENTS:
                await self.close()
            client = aconnect(endpoint, token=self.node.token)
            self._clients[endpoint] = client
        await client.connect()
        return client

    async def close(self) -> None:
        """Close the connections kept to leaders."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):  # closing a dead connection
                await client.aclose()
