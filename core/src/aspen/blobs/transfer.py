"""Node-to-node transfer of blobs, all of it over the peer transport (mutual TLS with the
nodes' certificates, membership checked; :class:`aspen.transport.peer.PeerTransport`),
never through the Raft log and never through a client port.

Bytes: a node reads another member's replica with a *fetch* (a connection of its own per
fetch, paced by TCP; :meth:`~aspen.transport.peer.PeerTransport.fetch`). The serving member
verifies every piece against its sums before sending it; a member that keeps a copy
re-hashes the whole blob before it commits it. A put's copies are pushed the other way while
the put streams in (:mod:`aspen.blobs.tee`).

Instructions: the two small calls one member makes of another (``fetch`` "copy this blob
from that member", ``ping``) are peer streams without chunks whose header is
``{"kind": "blob-call", "method", "params"}``; the receiver answers with
:meth:`aspen.blobs.service.BlobService.serve_call`'s result. Only a member's certificate
can make them: no client token, the root token included, reaches them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from aspen.node.node import Node
    from aspen.transport.peer import PeerTransport

__all__ = ["CALL_KIND", "PeerClients"]

log = logging.getLogger(__name__)

#: The ``kind`` of a peer stream header carrying a member's blob instruction.
CALL_KIND = "blob-call"


async def _no_chunks() -> AsyncIterator[bytes]:
    """The (empty) body of an instruction's peer stream."""
    return
    yield b""  # pragma: no cover - makes this an async generator


class PeerClients:
    """What this node asks of the other members about blobs, over the peer transport."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def _transport(self) -> PeerTransport:
        transport = self.node.parts.cluster.transport
        assert transport is not None, "blob transfers need a cluster node"
        return transport

    async def call(self, node_id: str, method: str, params: dict[str, Any], timeout: float) -> Any:
        """Ask member ``node_id`` to do ``method`` (``fetch`` or ``ping``) within ``timeout``
        seconds (past it: the builtin ``TimeoutError``); its error is raised here."""
        header = {"kind": CALL_KIND, "method": method, "params": params}
        with anyio.fail_after(timeout):
            return await self._transport.send_stream(
                node_id, None, header, _no_chunks(), result_timeout=timeout
            )

    async def read(
        self, node_id: str, digest: str, offset: int, length: int
    ) -> AsyncIterator[bytes]:
        """Yield ``[offset, offset + length)`` of ``node_id``'s own replica of ``digest``."""
        header = {"kind": "blob", "hash": digest, "offset": offset, "length": length}
        async for piece in self._transport.fetch(node_id, None, header):
            yield piece

    async def aclose(self) -> None:
        """Nothing to close: every call and fetch has a connection of its own."""
