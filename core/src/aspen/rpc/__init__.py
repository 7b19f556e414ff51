"""The client protocol server (docs/protocol.md), its method registry and param validators."""

from __future__ import annotations

from aspen.rpc.context import RpcContext
from aspen.rpc.registry import DuplicateMethodError, MethodRegistry, check_method_name
from aspen.rpc.server import RpcServer

__all__ = ["DuplicateMethodError", "MethodRegistry", "RpcContext", "RpcServer", "check_method_name"]
