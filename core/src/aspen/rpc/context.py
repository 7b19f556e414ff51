"""What an RPC handler knows about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aspen.auth.access import ROOT, Authority

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
