"""The client protocol server (docs/protocol.md), its method registry and param validators.

Names are imported on first use, so ``aspen.rpc.handler`` (what :mod:`aspen.plugins.types`
re-exports) stays cheap to import and free of the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aspen.lazy import lazy_getattr

if TYPE_CHECKING:
    from aspen.rpc.context import RpcContext
    from aspen.rpc.handler import RpcHandler
    from aspen.rpc.registry import DuplicateMethodError, MethodRegistry, check_method_name
    from aspen.rpc.server import RpcServer

__all__ = [
    "DuplicateMethodError",
    "MethodRegistry",
    "RpcContext",
    "RpcHandler",
    "RpcServer",
    "check_method_name",
]

_HOME = {
    "DuplicateMethodError": "aspen.rpc.registry",
    "MethodRegistry": "aspen.rpc.registry",
    "RpcContext": "aspen.rpc.context",
    "RpcHandler": "aspen.rpc.handler",
    "RpcServer": "aspen.rpc.server",
    "check_method_name": "aspen.rpc.registry",
}


__getattr__ = lazy_getattr(__name__, _HOME)
