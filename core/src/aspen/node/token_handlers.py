"""The ``token.*`` RPC methods: create, list, revoke, audit, self (docs/tokens.md).

* ``token.create {capabilities, ttl?, name?, rate?, burst?, streams?}`` -> ``{id, token,
  expires}``: any token may call it, but only for capabilities it holds itself (the root
  token holds all); a token created by a scoped token expires no later than it, inherits
  its limits, and is revoked with it (its ancestors travel in the new token).
* ``token.revoke {id}``: the token and everything delegated from it, cluster wide, in one
  commit; ``cluster:admin``, or the token's own creator chain.
* ``token.list {limit?}`` (``cluster:admin``): issued tokens, never their text.
* ``token.audit {limit?}`` (``cluster:admin``): this node's denials and creates/revokes.
* ``token.self``: what the caller's own token grants.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgpack

from aspen.auth.access import ANY_TOKEN, Authority, capability_error
from aspen.auth.capability import Capability, parse_capabilities
from aspen.auth.service import ISSUED_PREFIX, REVOKED_PREFIX, TokenService
from aspen.auth.tokens import ChainTooDeepError, TokenLimits
from aspen.errors import InvalidArgumentError, NotFoundError
from aspen.kv import commands, paging
from aspen.limits import (
    MAX_AUDIT_RECORDS,
    MAX_TOKEN_CAPABILITIES,
    MAX_TOKEN_CHAIN_DEPTH,
    MAX_TOKEN_LIST,
    MAX_TOKEN_LIST_BYTES,
    MAX_TOKEN_NAME_BYTES,
    MAX_TOKEN_TTL_SECONDS,
)
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext
from aspen.rpc.handler import RpcHandler

__all__ = ["issue_token", "token_handlers"]

#: A token id (16 hex digits) or a Biscuit block revocation id (128 hex digits).
_ID_RE = re.compile(r"[0-9a-f]{16}|[0-9a-f]{128}")
#: ``cluster:admin``: what listing, auditing and revoking others' tokens need.
ADMIN = "cluster:admin"


def _number(params: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    """An optional number in ``(lo, hi]``."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo < value <= hi:
        raise InvalidArgumentError(f"{name!r} must be a number in ({lo:g}, {hi:g}]", field=name)
    return float(value)


#: ``propose(command)``: replicate a core command and return its result.
Propose = Callable[[dict[str, Any]], Awaitable[Any]]


async def issue_token(
    service: TokenService,
    propose: Propose,
    authority: Authority,
    caps: tuple[Capability, ...],
    *,
    ttl: float | None = None,
    name: str = "",
    limits: TokenLimits | None = None,
) -> dict[str, Any]:
    """Issue a token for ``caps`` on behalf of ``authority`` (which must hold each one),
    record it in the token store; return ``{id, token, expires}``."""
    if not caps:
        raise InvalidArgumentError("give at least one capability (--cap kv:read:/app/)")
    limits = limits or TokenLimits()
    ancestors: tuple[str, ...] = ()
    grant = authority.grant
    if grant is not None:
        for cap in caps:
            authority.require(cap, "token.create")
        if grant.depth + 1 > MAX_TOKEN_CHAIN_DEPTH:
            raise ChainTooDeepError(
                f"a token created by token {grant.id} (chain depth {grant.depth}) would "
                f"exceed MAX_TOKEN_CHAIN_DEPTH ({MAX_TOKEN_CHAIN_DEPTH})"
            )
        if limits != TokenLimits():
            raise capability_error("root (only the root token sets limits)", "token.create")
        limits = grant.limits
        ancestors = (*grant.ancestors, grant.id)
        if grant.expires is not None:
            left = grant.expires - time.time()
            ttl = left if ttl is None else min(ttl, left)
    token_id, text, expires = service.signer.issue(
        caps, ttl=ttl, ancestors=ancestors, limits=limits
    )
    by = authority.token_id or authority.identity
    cap_texts = [str(c) for c in caps]
    record = {
        "id": token_id,
        "name": name,
        "capabilities": cap_texts,
        "expires": expires,
        "created": int(time.time()),
        "created_by": by,
        "ancestors": list(ancestors),
    }
    key = ISSUED_PREFIX + token_id.encode()
    await propose(commands.put_command({"key": key, "value": msgpack.packb(record)}))
    service.record("create", token_id, by=by, capabilities=" ".join(cap_texts))
    return {"id": token_id, "token": text, "expires": expires}


async def token_create(
    tokens: TokenService, propose: Propose, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """Issue a token for capabilities the caller holds itself."""
    texts = p.optional_list(params, "capabilities", max_len=MAX_TOKEN_CAPABILITIES)
    limits = TokenLimits(
        rate=_number(params, "rate", 0, 1e9),
        burst=p.optional_int(params, "burst", 0, min=0, max=10**9) or None,
        streams=p.optional_int(params, "streams", 0, min=0, max=10**6) or None,
    )
    return await issue_token(
        tokens,
        propose,
        ctx.authority,
        parse_capabilities(texts),
        ttl=_number(params, "ttl", 0, MAX_TOKEN_TTL_SECONDS),
        name=p.optional_str(params, "name", "", max_len=MAX_TOKEN_NAME_BYTES) or "",
        limits=limits,
    )


async def _issued(ctx: RpcContext, token_id: str) -> dict[str, Any] | None:
    """The issued record of ``token_id`` (``None`` if there is none)."""
    key = ISSUED_PREFIX + token_id.encode()
    answer = await ctx.node.call("kv.range", {"key": key})
    kvs = answer["kvs"]
    return msgpack.unpackb(kvs[0]["value"]) if kvs else None


async def token_revoke(
    tokens: TokenService, propose: Propose, ctx: RpcContext, params: dict[str, Any]
) -> Any:
    """Revoke a token and everything delegated from it, cluster wide, in one commit."""
    token_id = p.require_str(params, "id", max_len=128)
    if not _ID_RE.fullmatch(token_id):
        raise InvalidArgumentError(
            f"{token_id!r} is not a token id (16 hex digits) or revocation id (128)", field="id"
        )
    record = await _issued(ctx, token_id) if len(token_id) == 16 else None
    authority = ctx.authority
    if not authority.allows(ADMIN):
        mine = record is not None and authority.token_id in record.get("ancestors", ())
        if not mine and authority.token_id != token_id:
            raise capability_error(ADMIN, "token.revoke", token_id=authority.token_id)
    if record is None and len(token_id) == 16:
        raise NotFoundError(f"no token {token_id} was issued by this cluster", id=token_id)
    value = msgpack.packb({"at": int(time.time()), "by": authority.token_id or "root"})
    key = REVOKED_PREFIX + token_id.encode()
    result = await propose(commands.put_command({"key": key, "value": value}))
    tokens.record("revoke", token_id, by=authority.token_id or "root")
    return {"id": token_id, "revoked": True, "revision": result.get("header", {}).get("revision")}


async def token_list(tokens: TokenService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Issued tokens (id, name, capabilities, expiry, revoked): never their text; at most
    ``limit`` of them and ``MAX_TOKEN_LIST_BYTES`` of records (``more`` says when cut)."""
    most = p.optional_int(params, "limit", MAX_TOKEN_LIST, min=1, max=MAX_TOKEN_LIST)
    revoked = tokens.revoked
    listed: list[dict[str, Any]] = []
    size = 0
    async for page in paging.pages(ctx.node.call, ISSUED_PREFIX, local=True, most=most + 1):
        for kv in page["kvs"]:
            size += len(kv["value"])
            if len(listed) == most or size > MAX_TOKEN_LIST_BYTES:
                return {"tokens": listed, "more": True}
            record = msgpack.unpackb(kv["value"])
            lineage = [record["id"], *record.get("ancestors", ())]
            record["revoked"] = any(i in revoked for i in lineage)
            listed.append(record)
    return {"tokens": listed, "more": False}


async def token_audit(tokens: TokenService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """This node's audit records: denials and token creates/revokes, oldest first."""
    limit = p.optional_int(params, "limit", MAX_AUDIT_RECORDS, min=1, max=MAX_AUDIT_RECORDS)
    return {"node_id": tokens.node_id, "records": tokens.audit(limit)}


async def token_self(tokens: TokenService, ctx: RpcContext, params: dict[str, Any]) -> Any:
    """What the caller's token grants (``root``: everything)."""
    grant = ctx.authority.grant
    if grant is None:
        return {"id": "", "identity": ctx.identity, "root": True, "capabilities": ["*"]}
    return {"identity": ctx.identity, "root": False, **grant.to_json()}


def token_handlers(tokens: TokenService, propose: Propose) -> list[RpcHandler]:
    """The ``token.*`` methods, bound to ``tokens`` (and ``propose`` for those that write),
    tagged as the core's, with their declared capabilities."""
    table: list[tuple[str, partial[Any], str]] = [
        ("token.create", partial(token_create, tokens, propose), ANY_TOKEN),
        ("token.revoke", partial(token_revoke, tokens, propose), ANY_TOKEN),
        ("token.list", partial(token_list, tokens), ADMIN),
        ("token.audit", partial(token_audit, tokens), ADMIN),
        ("token.self", partial(token_self, tokens), ANY_TOKEN),
    ]
    return [
        RpcHandler(
            name,
            func,
            doc=(func.func.__doc__ or "").strip(),
            plugin="core",
            capability=cap,
        )
        for name, func, cap in table
    ]
