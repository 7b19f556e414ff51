"""Node-to-node transfer of blobs.

Bytes: a node reads another member's replica with a *fetch* over the peer transport
(mutual TLS with the nodes' certificates, membership checked, a connection of its own per
fetch, paced by TCP; :meth:`aspen.transport.peer.PeerTransport.fetch`), never through the
Raft log. The serving member verifies every piece against its sums before sending it; a
member that keeps a copy re-hashes the whole blob before it commits it.

A put's copies are pushed the other way while the put streams in, also over the peer
transport (:mod:`aspen.blobs.tee`).

Requests: the two small calls one member makes of another (``blob.fetch`` "copy this blob
from that member", ``blob.ping``) go over a client connection to that member's client
endpoint with the node's token.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aspen.client.aclient import AsyncClient
from aspen.errors import UnavailableError
from aspen.limits import BLOB_COPY_TIMEOUT_SECONDS, CONNECT_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from aspen.node.node import Node

__all__ = ["PeerClients"]

log = logging.getLogger(__name__)


class PeerClients:
    """One client per other member, opened on first use and kept."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._clients: dict[str, AsyncClient] = {}

    def endpoint(self, node_id: str) -> str | None:
        """The client endpoint of member ``node_id`` (``None``: not a member)."""
        member = self.node.parts.cluster.members().get(node_id)
        return None if member is None else member.get("client")

    async def client(self, node_id: str) -> AsyncClient:
        """A connected client of member ``node_id``."""
        client = self._clients.get(node_id)
        endpoint = self.endpoint(node_id)
        if endpoint is None:
            raise UnavailableError(f"node {node_id} is not a member", node=node_id)
        if client is None or client.endpoints != [endpoint]:
            client = AsyncClient(
                endpoint,
                self.node.token,
                timeout=BLOB_COPY_TIMEOUT_SECONDS,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                failover_timeout=0,
            )
            self._clients[node_id] = client
        await client.connect()
        return client

    async def call(self, node_id: str, method: str, params: dict[str, Any], timeout: float) -> Any:
        """Call ``method`` on member ``node_id``."""
        client = await self.client(node_id)
        return await client.call(method, params, timeout=timeout)

    async def read(
        self, node_id: str, digest: str, offset: int, length: int
    ) -> AsyncIterator[bytes]:
        """Yield ``[offset, offset + length)`` of ``node_id``'s own replica of ``digest``."""
        header = {"kind": "blob", "hash": digest, "offset": offset, "length": length}
        async for piece in self.node.parts.cluster.transport.fetch(node_id, None, header):  # type: ignore[union-attr]
            yield piece

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()
