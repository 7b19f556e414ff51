"""aspen.node: the node (storage, Raft, RPC and plugins wired together).

Plugins use only :class:`NodeAPI` (also exported as ``aspen.NodeAPI``); the rest of this
package is the core's own.
"""

from __future__ import annotations

from aspen.api import NodeAPI

__all__ = ["NodeAPI"]
