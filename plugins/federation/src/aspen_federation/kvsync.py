"""Pull sync of a KV prefix from a remote cluster.

The origin (``federation.kv_state``) reads the shared prefix at one revision and signs
``{revision, count, bytes, digest}``, the digest a SHA-256 over every key and value in key
order (bounded by ``KV_SYNC_MAX_KEYS`` / ``KV_SYNC_MAX_BYTES``). The puller then reads the
same prefix at that revision with the ``kv:read:PREFIX`` token the origin granted (core
``kv.range`` pages, each bounded by ``MAX_RANGE_PAGE_BYTES``), checks the digest, and
writes the snapshot under ``federation/remotes/<cluster id>/<prefix>…`` in ONE
``kv.txn``: changed keys put, keys the origin no longer has deleted, the sync record
updated, guarded by a compare on that record so two syncs cannot interleave. A reader
sees the old snapshot or the new one, never a mix; a tampered page changes the digest
and nothing is written; a re-run of the same snapshot writes only the sync record.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from aspen.errors import CompareFailedError, InvalidArgumentError, ResourceExhaustedError
from aspen.kv import paging
from aspen_federation import limits
from aspen_federation.identity import key_id
from aspen_federation.signedstate import SignedState

__all__ = ["Snapshot", "kv_state", "namespace", "pull_kv", "sync_record_key"]

#: Where the puller keeps what it synced: ``<this>/<cluster id>/<origin key>``.
NAMESPACE = b"federation/remotes/"
#: The sync record of one remote prefix (its revision and digest), under the plugin's state.
RECORDS = b"/_aspen/federation/synced/kv/"


def namespace(cluster_id: str, prefix: str) -> bytes:
    """The local prefix a remote cluster's KV prefix is written under
    (``/app/`` of cluster ``abc`` -> ``federation/remotes/abc/app/``)."""
    return NAMESPACE + cluster_id.encode() + b"/" + prefix.removeprefix("/").encode()


def sync_record_key(cluster_id: str, prefix: str) -> bytes:
    """The key of the record of the last snapshot synced from ``prefix``."""
    return RECORDS + cluster_id.encode() + b"/" + prefix.encode()


class Snapshot:
    """The running digest and bounds of a KV snapshot, fed page by page."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0
        self.bytes = 0

    def add(self, key: bytes, value: bytes) -> None:
        """One key-value, in key order (``resource_exhausted`` past the bounds)."""
        self.count += 1
        self.bytes += len(key) + len(value)
        if self.count > limits.KV_SYNC_MAX_KEYS or self.bytes > limits.KV_SYNC_MAX_BYTES:
            raise ResourceExhaustedError(
                f"KV prefix over KV_SYNC_MAX_KEYS ({limits.KV_SYNC_MAX_KEYS}) keys or "
                f"KV_SYNC_MAX_BYTES ({limits.KV_SYNC_MAX_BYTES}) bytes"
            )
        self._hash.update(msgpack.packb([key, value], use_bin_type=True))

    @property
    def digest(self) -> str:
        """The SHA-256 over every key-value added so far (hex)."""
        return self._hash.hexdigest()


async def kv_state(service: Any, resource: str) -> SignedState:
    """The origin side: the shared prefix's snapshot, signed (``not_found`` if unshared)."""
    from aspen_federation.sync import require_shared

    await require_shared(service, resource)
    prefix = resource.partition(":")[2].encode()
    snapshot = Snapshot()
    revision = 0
    async for page in paging.pages(service.node.call, prefix, local=True):
        revision = revision or int(page["header"]["revision"])
        for kv in page["kvs"]:
            snapshot.add(bytes(kv["key"]), bytes(kv["value"]))
    key, _ = await service.identity()
    state = {
        "revision": revision,
        "count": snapshot.count,
        "bytes": snapshot.bytes,
        "digest": snapshot.digest,
    }
    return SignedState.create(key, resource, state)


async def _fetch(remote: Any, prefix: bytes, revision: int) -> tuple[list[Any], Snapshot]:
    """Every key-value of ``prefix`` at ``revision`` from the origin, bounded."""
    records: list[tuple[bytes, bytes]] = []
    snapshot = Snapshot()
    async for page in paging.pages(remote.call, prefix, revision=revision):
        for kv in page["kvs"]:
            key, value = bytes(kv["key"]), bytes(kv["value"])
            if not key.startswith(prefix):
                raise InvalidArgumentError(f"the origin answered a key outside {prefix!r}")
            snapshot.add(key, value)
            records.append((key, value))
    return records, snapshot


async def pull_kv(
    service: Any, remote: bytes, resource: str, token: str, endpoint: str
) -> dict[str, Any]:
    """Sync the KV prefix ``resource`` of cluster ``remote`` into the local namespace."""
    import aspen
    from aspen_federation.signedstate import SignedStateError

    prefix = resource.partition(":")[2]
    cluster_id = key_id(remote)
    async with aspen.aconnect(endpoint, token=token) as client:
        wire = await client.call("federation.kv_state", {"kind": "kv", "name": prefix})
        signed = SignedState.verified(wire, key=remote, resource=resource)
        service.seen(remote)
        state = signed.state
        records, snapshot = await _fetch(client, prefix.encode(), int(state["revision"]))
    if (snapshot.digest, snapshot.count, snapshot.bytes) != (
        state["digest"],
        state["count"],
        state["bytes"],
    ):
        raise SignedStateError(
            f"the KV pages of {resource} do not match the signed snapshot: sync refused"
        )
    written, deleted = await _write(service, cluster_id, prefix, records, state)
    return {
        "resource": resource,
        "cluster_key": remote.hex(),
        "namespace": namespace(cluster_id, prefix).decode(),
        "revision": state["revision"],
        "keys": snapshot.count,
        "written": written,
        "deleted": deleted,
    }


async def _write(
    service: Any,
    cluster_id: str,
    prefix: str,
    records: list[tuple[bytes, bytes]],
    state: dict[str, Any],
) -> tuple[int, int]:
    """One ``kv.txn``: the changed keys, the deletes, the sync record; how many of each."""
    call = service.node.call
    local = namespace(cluster_id, prefix)
    record_key = sync_record_key(cluster_id, prefix)
    got = await call("kv.range", {"key": record_key})
    version = int(got["kvs"][0]["version"]) if got["kvs"] else 0
    have: dict[bytes, bytes] = {}
    async for kv in paging.scan(call, local, local=True):
        have[bytes(kv["key"])] = bytes(kv["value"])
    new = {local + key[len(prefix.encode()) :]: value for key, value in records}
    ops: list[dict[str, Any]] = [
        {"put": {"key": k, "value": v}} for k, v in new.items() if have.get(k) != v
    ]
    puts = len(ops)
    gone = [k for k in have if k not in new]
    ops += [{"delete": {"key": k}} for k in gone]
    ops.append({"put": {"key": record_key, "value": msgpack.packb(state, use_bin_type=True)}})
    compare = {"key": record_key, "target": "version", "op": "==", "value": version}
    answer = await call("kv.txn", {"compare": [compare], "success": ops, "failure": []})
    if not answer["succeeded"]:
        raise CompareFailedError(f"another sync of {prefix} ran meanwhile: run it again")
    return puts, len(gone)
