"""Pull sync of pinned blobs from a remote cluster.

The origin (``federation.blob_state``) signs the listing of the blobs pinned under names
starting with the shared prefix: ``[[pin, hash, size], …]`` (at most
``BLOB_SYNC_MAX_PINS``). The puller reads each blob it lacks with the ``blob:read`` token
the origin granted, in the core's bounded windows, appending to a staging file under its
data directory (an interrupted sync resumes at the file's length), checks the file's
BLAKE3 hash and size against the signed listing, and only then puts it into the local
blob store pinned as ``federation/remotes/<cluster id>/<pin>``. A blob whose bytes do not
hash to its name is dropped, never stored; pins the origin no longer lists are removed
(the blob store collects what nothing pins).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from aspen.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen_federation import limits
from aspen_federation.identity import key_id
from aspen_federation.signedstate import SignedState, SignedStateError

__all__ = ["blob_state", "local_pin", "pull_blobs"]

#: Pin names of synced blobs start with this, then the origin's cluster id.
PIN_PREFIX = "federation/remotes/"
_READ_BYTES = 1024 * 1024


def local_pin(cluster_id: str, pin: str) -> str:
    """The local pin name of a remote cluster's pin."""
    return f"{PIN_PREFIX}{cluster_id}/{pin}"


async def _pins(node: Any, prefix: str) -> list[tuple[str, str, int]]:
    """``(pin, hash, size)`` of the blobs pinned under ``prefix`` on this cluster, in name
    order: every one, or ``BLOB_SYNC_MAX_PINS`` + 1 when there are more (the caller refuses
    the share then)."""
    out: list[tuple[str, str, int]] = []
    after = None
    while len(out) <= limits.BLOB_SYNC_MAX_PINS:
        page = await node.call("blob.pins", {"prefix": prefix, "after": after})
        out.extend((str(e["name"]), str(e["hash"]), int(e["size"])) for e in page["pins"])
        if not page.get("more") or not page["pins"]:
            break
        after = out[-1][0]
    return out[: limits.BLOB_SYNC_MAX_PINS + 1]


async def blob_state(service: Any, resource: str) -> SignedState:
    """The origin side: the shared blobs' listing, signed (``not_found`` if unshared)."""
    from aspen_federation.sync import require_shared

    await require_shared(service, resource)
    entries = await _pins(service.node, resource.partition(":")[2])
    if len(entries) > limits.BLOB_SYNC_MAX_PINS:
        raise ResourceExhaustedError(
            f"over BLOB_SYNC_MAX_PINS ({limits.BLOB_SYNC_MAX_PINS}) blobs under {resource}"
        )
    key, _ = await service.identity()
    return SignedState.create(key, resource, {"blobs": [list(e) for e in entries]})


def _hash_file(path: Path) -> tuple[str, int]:
    import blake3

    hasher = blake3.blake3()
    size = 0
    with path.open("rb") as f:
        while piece := f.read(_READ_BYTES):
            hasher.update(piece)
            size += len(piece)
    return hasher.hexdigest(), size


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while piece := await f.read(_READ_BYTES):
            yield piece


async def _fetch(client: Any, digest: str, size: int, staging: Path) -> None:
    """Fetch ``digest`` into ``staging`` (resuming), then check its hash and size."""
    staging.parent.mkdir(parents=True, exist_ok=True)
    have = staging.stat().st_size if staging.exists() else 0
    if have > size:
        staging.unlink()
        have = 0
    if have < size:
        async with await anyio.open_file(staging, "ab") as f:
            async for piece in client.blobs.get(digest, offset=have):
                await f.write(piece)
    got, length = await anyio.to_thread.run_sync(_hash_file, staging)
    if (got, length) != (digest, size):
        staging.unlink(missing_ok=True)
        raise SignedStateError(
            f"blob {digest}: the bytes fetched hash to {got} ({length} bytes): sync refused"
        )


async def _has(node: Any, digest: str) -> bool:
    try:
        await node.blobs.stat(digest)
    except NotFoundError:
        return False
    return True


async def pull_blobs(
    service: Any, remote: bytes, resource: str, token: str, endpoint: str
) -> dict[str, Any]:
    """Sync the blobs of share ``resource`` of cluster ``remote``, each verified."""
    import aspen

    node = service.node
    cluster_id = key_id(remote)
    staging_dir = node.data_dir / "federation" / "staging" / cluster_id / "blobs"
    fetched = pinned = 0
    async with aspen.aconnect(endpoint, token=token) as client:
        prefix = resource.partition(":")[2]
        wire = await client.call("federation.blob_state", {"kind": "blob", "name": prefix})
        signed = SignedState.verified(wire, key=remote, resource=resource)
        service.seen(remote)
        entries = [(str(p), str(h), int(s)) for p, h, s in signed.state["blobs"]]
        if len(entries) > limits.BLOB_SYNC_MAX_PINS:
            raise SignedStateError(f"over BLOB_SYNC_MAX_PINS ({limits.BLOB_SYNC_MAX_PINS})")
        if sum(s for _, _, s in entries) > limits.BLOB_SYNC_MAX_BYTES:
            raise ResourceExhaustedError(
                f"over BLOB_SYNC_MAX_BYTES ({limits.BLOB_SYNC_MAX_BYTES}) in one sync"
            )
        for pin, digest, size in entries:
            if not pin.startswith(prefix):
                raise SignedStateError(f"pin {pin!r} is outside the share {resource}")
            if not await _has(node, digest):
                staging = staging_dir / f"{digest}.part"
                await _fetch(client, digest, size, staging)
                ref = await node.blobs.put(_read_file(staging), size=size)
                if ref.hash != digest:  # pragma: no cover - checked above
                    raise InvalidArgumentError(f"blob {digest} stored as {ref.hash}")
                staging.unlink(missing_ok=True)
                fetched += 1
            await node.blobs.pin(local_pin(cluster_id, pin), digest)
            pinned += 1
    wanted = {local_pin(cluster_id, p) for p, _, _ in entries}
    removed = 0
    for pin, _, _ in await _pins(node, local_pin(cluster_id, prefix)):
        if pin not in wanted:
            await node.blobs.unpin(pin)
            removed += 1
    return {
        "resource": resource,
        "cluster_key": remote.hex(),
        "namespace": local_pin(cluster_id, prefix),
        "blobs": pinned,
        "fetched": fetched,
        "unpinned": removed,
    }
