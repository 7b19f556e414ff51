"""What an RPC handler knows about the request it serves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aspen.auth.access import ROOT, Authority
from aspen.errors import ResourceExhaustedError

if TYPE_CHECKING:
    from aspen.api import NodeAPI

__all__ = ["RpcContext"]


@dataclass(frozen=True, slots=True)
class RpcContext:
    """Per-request context passed to every handler as its first argument.

    ``node`` is the :class:`aspen.NodeAPI` of the serving node; ``peer`` the client's
    address; ``identity`` who the token belongs to (``"root"`` for the root token,
    ``"token:<id>"`` for a capability token, ``"node"`` for the node's own calls);
    ``connection_id`` is unique per client connection on this node; ``open_streams`` counts
    the connection's running streams by method (e.g. ``kv.watch``, bounded by
    ``MAX_WATCHES_PER_CONNECTION``), shared by every request of the connection;
    ``authority`` is what the connection's token allows (:mod:`aspen.auth.access`): a
    handler that needs a finer check than its declaration calls
    ``ctx.authority.require("secrets:read:<path>")``.
    """

    node: NodeAPI
    peer: str
    identity: str
    connection_id: int
    open_streams: dict[str, int] = field(default_factory=dict, compare=False)
    authority: Authority = field(default=ROOT, compare=False)

    @contextmanager
    def stream_slot(self, method: str, most: int, bound: str) -> Iterator[None]:
        """Count one running ``method`` stream of this connection while the block runs;
        ``resource_exhausted`` naming ``bound`` when ``most`` already run."""
        streams = self.open_streams
        if streams.get(method, 0) >= most:
            raise ResourceExhaustedError(
                f"too many {method} streams on this connection ({bound} = {most}); cancel "
                "one, or open another connection",
                limit=most,
            )
        streams[method] = streams.get(method, 0) + 1
        try:
            yield
        finally:
            streams[method] -= 1
