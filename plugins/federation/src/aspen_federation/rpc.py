"""``federation.*`` RPC methods. Reading the federation's state needs ``cluster:read``;
changing trust or shares, and granting access, needs ``cluster:admin``."""

from __future__ import annotations

from typing import Any

from aspen.errors import AspenError, InvalidArgumentError, UnavailableError
from aspen.limits import MAX_KEY_BYTES
from aspen.plugins.types import RpcHandler
from aspen.rpc.params import (
    optional_int,
    optional_list,
    optional_str,
    require_bytes,
    require_int,
    require_str,
)
from aspen_federation import limits
from aspen_federation.identity import key_id, parse_public_key
from aspen_federation.service import FederationService
from aspen_federation.trust import KINDS, LEVELS, MODES, read_capability

__all__ = ["parse_resource", "rpc_handlers"]

PLUGIN = "federation"
#: How long a granted read token lives by default (seconds).
GRANT_TTL_SECONDS = 3600


def _service(ctx: Any) -> FederationService:
    service = ctx.node.plugin_state(PLUGIN).get("service")
    if service is None:
        raise UnavailableError("the federation plugin is not started on this node")
    return service  # type: ignore[no-any-return]


def _key(params: dict[str, Any]) -> bytes:
    return parse_public_key(require_str(params, "key", max_len=128))


def parse_resource(kind: str, name: str) -> str:
    """``forge`` + ``OWNER/NAME`` -> ``forge:OWNER/NAME`` (``invalid_argument`` otherwise)."""
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind != "forge":
        from aspen_federation.kinds import parse_name

        name = parse_name(kind, name)
        return _bounded(f"{kind}:{name}")
    from aspen_forge.names import parse_full_name

    try:
        full = parse_full_name(name).full
    except Exception as exc:  # the forge's InvalidNameError
        raise InvalidArgumentError(str(exc)) from None
    return _bounded(f"{kind}:{full}")


def _bounded(resource: str) -> str:
    if len(resource.encode()) > limits.MAX_RESOURCE_BYTES:
        raise InvalidArgumentError(
            f"resource over MAX_RESOURCE_BYTES ({limits.MAX_RESOURCE_BYTES})"
        )
    return resource


def _resource(params: dict[str, Any]) -> str:
    return parse_resource(
        require_str(params, "kind", max_len=16),
        require_str(params, "name", max_len=limits.MAX_RESOURCE_BYTES),
    )


async def status(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """This cluster's key, name, endpoints, DHT routing-table size and peers."""
    return await _service(ctx).status()


async def identity(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """This cluster's signed identity document (to hand to another cluster's operator)."""
    _, doc = await _service(ctx).identity()
    return {**doc.to_json(), "document": doc.encode()}


async def dht_bootstrap(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Add a DHT contact (``host``, ``port``) on this node."""
    host = require_str(params, "host", max_len=limits.MAX_ENDPOINT_BYTES)
    port = require_int(params, "port", min=1, max=65535)
    service = _service(ctx)
    service._require_discovery().add_contact(host, port)
    return {"host": host, "port": port}


async def publish(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Publish this cluster's announcement now (the leader also does it periodically)."""
    stored = await _service(ctx).publish()
    return {"stored": stored}


async def discover(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A remote cluster's verified announcement, found by its key alone."""
    return (await _service(ctx).discover(_key(params))).to_json()


async def trust(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Set a remote cluster's trust level."""
    level = require_str(params, "level", choices=LEVELS)
    return await _service(ctx).set_trust(_key(params), level)


async def peers(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Known remote clusters and their trust levels."""
    return {"peers": await _service(ctx).peers()}


async def request(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a trust request: a remote cluster's signed identity document."""
    document = require_bytes(params, "document", max_len=limits.MAX_IDENTITY_DOCUMENT_BYTES)
    return await _service(ctx).request_trust(document)


async def requests(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Pending trust requests."""
    return {"requests": await _service(ctx).requests()}


async def accept(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Accept a pending trust request (the cluster becomes trusted)."""
    return await _service(ctx).answer_request(_key(params), True)


async def reject(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Reject a pending trust request."""
    return await _service(ctx).answer_request(_key(params), False)


async def share(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Set a resource's federation mode (``disabled``, ``public``, ``allow-list``)."""
    mode = require_str(params, "mode", choices=MODES)
    allow = [
        parse_public_key(str(k))
        for k in optional_list(params, "allow", max_len=limits.MAX_ALLOW_LIST)
    ]
    return await _service(ctx).set_share(_resource(params), mode, allow)


async def grant(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A capability token letting remote cluster ``key`` read one resource, if its trust
    level and the resource's mode allow it (``not_found`` otherwise)."""
    remote = _key(params)
    resource = _resource(params)
    ttl = optional_int(params, "ttl", GRANT_TTL_SECONDS, min=1, max=30 * 86400)
    service = _service(ctx)
    await service.check_read(remote, resource)
    created = await ctx.node.create_token(
        ctx.authority, read_capability(resource), ttl=ttl, name=f"federation:{key_id(remote)}"
    )
    await service.record_grant(remote, str(created["id"]), resource)
    return {"resource": resource, "capabilities": read_capability(resource), **created}


async def refs(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A shared repository's refs signed by this cluster's key (what a puller verifies)."""
    from aspen_federation.sync import signed_refs

    return (await signed_refs(_service(ctx), _resource(params))).to_wire()


async def sync(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Pull a resource from cluster ``key`` with the ``token`` it granted: verified refs
    and objects, written under ``refs/remotes/<cluster id>/`` in the local forge."""
    from aspen_federation.sync import pull_forge

    token = require_str(params, "token", max_len=4096)
    endpoint = optional_str(params, "endpoint", max_len=limits.MAX_ENDPOINT_BYTES)
    if params.get("kind") != "forge":
        return await _sync_other(ctx, params, token, endpoint)
    git_url = optional_str(params, "git_url", "", max_len=1024) or ""
    return await pull_forge(
        _service(ctx), _key(params), _resource(params), token, endpoint, git_url
    )


async def gossip(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Receive one signed gossip message from a trusted cluster; an admitted one is
    published to the event journal as ``federation.gossip`` (subject: the sender's id)."""
    from aspen_federation.inbox import admit_gossip

    data = require_bytes(params, "message", max_len=limits.MAX_GOSSIP_BYTES)
    peer = ctx.authority.token_id.encode() or None
    return await admit_gossip(_service(ctx), data, peer)


async def tell(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Sign a gossip message with this cluster's key and send it to the cluster at
    ``endpoint`` (with the ``federation:gossip`` token it gave us)."""
    import time

    import anyio

    from aspen_federation.gossip import KINDS as GOSSIP_KINDS
    from aspen_federation.gossip import GossipMessage
    from aspen_federation.sync import remote_call

    kind = require_str(params, "kind", choices=GOSSIP_KINDS)
    subject = require_str(params, "subject", max_len=limits.MAX_GOSSIP_SUBJECT_BYTES)
    endpoint = require_str(params, "endpoint", max_len=limits.MAX_ENDPOINT_BYTES)
    token = require_str(params, "token", max_len=4096)
    key, _ = await _service(ctx).identity()
    data = GossipMessage.create(key, kind, subject, seq=time.time_ns()).encode()
    return await anyio.to_thread.run_sync(
        remote_call, endpoint, token, "federation.gossip", {"message": data}
    )


async def request_trust(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Send this cluster's signed identity to cluster ``key`` (found through the DHT) as a
    trust request: it queues there for its operator (``requests``, ``accept``)."""
    from aspen_federation.inbox import send_trust_request

    return await send_trust_request(_service(ctx), _key(params))


def _read_scope(params: dict[str, Any]) -> list[str]:
    """``refs`` needs read access to the repository named."""
    return read_capability(_resource(params))


# -- Pijul channels, blobs and KV prefixes (see pijulsync, blobsync, kvsync) -------------


async def _sync_other(
    ctx: Any, params: dict[str, Any], token: str, endpoint: str | None
) -> dict[str, Any]:
    """``federation.sync`` of a ``pijul``, ``blob`` or ``kv`` resource."""
    from aspen_federation.sync import pull_resource

    kind = require_str(params, "kind", max_len=16)
    name = require_str(params, "name", max_len=limits.MAX_RESOURCE_BYTES)
    channel = ""
    if kind == "pijul":
        from aspen_federation.kinds import split_channel

        name, channel = split_channel(name)
    resource = parse_resource(kind, name)
    return await pull_resource(_service(ctx), _key(params), resource, channel, token, endpoint)


async def pijul_state(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A shared Pijul channel's length and log digest, signed by this cluster's key."""
    from aspen_federation.pijulsync import pijul_state as state

    channel = require_str(params, "channel", max_len=200)
    return (await state(_service(ctx), _resource(params), channel)).to_wire()


async def pijul_change(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A piece of a shared Pijul repository's change (``hash``, from ``offset``)."""
    from aspen_federation.pijulsync import change_piece

    change = require_str(params, "hash", max_len=128)
    offset = optional_int(params, "offset", 0, min=0, max=limits.PIJUL_MAX_CHANGE_BYTES)
    return await change_piece(_service(ctx), _resource(params), change, offset)


async def blob_state(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The listing of a shared blob prefix's pinned blobs, signed by this cluster's key."""
    from aspen_federation.blobsync import blob_state as state

    return (await state(_service(ctx), _resource(params))).to_wire()


async def kv_state(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A shared KV prefix's snapshot (revision, digest), signed by this cluster's key."""
    from aspen_federation.kvsync import kv_state as state

    return (await state(_service(ctx), _resource(params))).to_wire()


async def kv_read(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A page of the KV prefix ``name`` synced from cluster ``key``: its visible (complete)
    generation, with the origin's keys after ``after``."""
    from aspen_federation.kvsync import read_synced

    name = require_str(params, "name", max_len=limits.MAX_RESOURCE_BYTES)
    parse_resource("kv", name)
    after = params.get("after", b"")
    if isinstance(after, str):
        after = after.encode()
    if not isinstance(after, bytes) or len(after) > MAX_KEY_BYTES:
        raise InvalidArgumentError(
            f"after must be a key of at most MAX_KEY_BYTES ({MAX_KEY_BYTES})"
        )
    most = optional_int(
        params, "limit", limits.KV_READ_MAX_KEYS, min=1, max=limits.KV_READ_MAX_KEYS
    )
    return await read_synced(_service(ctx), _key(params), name, after, most)


def _kv_read_scope(params: dict[str, Any]) -> list[str]:
    """``kv_read`` needs read access to what was synced from that cluster, as a direct
    read of its keys would."""
    from aspen_federation.kvsync import NAMESPACE

    try:
        cluster = key_id(_key(params)) + "/"
    except AspenError:
        cluster = ""
    return [f"kv:read:{NAMESPACE.decode()}{cluster}"]


def _kind_scope(kind: str) -> Any:
    """The read capability a ``*_state`` request needs: that of the resource it names."""

    def scope(params: dict[str, Any]) -> list[str]:
        return read_capability(f"{kind}:{params.get('name', '')}")

    return scope


def _state_handlers() -> list[RpcHandler]:
    """The origin side of the Pijul, blob and KV syncs."""
    return [
        RpcHandler(
            f"federation.{kind}_state",
            handler,
            doc=handler.__doc__ or "",
            capability=f"{kind}:read",
            scope=_kind_scope(kind),
        )
        for kind, handler in (("pijul", pijul_state), ("blob", blob_state), ("kv", kv_state))
    ] + [
        RpcHandler(
            "federation.kv_read",
            kv_read,
            doc=kv_read.__doc__ or "",
            capability="kv:read",
            scope=_kv_read_scope,
        ),
        RpcHandler(
            "federation.pijul_change",
            pijul_change,
            doc=pijul_change.__doc__ or "",
            capability="pijul:read",
            scope=_kind_scope("pijul"),
        ),
    ]


# -- periodic mirrors (see mirror) -------------------------------------------------------


async def mirror_add(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Sync a remote resource every ``every`` seconds (on the leader; state in KV)."""
    from aspen_federation.mirror import add_mirror

    kind = require_str(params, "kind", choices=KINDS)
    name = require_str(params, "name", max_len=limits.MAX_RESOURCE_BYTES)
    parse_resource(kind, name.partition(":")[0] if kind == "pijul" else name)
    token = require_str(params, "token", max_len=4096)
    endpoint = optional_str(params, "endpoint", max_len=limits.MAX_ENDPOINT_BYTES)
    every = params.get("every", 60)
    if not isinstance(every, (int, float)) or isinstance(every, bool):
        raise InvalidArgumentError("every must be a number of seconds")
    return await add_mirror(_service(ctx), _key(params), kind, name, token, endpoint, every)


async def mirror_list(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Every mirror: its schedule, failures in a row and last result."""
    from aspen_federation.mirror import list_mirrors

    return {"mirrors": await list_mirrors(_service(ctx))}


async def mirror_remove(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Remove a mirror by its id."""
    from aspen_federation.mirror import remove_mirror

    return await remove_mirror(_service(ctx), require_str(params, "id", max_len=64))


def _mirror_handlers() -> list[RpcHandler]:
    """``federation.mirror_*``."""
    read, admin = "cluster:read", "cluster:admin"
    return [
        RpcHandler(
            "federation.mirror_add", mirror_add, doc=mirror_add.__doc__ or "", capability=admin
        ),
        RpcHandler(
            "federation.mirror_list", mirror_list, doc=mirror_list.__doc__ or "", capability=read
        ),
        RpcHandler(
            "federation.mirror_remove",
            mirror_remove,
            doc=mirror_remove.__doc__ or "",
            capability=admin,
        ),
    ]


def rpc_handlers() -> list[RpcHandler]:
    """Every ``federation.*`` method with its capability."""
    read, admin = "cluster:read", "cluster:admin"
    return [
        RpcHandler("federation.status", status, doc=status.__doc__ or "", capability=read),
        RpcHandler("federation.identity", identity, doc=identity.__doc__ or "", capability=read),
        RpcHandler("federation.peers", peers, doc=peers.__doc__ or "", capability=read),
        RpcHandler("federation.discover", discover, doc=discover.__doc__ or "", capability=read),
        RpcHandler("federation.requests", requests, doc=requests.__doc__ or "", capability=read),
        RpcHandler(
            "federation.dht_bootstrap",
            dht_bootstrap,
            doc=dht_bootstrap.__doc__ or "",
            capability=admin,
        ),
        RpcHandler("federation.publish", publish, doc=publish.__doc__ or "", capability=admin),
        RpcHandler("federation.trust", trust, doc=trust.__doc__ or "", capability=admin),
        RpcHandler("federation.request", request, doc=request.__doc__ or "", capability=admin),
        RpcHandler("federation.accept", accept, doc=accept.__doc__ or "", capability=admin),
        RpcHandler("federation.reject", reject, doc=reject.__doc__ or "", capability=admin),
        RpcHandler("federation.share", share, doc=share.__doc__ or "", capability=admin),
        RpcHandler("federation.grant", grant, doc=grant.__doc__ or "", capability=admin),
        RpcHandler("federation.sync", sync, doc=sync.__doc__ or "", capability=admin),
        RpcHandler("federation.tell", tell, doc=tell.__doc__ or "", capability=admin),
        RpcHandler(
            "federation.request_trust",
            request_trust,
            doc=request_trust.__doc__ or "",
            capability=admin,
        ),
        RpcHandler(
            "federation.gossip", gossip, doc=gossip.__doc__ or "", capability="federation:gossip"
        ),
        RpcHandler(
            "federation.refs",
            refs,
            doc=refs.__doc__ or "",
            capability="forge:read",
            scope=_read_scope,
        ),
        *_state_handlers(),
        *_mirror_handlers(),
    ]
