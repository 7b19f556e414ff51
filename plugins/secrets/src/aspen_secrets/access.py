"""Vault tokens and policies mapped onto Aspen capability tokens.

A Vault client (hvac, the ``vault``/``bao`` CLI) sends an Aspen token as its Vault token:
the root token may do everything; a capability token may do what its ``secrets:``
capabilities say, the Vault operation naming the capability's operation and the request
path (mount included) its scope:

==========================  =========================================
Vault operation             capability needed for path ``P``
==========================  =========================================
read (GET)                  ``secrets:read:P``
list (LIST, ``?list=true``)  ``secrets:list:P``
write (POST/PUT), patch     ``secrets:write:P``
delete (DELETE)             ``secrets:delete:P``
==========================  =========================================

so ``secrets:read:secret/data/app/*`` reads every KV v2 secret under ``app/`` and nothing
else. Vault "policies" are capability strings here: ``auth/token/create`` with
``{"policies": ["secrets:read:secret/data/app/x"], "ttl": "1h"}`` issues a token for those
(each must be held by the caller), ``auth/token/lookup-self`` shows the caller's own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aspen.auth.access import Authority
from aspen.errors import AspenError, InvalidArgumentError
from aspen_secrets.fields import parse_duration
from aspen_secrets.logical import ForbiddenError, Operation, Response
from aspen_secrets.sys_endpoints import token_lookup

if TYPE_CHECKING:
    from aspen import NodeAPI

__all__ = [
    "TOKEN_CREATE",
    "TOKEN_SELF",
    "authenticate",
    "create_token",
    "lookup_self",
    "require",
    "required_capability",
]

#: Vault's token endpoints served for every token.
TOKEN_SELF = "auth/token/lookup-self"
TOKEN_CREATE = "auth/token/create"

_OPERATIONS = {
    Operation.READ: "read",
    Operation.LIST: "list",
    Operation.WRITE: "write",
    Operation.PATCH: "write",
    Operation.DELETE: "delete",
}


def authenticate(node: NodeAPI, token: str) -> Authority:
    """The authority of a Vault token (an Aspen token); 403 ``permission denied`` (with the
    reason) when it is none of this cluster's, forged, expired or revoked."""
    try:
        authority = node.authenticate(token)
    except AspenError as exc:
        raise ForbiddenError(f"permission denied: {exc.message}") from None
    if authority is None:
        raise ForbiddenError("permission denied")
    return authority


def required_capability(operation: Operation, path: str) -> str:
    """The capability a request of ``operation`` on ``path`` needs."""
    return f"secrets:{_OPERATIONS[operation]}:{path}"


def require(authority: Authority, operation: Operation, path: str) -> None:
    """403 naming the missing capability unless ``authority`` may do this request."""
    if authority.unrestricted:
        return
    needed = required_capability(operation, path)
    if not authority.allows(needed):
        raise ForbiddenError(f"permission denied: missing capability {needed}")


def lookup_self(authority: Authority) -> Response:
    """``auth/token/lookup-self``: the caller's token, its capabilities as policies."""
    grant = authority.grant
    if grant is None:
        return Response(data=token_lookup())
    ttl = max(0, int(grant.expires - time.time())) if grant.expires is not None else 0
    return Response(
        data={
            **token_lookup(),
            "accessor": grant.id,
            "display_name": f"token-{grant.id}",
            "expire_time": grant.expires,
            "id": "",
            "orphan": not grant.ancestors,
            "path": TOKEN_CREATE,
            "policies": [str(c) for c in grant.capabilities],
            "ttl": ttl,
        }
    )


async def create_token(node: NodeAPI, authority: Authority, data: dict[str, Any]) -> Response:
    """``auth/token/create``: a token for ``policies`` (capability strings; default: the
    caller's own), ``ttl`` and ``display_name``, answered in Vault's ``auth`` block."""
    policies = data.get("policies")
    if policies is None:
        policies = [str(c) for c in authority.capabilities]
    elif isinstance(policies, str):
        policies = [p.strip() for p in policies.split(",") if p.strip()]
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise InvalidArgumentError("policies must be a list of capability strings")
    ttl = parse_duration(data["ttl"], "ttl") if data.get("ttl") not in (None, "") else None
    name = data.get("display_name") or ""
    if not isinstance(name, str):
        raise InvalidArgumentError("display_name must be a string")
    try:
        made = await node.create_token(authority, policies, ttl=ttl or None, name=name)
    except AspenError as exc:
        if exc.code == "unauthorized":
            raise ForbiddenError(f"permission denied: {exc.message}") from None
        raise
    lease = max(0, int(made["expires"] - time.time())) if made["expires"] else 0
    return Response(
        auth={
            "client_token": made["token"],
            "accessor": made["id"],
            "policies": policies,
            "token_policies": policies,
            "metadata": None,
            "lease_duration": lease,
            "renewable": False,
            "entity_id": "",
            "token_type": "service",
            "orphan": False,
        }
    )
