"""The client protocol server (docs/protocol.md), its method registry and param validators.

Names are imported on first use, so ``aspen.rpc.handler`` (what :mod:`aspen.plugins.types`
re-exports) stays cheap to import and free of the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "DuplicateMethodError": "registry",
    "MethodRegistry": "registry",
    "RpcContext": "context",
    "RpcHandler": "handler",
    "RpcServer": "server",
    "check_method_name": "registry",
}


def __getattr__(name: str) -> Any:
    """Import the public names lazily from their modules."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
