"""The ``blob.*`` RPC methods (docs/blobs.md).

Clients: ``blob.put_open`` / ``blob.put_chunk`` / ``blob.put_close`` / ``blob.put_abort``
(a put, chunk by chunk), ``blob.get`` (streams a window of a blob), ``blob.stat``,
``blob.pin``, ``blob.unpin``, ``blob.list``, ``blob.pins``, ``blob.status``, ``blob.configure``.
What members ask of each other (copy a blob, a liveness ping) is not here: it goes over
the peer transport (:mod:`aspen.blobs.transfer`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aspen.auth.capability import Capability
from aspen.blobs.hashing import parse_hash
from aspen.blobs.meta import check_pin_name
from aspen.errors import UnauthorizedError
from aspen.limits import (
    BLOB_CHUNK_BYTES,
    BLOB_LIST_LIMIT,
    BLOB_MAX_PIN_NAME_BYTES,
    BLOB_MAX_REPLICAS,
)
from aspen.rpc import params as p
from aspen.rpc.context import RpcContext
from aspen.rpc.handler import RpcHandler

if TYPE_CHECKING:
    from aspen.blobs.service import BlobService

__all__ = ["blob_handlers"]


def _service(ctx: RpcContext) -> BlobService:
    return ctx.node.blobs  # type: ignore[return-value]  # the node's BlobService


def _optional_int(params: dict[str, Any], name: str, **bounds: int) -> int | None:
    return None if params.get(name) is None else p.require_int(params, name, **bounds)


async def blob_put_open(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Start a put: ``{size?, replicas?, pin?}`` -> ``{upload, chunk_bytes}``."""
    pin = params.get("pin")
    upload = await _service(ctx).open_upload(
        ctx.connection_id,
        _optional_int(params, "size", min=0),
        _optional_int(params, "replicas", min=1, max=BLOB_MAX_REPLICAS),
        None if pin is None else check_pin_name(pin),
    )
    return {"upload": upload.id, "chunk_bytes": BLOB_CHUNK_BYTES}


async def blob_put_chunk(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Append ``data`` at ``offset`` to an upload (chunks may be pipelined)."""
    service = _service(ctx)
    upload = service.uploads.get(ctx.connection_id, params.get("upload"))
    data = p.require_bytes(params, "data", max_len=BLOB_CHUNK_BYTES, allow_empty=True)
    offset = p.require_int(params, "offset", min=0)
    await upload.write(offset, data, service.settings.upload_idle_seconds)
    return {"received": upload.written}


async def blob_put_close(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Finish a put: ``{hash, size, replicas}`` once it is durable on its replicas."""
    service = _service(ctx)
    upload = service.uploads.get(ctx.connection_id, params.get("upload"))
    ref = await service.close_upload(upload)
    return {"hash": ref.hash, "size": ref.size, "replicas": ref.replicas}


async def blob_put_abort(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Drop an upload and what it wrote."""
    service = _service(ctx)
    await service.abort_upload(service.uploads.get(ctx.connection_id, params.get("upload")))
    return {}


#: What an unscoped ``blob:read`` allows: every blob.
_EVERY_BLOB = Capability("blob", "read")


async def _may_read(ctx: RpcContext, digest: str, method: str) -> None:
    """Refuse a token whose ``blob:read`` is scoped to pin names (``blob:read:releases/*``)
    unless a pin it covers keeps ``digest`` (a blob that does not exist is refused alike)."""
    authority = ctx.authority
    if authority.allows(_EVERY_BLOB):
        return
    async for name in _service(ctx).meta.pin_names(digest):
        if authority.allows(Capability("blob", "read", name, prefix=False)):
            return
    raise UnauthorizedError(
        f"missing capability blob:read for {method}: no pin the token's blob:read scopes "
        f"cover keeps blob {digest}",
        capability="blob:read",
        method=method,
    )


def _pin_scope(params: dict[str, Any]) -> list[Capability]:
    """``blob.pins`` reads the pins under its prefix: a ``blob:read`` covering it."""
    prefix = p.optional_str(params, "prefix", max_len=BLOB_MAX_PIN_NAME_BYTES) or ""
    return [Capability("blob", "read", prefix, prefix=True)]


def _any_blob_scope(params: dict[str, Any]) -> tuple[()]:
    """``blob.get`` and ``blob.stat``: any ``blob:read`` passes the RPC layer; the handler
    then checks the blob's pins against a scoped one (``_may_read``)."""
    return ()


async def blob_get(ctx: RpcContext, params: dict[str, Any]) -> AsyncIterator[Any]:
    """Stream ``[offset, offset + length)`` of a blob as ``{"data": bytes}`` items, each
    verified (``local``: only from this node's replica)."""
    digest = parse_hash(params.get("hash"))
    await _may_read(ctx, digest, "blob.get")
    offset = p.optional_int(params, "offset", 0, min=0)
    length = _optional_int(params, "length", min=0)
    local = p.optional_bool(params, "local")
    async for piece in _service(ctx).read(digest, offset, length, local=local):
        yield {"data": piece}


async def blob_stat(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """``{hash, size, holders, pins, replicas, created}`` of a blob."""
    digest = parse_hash(params.get("hash"))
    await _may_read(ctx, digest, "blob.stat")
    return await _service(ctx).stat(digest)


async def blob_pin(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Keep a blob under a name: ``{name, hash}``."""
    await _service(ctx).pin(p.require_str(params, "name"), parse_hash(params.get("hash")))
    return {}


async def blob_unpin(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Drop a pin: ``{name}`` -> ``{hash}``."""
    return {"hash": await _service(ctx).unpin(p.require_str(params, "name"))}


async def blob_list(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """A page of blobs in hash order: ``{after?, limit?}`` -> ``{blobs: [{hash, size,
    holders, pins, ...}], more}``; ask again with ``after`` = the last hash while ``more``."""
    after = "" if params.get("after") is None else parse_hash(params["after"], "after")
    limit = p.optional_int(params, "limit", BLOB_LIST_LIMIT, min=1, max=BLOB_LIST_LIMIT)
    return await _service(ctx).list(after=after, limit=limit)


async def blob_pins(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """A page of pins in name order: ``{prefix?, after?, limit?}`` -> ``{pins: [{name, hash,
    size}], more}``; ask again with ``after`` = the last name while ``more``."""
    prefix = p.optional_str(params, "prefix", max_len=BLOB_MAX_PIN_NAME_BYTES) or ""
    after = p.optional_str(params, "after", max_len=BLOB_MAX_PIN_NAME_BYTES) or ""
    limit = p.optional_int(params, "limit", BLOB_LIST_LIMIT, min=1, max=BLOB_LIST_LIMIT)
    return await _service(ctx).pins(prefix, after=after, limit=limit)


async def blob_status(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """``{blobs, bytes, under_replicated, repairing, replicas, local}``."""
    return await _service(ctx).status()


async def blob_configure(ctx: RpcContext, params: dict[str, Any]) -> Any:
    """Set the cluster's default replica count: ``{replicas}``."""
    replicas = p.require_int(params, "replicas", min=1, max=BLOB_MAX_REPLICAS)
    await _service(ctx).meta.set_replicas(replicas)
    return {"replicas": replicas}


def blob_handlers() -> list[RpcHandler]:
    """Every ``blob.*`` method, tagged as the core's, with the capability a token needs
    (``blob:read`` / ``blob:write``; the cluster-wide setting is ``cluster:admin``). A
    ``blob:read`` scoped to pin names reads the blobs those pins keep (``blob.get``,
    ``blob.stat``) and lists those pins (``blob.pins``); listing every blob and the store's
    status need an unscoped one. What
    members ask of each other goes over the peer transport (:mod:`aspen.blobs.transfer`)."""
    table: list[tuple[str, Any, bool, str | None, Any]] = [
        ("blob.put_open", blob_put_open, False, "blob:write", None),
        ("blob.put_chunk", blob_put_chunk, False, "blob:write", None),
        ("blob.put_close", blob_put_close, False, "blob:write", None),
        ("blob.put_abort", blob_put_abort, False, "blob:write", None),
        ("blob.get", blob_get, True, "blob:read", _any_blob_scope),
        ("blob.stat", blob_stat, False, "blob:read", _any_blob_scope),
        ("blob.pin", blob_pin, False, "blob:write", None),
        ("blob.unpin", blob_unpin, False, "blob:write", None),
        ("blob.list", blob_list, False, "blob:read", None),
        ("blob.pins", blob_pins, False, "blob:read", _pin_scope),
        ("blob.status", blob_status, False, "blob:read", None),
        ("blob.configure", blob_configure, False, "cluster:admin", None),
    ]
    return [
        RpcHandler(
            name,
            func,
            streaming=streaming,
            doc=(func.__doc__ or "").strip(),
            plugin="core",
            capability=capability,
            scope=scope,
        )
        for name, func, streaming, capability, scope in table
    ]
