"""The full node behind an RPC context, for the core's own handlers.

Plugins see ``ctx.node`` as :class:`aspen.NodeAPI`; the core's handlers (``kv.*``, ``lease.*``,
``cluster.*``) also use the node's internals (Raft, storage, leases), so they ask for the
concrete :class:`~aspen.node.node.Node` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from aspen.node.node import Node
    from aspen.rpc.context import RpcContext

__all__ = ["node_of"]


def node_of(ctx: RpcContext) -> Node:
    """The :class:`~aspen.node.node.Node` serving ``ctx`` (core handlers run on a real node)."""
    return cast("Node", ctx.node)
