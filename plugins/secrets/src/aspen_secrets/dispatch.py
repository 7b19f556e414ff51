"""One entry point for every logical request, whatever it came through (HTTP, RPC, CLI).

:meth:`Dispatcher.dispatch` takes a full path (``secret/data/app``, ``sys/mounts``) and a
:class:`~aspen_secrets.logical.Request` whose ``path`` is ignored (the dispatcher fills it
in relative to the mount it finds) and answers a
:class:`~aspen_secrets.logical.Response`.

Only the Raft leader can commit. A write on a follower fails with ``not_leader`` (it
carries the leader's client endpoint): the dispatcher then forwards the whole logical
request to the leader's ``secrets.request`` method over the Aspen client, one hop only
(a forwarded request is never forwarded again). Reads are served locally (``kv.range``
is linearizable on followers too). Each request runs in one
:func:`~aspen_secrets.consistency.read_scope`: one linearizable read, the rest local.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aspen.client.leader import LeaderCaller
from aspen.errors import AspenError, InvalidArgumentError, NotLeaderError
from aspen_secrets import limits
from aspen_secrets.consistency import read_scope
from aspen_secrets.logical import Operation, Request, Response, http_status
from aspen_secrets.mounts import is_unauthenticated
from aspen_secrets.store import check_path
from aspen_secrets.sys_endpoints import SysEngine, token_lookup

if TYPE_CHECKING:
    from aspen_secrets.service import SecretsService

__all__ = [
    "RPC_REQUEST",
    "Dispatcher",
    "answer_from_response",
    "request_from_params",
    "response_from_answer",
]

#: The RPC method that serves one logical request (also the forwarding target).
RPC_REQUEST = "secrets.request"
#: Paths answered even while the plugin is sealed or starting.
_ALWAYS_SERVED = frozenset({"sys/seal-status", "sys/leader"})
_TOKEN_SELF = frozenset({"auth/token/lookup-self"})


def answer_from_response(response: Response, mount_type: str = "") -> dict[str, Any]:
    """The RPC form of a response: ``{data, warnings}`` or ``{raw, content_type}``
    (plus ``status`` and ``mount_type`` when they say something)."""
    answer: dict[str, Any]
    if response.raw is not None:
        answer = {"raw": response.raw, "content_type": response.content_type}
    else:
        answer = {"data": response.data, "warnings": list(response.warnings)}
    if response.status is not None:
        answer["status"] = response.status
    if response.auth is not None:
        answer["auth"] = response.auth
    if mount_type:
        answer["mount_type"] = mount_type
    return answer


def response_from_answer(answer: dict[str, Any]) -> Response:
    """Rebuild a :class:`Response` from its RPC form (see :func:`answer_from_response`)."""
    raw = answer.get("raw")
    return Response(
        data=answer.get("data"),
        warnings=tuple(answer.get("warnings") or ()),
        raw=bytes(raw) if raw is not None else None,
        content_type=answer.get("content_type") or "application/json",
        status=answer.get("status"),
        auth=answer.get("auth"),
    )


def request_from_params(params: dict[str, Any]) -> tuple[str, Request]:
    """Validate ``secrets.request`` params into ``(full path, request)``."""
    op = params.get("operation")
    try:
        operation = Operation(op)  # type: ignore[arg-type]
    except ValueError:
        known = ", ".join(o.value for o in Operation)
        raise InvalidArgumentError(f"operation must be one of {known}, got {op!r}") from None
    path = params.get("path")
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidArgumentError("path must be a non-empty string (mount included)")
    data = params.get("data") or {}
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"data must be a map, got {type(data).__name__}")
    path = check_path(path.strip("/"))
    return path, Request(operation, path, data)


class Dispatcher:
    """Routes logical requests to the system endpoints or the mounted engines of one node."""

    def __init__(self, service: SecretsService) -> None:
        self.service = service
        self.sys = SysEngine(service)
        #: Forwards to the leader (secrets requests, core writes) from a follower.
        self.leader = LeaderCaller(service.node, max_clients=limits.SECRETS_MAX_FORWARD_CLIENTS)

    async def dispatch(
        self, path: str, request: Request, *, forwarded: bool = False, internal: bool = False
    ) -> Response:
        """Serve ``request`` at the full ``path``; see :meth:`dispatch_routed`."""
        return (await self.dispatch_routed(path, request, forwarded=forwarded, internal=internal))[
            0
        ]

    async def dispatch_routed(
        self, path: str, request: Request, *, forwarded: bool = False, internal: bool = False
    ) -> tuple[Response, str]:
        """Serve ``request`` at the full ``path``; returns the response and the type of the
        mount that served it (``"system"``, ``"token"``, ``"kv"``…). ``internal`` requests
        (the plugin's own, e.g. the bootstrap import) are served once the keyring is open,
        before the plugin reports ready."""
        path = check_path(path.strip("/"))
        try:
            with read_scope():
                return await self._local(path, request, internal)
        except NotLeaderError as exc:
            if forwarded:
                raise
            return await self._forward(exc, path, request)

    async def unauthenticated(self, path: str) -> bool:
        """Whether a read of the full ``path`` is served without a token: the engine that
        serves it lists it in ``unauthenticated_paths`` (engine paths only once the
        keyring is open: until then no mount can be resolved)."""
        path = path.strip("/")
        if path.startswith("sys/"):
            return is_unauthenticated(self.sys, path[len("sys/") :])
        if self.service.state != "ready":
            return False
        return await self.service.router.unauthenticated(path)

    async def _local(self, path: str, request: Request, internal: bool) -> tuple[Response, str]:
        if path in _TOKEN_SELF:
            return Response(data=token_lookup()), "token"
        if internal:
            self.service.require_open()
        elif path not in _ALWAYS_SERVED:
            self.service.require_ready()
        if path == "sys" or path.startswith("sys/"):
            inner = replace(request, path=path[len("sys/") :])
            return await self.sys.handle(inner), "system"
        mount, engine, rest = await self.service.router.resolve(path)
        return await engine.handle(replace(request, path=rest)), mount.type

    # ------------------------------------------------------------------ forwarding
    async def call_leader(self, method: str, params: dict[str, Any]) -> Any:
        """Call the core RPC ``method`` on this node, or on the leader it names when this
        node cannot commit (``unavailable`` while no leader is known)."""
        return await self.leader.call(method, params)

    async def _forward(
        self, exc: NotLeaderError, path: str, request: Request
    ) -> tuple[Response, str]:
        client = await self.leader.client_for(exc)
        params = {
            "operation": request.operation.value,
            "path": path,
            "data": request.data,
            "forwarded": True,
        }
        try:
            answer = await client.call(RPC_REQUEST, params)
        except AspenError as err:
            err.details.setdefault("http_status", http_status(err))
            raise
        return response_from_answer(answer), answer.get("mount_type", "")

    async def close(self) -> None:
        """Close the connections kept to leaders."""
        await self.leader.close()
