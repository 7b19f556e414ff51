"""Pull sync of a KV prefix from a remote cluster, in generations.

The origin (``federation.kv_state``) reads the shared prefix at one revision and signs
``{revision, count, bytes, digest}``, the digest a SHA-256 over every key and value in key
order (bounded by ``KV_SYNC_MAX_KEYS`` / ``KV_SYNC_MAX_BYTES``). The puller reads the same
prefix at that revision with the ``kv:read:PREFIX`` token the origin granted, page by page
(``KV_SYNC_PAGE_KEYS`` a request, and the core's ``MAX_RANGE_PAGE_BYTES``), and writes
each page into a **staging generation** in its own ``kv.txn``:

    federation/remotes/<cluster id>/kv/<prefix id>/<generation>/<key without the prefix>

``<prefix id>`` is a hash of the origin prefix, so ``/app`` and ``/app/`` of one cluster
never share keys. The sync record (``/_aspen/federation/synced/kv/<cluster id>/<prefix>``)
says which generation is visible and where staging stands (the generation, the signed
state it stages, the last key written); every write to it is guarded by a compare on its
version, so two syncs of one prefix cannot interleave. When every page is in and the
running digest, count and bytes equal the signed ones, ONE small txn makes the staging
generation the visible one; the old generation is then deleted in slices of
``KV_SYNC_DELETE_SLICE`` keys (a generation left over by a killed puller is deleted by the
next sync). A sync interrupted mid-way (the leader killed) resumes at the last key written
when the origin still signs the same snapshot, and starts a new generation otherwise. A
tampered page changes the digest: the staging generation is dropped, nothing becomes
visible. A re-run of the snapshot already visible writes nothing.

Readers go through :func:`read_synced` (``federation.kv_read``, ``aspen federation
kv-get``): it reads the record and then the visible generation at the record's revision,
so it sees one complete generation even while the next swap and the delete run.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import msgpack

from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from aspen.kv import paging
from aspen_federation import limits
from aspen_federation.identity import key_id
from aspen_federation.signedstate import SignedState, SignedStateError

__all__ = [
    "Snapshot",
    "generation_prefix",
    "kv_state",
    "pull_kv",
    "read_synced",
    "sync_record_key",
]

#: Where the puller keeps what it synced: ``<this><cluster id>/kv/<prefix id>/<gen>/…``.
NAMESPACE = b"federation/remotes/"
#: The sync record of one remote prefix, under the plugin's state.
RECORDS = b"/_aspen/federation/synced/kv/"


def generation_prefix(cluster_id: str, prefix: str, generation: int) -> bytes:
    """The local prefix of generation ``generation`` of cluster ``cluster_id``'s
    ``prefix`` (``/app/`` of ``abc``, 3 -> ``federation/remotes/abc/kv/<id>/3/``)."""
    pid = hashlib.sha256(prefix.encode()).hexdigest()[:16]
    return NAMESPACE + f"{cluster_id}/kv/{pid}/{generation}/".encode()


def sync_record_key(cluster_id: str, prefix: str) -> bytes:
    """The key of the sync record of ``prefix`` of cluster ``cluster_id``."""
    return RECORDS + cluster_id.encode() + b"/" + prefix.encode()


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (b"\\0": to the end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


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

    def matches(self, state: dict[str, Any]) -> bool:
        """Whether this is the snapshot ``state`` signs."""
        return (self.digest, self.count, self.bytes) == (
            state["digest"],
            state["count"],
            state["bytes"],
        )


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


class _Record:
    """A prefix's sync record and the version a write of it compares against.

    Fields: ``state`` (the visible snapshot's signed state, ``{}`` before the first
    sync), ``generation`` (visible, 0 = none), ``next`` (the next generation number),
    ``staging`` (``{generation, state, last}`` or ``None``), ``stale`` (generations to
    delete)."""

    def __init__(self, service: Any, cluster_id: str, prefix: str) -> None:
        self.call = service.node.call
        self.cluster_id = cluster_id
        self.prefix = prefix
        self.key = sync_record_key(cluster_id, prefix)
        self.version = 0
        self.data: dict[str, Any] = {}

    async def load(self) -> None:
        """Read the record (a fresh one when there is none)."""
        got = await self.call("kv.range", {"key": self.key})
        if got["kvs"]:
            self.version = int(got["kvs"][0]["version"])
            self.data = dict(msgpack.unpackb(got["kvs"][0]["value"], raw=False))
        else:
            self.version, self.data = 0, {}
        self.data.setdefault("state", {})
        self.data.setdefault("generation", 0)
        self.data.setdefault("next", 1)
        self.data.setdefault("staging", None)
        self.data.setdefault("stale", [])

    def area(self, generation: int) -> bytes:
        """The local prefix of ``generation``."""
        return generation_prefix(self.cluster_id, self.prefix, generation)

    async def save(self, ops: list[dict[str, Any]] | None = None) -> None:
        """Write the record with ``ops`` in one txn, if nobody wrote it meanwhile."""
        value = msgpack.packb(self.data, use_bin_type=True)
        compare = {"key": self.key, "target": "version", "op": "==", "value": self.version}
        success = [*(ops or []), {"put": {"key": self.key, "value": value}}]
        answer = await self.call("kv.txn", {"compare": [compare], "success": success})
        if not answer["succeeded"]:
            raise CompareFailedError(f"another sync of {self.prefix} ran meanwhile: run it again")
        self.version += 1

    async def drop_stale(self) -> int:
        """Delete the stale generations in bounded slices; how many keys went."""
        if not self.data["stale"]:
            return 0
        deleted = 0
        for generation in self.data["stale"]:
            deleted += await _delete_area(self.call, self.area(int(generation)))
        self.data["stale"] = []
        await self.save()
        return deleted


async def _delete_area(call: Any, area: bytes) -> int:
    """Delete every key under ``area``, ``KV_SYNC_DELETE_SLICE`` keys per request."""
    deleted = 0
    while True:
        page = await paging.page_after(
            call, area, limit=limits.KV_SYNC_DELETE_SLICE, keys_only=True
        )
        if not page["kvs"]:
            return deleted
        first, last = bytes(page["kvs"][0]["key"]), bytes(page["kvs"][-1]["key"])
        await call("kv.delete", {"key": first, "end": last + b"\0"})
        deleted += len(page["kvs"])


async def _pages(
    remote: Any, prefix: bytes, revision: int, after: bytes
) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    """The origin's key-values of ``prefix`` at ``revision`` after ``after``, a bounded
    page at a time."""
    start = after + b"\0" if after else prefix
    pages = paging.pages(
        remote.call,
        start,
        end=_range_end(prefix),
        revision=revision,
        page_size=limits.KV_SYNC_PAGE_KEYS,
    )
    async for page in pages:
        out = []
        for kv in page["kvs"]:
            key, value = bytes(kv["key"]), bytes(kv["value"])
            if not key.startswith(prefix) or key <= after:
                raise InvalidArgumentError(f"the origin answered a key outside {prefix!r}")
            out.append((key, value))
        if out:
            yield out


async def _staged(record: _Record, generation: int) -> Snapshot:
    """The running snapshot of what a staging generation holds (to resume it)."""
    snapshot = Snapshot()
    area = record.area(generation)
    origin = record.prefix.encode()
    async for kv in paging.scan(record.call, area, local=True):
        snapshot.add(origin + bytes(kv["key"])[len(area) :], bytes(kv["value"]))
    return snapshot


async def pull_kv(
    service: Any, remote: bytes, resource: str, token: str, endpoint: str
) -> dict[str, Any]:
    """Sync the KV prefix ``resource`` of cluster ``remote`` into a new generation and make
    it visible in one step (see the module docstring)."""
    import aspen

    prefix = resource.partition(":")[2]
    record = _Record(service, key_id(remote), prefix)
    async with aspen.aconnect(endpoint, token=token) as client:
        wire = await client.call("federation.kv_state", {"kind": "kv", "name": prefix})
        signed = SignedState.verified(wire, key=remote, resource=resource)
        service.seen(remote)
        state = dict(signed.state)
        await record.load()
        await record.drop_stale()
        result = {
            "resource": resource,
            "cluster_key": remote.hex(),
            "revision": state["revision"],
            "keys": state["count"],
        }
        visible = int(record.data["generation"])
        if visible and record.data["state"] == state:
            area = record.area(visible).decode()
            return {**result, "generation": visible, "namespace": area, "written": 0}
        staging, snapshot = await _start_staging(record, state)
        written = await _stage(client, record, staging, snapshot, state)
    return {**result, **await _swap(record, staging, snapshot, state), "written": written}


async def _start_staging(record: _Record, state: dict[str, Any]) -> tuple[dict[str, Any], Snapshot]:
    """The staging to fill: the one a killed sync left, if it stages this very snapshot,
    else a new generation (a different one left over becomes stale)."""
    staging = record.data["staging"]
    if staging is not None and staging["state"] == state:
        return staging, await _staged(record, int(staging["generation"]))
    if staging is not None:
        record.data["stale"].append(staging["generation"])
    staging = {"generation": record.data["next"], "state": state, "last": b""}
    record.data["next"] += 1
    record.data["staging"] = staging
    await record.save()
    await record.drop_stale()
    return staging, Snapshot()


async def _stage(
    client: Any,
    record: _Record,
    staging: dict[str, Any],
    snapshot: Snapshot,
    state: dict[str, Any],
) -> int:
    """Fetch the pages after ``staging["last"]`` into the staging generation, one txn
    each; how many keys were written."""
    area = record.area(int(staging["generation"]))
    origin = record.prefix.encode()
    written = 0
    revision = int(state["revision"])
    async for page in _pages(client, origin, revision, bytes(staging["last"])):
        for key, value in page:
            snapshot.add(key, value)
        ops = [{"put": {"key": area + k[len(origin) :], "value": v}} for k, v in page]
        staging["last"] = page[-1][0]
        await record.save(ops)
        written += len(page)
    return written


async def _swap(
    record: _Record, staging: dict[str, Any], snapshot: Snapshot, state: dict[str, Any]
) -> dict[str, Any]:
    """Make the staging generation visible in one txn if it is the signed snapshot (else
    drop it); then delete the generation it replaced."""
    generation = int(staging["generation"])
    record.data["staging"] = None
    if not snapshot.matches(state):
        record.data["stale"].append(generation)
        await record.save()
        await record.drop_stale()
        raise SignedStateError(
            f"the KV pages of kv:{record.prefix} do not match the signed snapshot: sync refused"
        )
    old = int(record.data["generation"])
    if old:
        record.data["stale"].append(old)
    record.data["generation"] = generation
    record.data["state"] = state
    await record.save()
    replaced = await record.drop_stale()
    area = record.area(generation).decode()
    return {"generation": generation, "namespace": area, "replaced": replaced}


async def read_synced(
    service: Any, remote: bytes, prefix: str, after: bytes = b"", limit: int = 1000
) -> dict[str, Any]:
    """One page of the visible generation of ``prefix`` synced from cluster ``remote``:
    ``{revision, generation, kvs: [{key, value}], more}`` with the origin's keys, read at
    the revision the record was read at (so always one complete generation)."""
    cluster_id = key_id(remote)
    got = await service.node.call("kv.range", {"key": sync_record_key(cluster_id, prefix)})
    record = dict(msgpack.unpackb(got["kvs"][0]["value"], raw=False)) if got["kvs"] else {}
    if not record.get("generation"):
        raise NotFoundError(f"nothing synced from kv:{prefix} of cluster {cluster_id}")
    area = generation_prefix(cluster_id, prefix, int(record["generation"]))
    start = area + after.removeprefix(prefix.encode()) + b"\0" if after else area
    page = await service.node.call(
        "kv.range",
        {
            "key": start,
            "end": _range_end(area),
            "limit": limit,
            "revision": int(got["header"]["revision"]),
        },
    )
    origin = prefix.encode()
    return {
        "revision": record["state"]["revision"],
        "generation": record["generation"],
        "kvs": [
            {"key": origin + bytes(kv["key"])[len(area) :], "value": bytes(kv["value"])}
            for kv in page["kvs"]
        ],
        "more": bool(page.get("more")),
    }
