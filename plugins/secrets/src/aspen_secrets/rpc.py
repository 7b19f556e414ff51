"""The plugin's RPC methods: ``secrets.request`` (any logical request) and ``secrets.status``.

``secrets.request`` takes ``{"operation", "path" (mount included), "data"}`` and answers
``{"data", "warnings"}`` (or ``{"raw", "content_type"}`` for PEM/DER bodies). Errors are
Aspen errors; each carries ``details["http_status"]`` so that a node that forwarded the
request answers its HTTP client with the status the leader chose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aspen.errors import AspenError, UnavailableError
from aspen.plugins.types import RpcHandler
from aspen.rpc.context import RpcContext
from aspen_secrets.access import required_capability
from aspen_secrets.dispatch import RPC_REQUEST, answer_from_response, request_from_params
from aspen_secrets.logical import http_status
from aspen_secrets.service import SecretsService

__all__ = ["RPC_STATUS", "rpc_handlers"]

#: The status method.
RPC_STATUS = "secrets.status"

#: Finds the service of the node a request arrived at (``None`` before start-up).
ServiceLookup = Callable[[Any], SecretsService | None]


def rpc_handlers(lookup: ServiceLookup) -> list[RpcHandler]:
    """The plugin's RPC handlers, finding each node's service with ``lookup``."""

    def service_of(ctx: RpcContext) -> SecretsService:
        service = lookup(ctx.node)
        if service is None:
            raise UnavailableError("aspen-secrets has not started on this node", plugin="secrets")
        return service

    async def request(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Serve one logical request: {operation, path, data} → {data, warnings}."""
        service = service_of(ctx)
        path, logical = request_from_params(params)
        forwarded = params.get("forwarded") is True
        try:
            response, mount_type = await service.dispatcher.dispatch_routed(
                path, logical, forwarded=forwarded
            )
        except AspenError as exc:
            exc.details.setdefault("http_status", http_status(exc))
            raise
        return answer_from_response(response, mount_type)

    async def status(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """The plugin's state on this node: sealed or not, root key source, HTTP address."""
        return service_of(ctx).status()

    return [
        RpcHandler(
            RPC_REQUEST,
            request,
            doc=(request.__doc__ or "").strip(),
            capability="secrets:read",
            scope=_request_scope,
        ),
        RpcHandler(
            RPC_STATUS, status, doc=(status.__doc__ or "").strip(), capability="cluster:read"
        ),
    ]


def _request_scope(params: dict[str, Any]) -> list[str]:
    """The capability one ``secrets.request`` needs (:mod:`aspen_secrets.access`)."""
    path, logical = request_from_params(params)
    return [required_capability(logical.operation, path)]
