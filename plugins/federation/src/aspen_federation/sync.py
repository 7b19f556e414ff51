"""Pull sync of a forge repository from a remote cluster (see :mod:`gitsync` for the git
half). The origin answers ``federation.refs`` with its refs signed by its cluster key; the
puller verifies them against the key it asked for, fetches and checks the objects, then
writes the refs under ``refs/remotes/<cluster id>/`` in one atomic push into its own forge.
A bad signature, a stale ref list or a missing/altered object stops the sync before any
ref is written; a re-run is idempotent and resumes from the staged objects.

:func:`pull_resource` does the same for the other kinds, each in its own module:
:mod:`pijulsync` (a channel), :mod:`blobsync` (pinned blobs), :mod:`kvsync` (a KV prefix).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from aspen.errors import CompareFailedError, NotFoundError, UnavailableError
from aspen_federation import limits
from aspen_federation.identity import key_id
from aspen_federation.service import FederationService
from aspen_federation.signedrefs import SignedRefs

__all__ = ["pull_forge", "pull_resource", "remote_call", "require_shared", "signed_refs"]


async def signed_refs(service: FederationService, resource: str) -> SignedRefs:
    """The origin side: ``resource``'s refs, signed, if it is shared at all."""
    await require_shared(service, resource)
    key, _ = await service.identity()
    name = resource.partition(":")[2]
    shown = await service.node.call("forge.repo_show", {"repo": name})
    refs = {ref: sha for ref, sha in shown["refs"].items() if ref.startswith("refs/")}
    return SignedRefs.create(key, resource, refs, shown["clone_url"])


async def require_shared(service: FederationService, resource: str) -> None:
    """``not_found`` unless ``resource`` is shared at all (the token check already ran)."""
    mode, _ = await service.share(resource)
    if mode == "disabled":
        raise NotFoundError(f"{resource} is not shared")


def remote_call(endpoint: str, token: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Call ``method`` on a remote cluster with a token it granted (blocking)."""
    import aspen

    with aspen.connect(endpoint, token=token) as remote:
        return dict(remote.call(method, params))


async def pull_forge(
    service: FederationService,
    remote: bytes,
    resource: str,
    token: str,
    endpoint: str | None,
    git_url: str = "",
) -> dict[str, Any]:
    """Sync ``resource`` from cluster ``remote`` (found through discovery unless
    ``endpoint`` is given) into the local forge, the objects fetched from ``git_url`` if
    given (a mirror or proxy: they are verified all the same); what was written."""
    from aspen_federation import gitsync

    await service.check_not_blocked(remote)
    endpoint = await _endpoint(service, remote, endpoint)
    kind, _, name = resource.partition(":")
    local_url = await _local_repo_url(service, name, remote)
    cluster_id = key_id(remote)
    staging = service.node.data_dir / "federation" / "staging" / cluster_id / name
    for attempt in range(limits.SYNC_ATTEMPTS):
        wire = await anyio.to_thread.run_sync(
            remote_call, endpoint, token, "federation.refs", {"kind": kind, "name": name}
        )
        signed = SignedRefs.verified(wire, key=remote, resource=resource)
        service.seen(remote)
        started = time.monotonic()
        try:
            repo = await anyio.to_thread.run_sync(
                gitsync.fetch_verified, staging, signed, token, git_url
            )
        except gitsync.RefsMoved:
            if attempt + 1 == limits.SYNC_ATTEMPTS:
                raise
            continue
        fetched = time.monotonic()
        written = await anyio.to_thread.run_sync(
            gitsync.push_local, repo, local_url, str(service.node.token), signed, cluster_id
        )
        return {
            "resource": resource,
            "cluster_key": remote.hex(),
            "namespace": gitsync.namespace(cluster_id),
            "refs": written,
            "signed_at": signed.timestamp,
            "seconds": {
                "fetch": round(fetched - started, 3),
                "push": round(time.monotonic() - fetched, 3),
            },
        }
    raise CompareFailedError("the origin's refs kept moving")  # pragma: no cover


async def _local_repo_url(service: FederationService, name: str, remote: bytes) -> str:
    """The local forge's URL of ``name``, created (private) on first sync."""
    try:
        shown = await service.node.call("forge.repo_show", {"repo": name})
    except NotFoundError:
        await service.node.call(
            "forge.repo_create",
            {"repo": name, "private": True, "description": f"synced from cluster {key_id(remote)}"},
        )
        shown = await service.node.call("forge.repo_show", {"repo": name})
    url = str(shown["clone_url"])
    if not url:
        raise UnavailableError("the local forge serves no git HTTP on this node")
    return url


async def _endpoint(service: FederationService, remote: bytes, endpoint: str | None) -> str:
    """``endpoint``, else the first one cluster ``remote`` announces."""
    if endpoint:
        return endpoint
    announcement = await service.discover(remote)
    if not announcement.endpoints:
        raise UnavailableError(f"cluster {key_id(remote)} announces no endpoint")
    return announcement.endpoints[0]


async def pull_resource(
    service: FederationService,
    remote: bytes,
    resource: str,
    channel: str,
    token: str,
    endpoint: str | None,
) -> dict[str, Any]:
    """Sync a ``pijul`` channel, ``blob`` share or ``kv`` prefix from cluster ``remote``."""
    await service.check_not_blocked(remote)
    where = await _endpoint(service, remote, endpoint)
    kind = resource.partition(":")[0]
    if kind == "pijul":
        from aspen_federation.pijulsync import pull_pijul

        return await pull_pijul(service, remote, resource, channel, token, where)
    if kind == "blob":
        from aspen_federation.blobsync import pull_blobs

        return await pull_blobs(service, remote, resource, token, where)
    from aspen_federation.kvsync import pull_kv

    return await pull_kv(service, remote, resource, token, where)
