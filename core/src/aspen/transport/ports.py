"""Where peer ports sit relative to client ports, for messages and the local dev cluster.

A node's peer port defaults to its client port + 1 (``aspen.node.config``); the nodes of
``aspen dev up`` use ``base + PEER_PORT_OFFSET + i``. Kept below the node so that the
transport can name these conventions in its errors without importing the node.
"""

from __future__ import annotations

__all__ = ["PEER_PORT_OFFSET"]

#: Peer port of ``aspen dev up`` node i = base port + PEER_PORT_OFFSET + i.
PEER_PORT_OFFSET = 100
