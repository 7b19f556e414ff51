"""Blob metadata as cluster state: keys under ``/_aspen/blobs/`` written by transactions.

Keys (values are JSON):

* ``b/<hash>`` ``{"size", "created", "touched", "replicas"}``: the blob exists. Every put,
  pin and unpin of the blob rewrites it (``touched``), so its ``mod_revision`` changes;
  GC deletes it only if that revision is the one it examined, which is how GC cannot race
  a concurrent put or pin of the same hash.
* ``h/<hash>/<node id>`` ``{"at"}``: that node holds a verified replica.
* ``p/<name>`` ``"<hash>"`` and ``r/<hash>/<name>``: the pin ``name`` keeps the blob.
* ``config`` ``{"replicas"}``: the cluster's default replica count.
* ``repairing`` ``{"node", "hashes"}``: the copies the repairer has in flight.

Writes go through a client of the cluster (they reach the leader from any node); times
are decided by the writer before the write enters the log.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aspen.client.aclient import AsyncClient
from aspen.client.txn import Compare, Op, TxnOp
from aspen.errors import CompareFailedError, InvalidArgumentError, NotFoundError
from aspen.kv.keys import prefix_end
from aspen.limits import BLOB_LIST_LIMIT, BLOB_LIST_MAX_PINS, BLOB_MAX_PIN_NAME_BYTES

__all__ = ["PREFIX", "BlobInfo", "BlobMeta", "BlobPage", "PinPage", "check_pin_name"]

#: Every key of the blob store starts with this.
PREFIX = "/_aspen/blobs/"
BLOB = PREFIX + "b/"
HOLDER = PREFIX + "h/"
PIN = PREFIX + "p/"
PINNED = PREFIX + "r/"
CONFIG = PREFIX + "config"
REPAIRING = PREFIX + "repairing"
#: Times a read-modify-write of a blob record is tried against concurrent writers.
_CAS_ATTEMPTS = 20


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def check_pin_name(name: object) -> str:
    """Return ``name`` if it is a usable pin name, else raise ``invalid_argument``."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidArgumentError("a pin name is a non-empty string", field="name")
    if len(name.encode()) > BLOB_MAX_PIN_NAME_BYTES:
        raise InvalidArgumentError(
            f"pin name over BLOB_MAX_PIN_NAME_BYTES ({BLOB_MAX_PIN_NAME_BYTES})", field="name"
        )
    return name


@dataclass
class BlobInfo:
    """What the cluster knows of one blob."""

    hash: str
    size: int
    created: float
    touched: float
    replicas: int
    mod_revision: int
    holders: list[str] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    #: Only the first ``BLOB_LIST_MAX_PINS`` pins are in ``pins`` (``BlobMeta.page``).
    pins_truncated: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The map ``blob.stat`` answers."""
        return {
            "hash": self.hash,
            "size": self.size,
            "created": self.created,
            "replicas": self.replicas,
            "holders": sorted(self.holders),
            "pins": sorted(self.pins),
            **({"pins_truncated": True} if self.pins_truncated else {}),
        }


@dataclass
class BlobPage:
    """One page of blob records in hash order (``BlobMeta.page``); ``more``: blobs follow
    the last one (ask again with ``after`` = its hash)."""

    blobs: list[BlobInfo]
    more: bool


@dataclass
class PinPage:
    """One page of pins in name order (``BlobMeta.pin_page``): ``(name, hash)`` pairs;
    ``more``: pins follow the last one (ask again with ``after`` = its name)."""

    pins: list[tuple[str, str]]
    more: bool


def _after(prefix: str, after: str) -> str:
    """The first key of a page: just past ``prefix + after``, or ``prefix`` itself."""
    return f"{prefix}{after}\0" if after else prefix


def _end_of(prefix: str) -> bytes:
    return prefix_end(prefix.encode())


class BlobMeta:
    """Reads and writes the blob records through ``client`` (a client of the cluster)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    # ------------------------------------------------------------------ reads
    async def _names_under(self, prefix: str, serializable: bool) -> list[str]:
        names = []
        async for kv in self.client.kv.scan(prefix, keys_only=True, serializable=serializable):
            names.append(kv.key.decode()[len(prefix) :])
        return names

    async def get(self, digest: str, *, serializable: bool = False) -> BlobInfo | None:
        """The record of ``digest`` with its holders and pins (one read), or ``None``; with
        ``serializable``, this node's view of the record alone (holders and pins empty)."""
        ops = [
            Op.get(BLOB + digest),
            Op.range(f"{HOLDER}{digest}/", keys_only=True),
            Op.range(f"{PINNED}{digest}/", keys_only=True, limit=BLOB_LIST_LIMIT),
        ]
        if serializable:  # this node's view of the record alone (no holders or pins)
            kv = await self.client.kv.get(BLOB + digest, serializable=True)
            return None if kv is None else _info(digest, kv.value, kv.mod_revision)
        record, holders, pins = (await self.client.kv.txn([], ops)).responses
        if not record.kvs:  # type: ignore[union-attr]
            return None
        kv = record.kvs[0]  # type: ignore[union-attr]
        info = _info(digest, kv.value, kv.mod_revision)
        info.holders = [k.key.decode().rsplit("/", 1)[1] for k in holders.kvs]  # type: ignore[union-attr]
        info.pins = [k.key.decode().split("/", 5)[5] for k in pins.kvs]  # type: ignore[union-attr]
        return info

    async def exists(self, digest: str) -> bool:
        """Whether the cluster records ``digest`` (a linearizable read: a node that is still
        catching up must not take its stale state for the cluster's)."""
        return await self.client.kv.get(BLOB + digest) is not None

    async def require(self, digest: str, *, serializable: bool = False) -> BlobInfo:
        """Like :meth:`get`, but ``not_found`` when the blob does not exist."""
        info = await self.get(digest, serializable=serializable)
        if info is None:
            raise NotFoundError(f"blob {digest} not found", hash=digest)
        return info

    async def pin_names(self, digest: str) -> AsyncIterator[str]:
        """The names of the pins keeping ``digest``, in name order (read page by page)."""
        prefix = f"{PINNED}{digest}/"
        async for kv in self.client.kv.scan(prefix, keys_only=True):
            yield kv.key.decode()[len(prefix) :]

    async def holder_ids(self, digest: str) -> list[str]:
        """The nodes recorded as holding ``digest``."""
        return await self._names_under(f"{HOLDER}{digest}/", False)

    async def blobs(self, *, serializable: bool = True) -> AsyncIterator[BlobInfo]:
        """Every blob record (without holders or pins), in hash order."""
        async for kv in self.client.kv.scan(BLOB, serializable=serializable):
            yield _info(kv.key.decode()[len(BLOB) :], kv.value, kv.mod_revision)

    async def page(self, *, after: str = "", limit: int = BLOB_LIST_LIMIT) -> BlobPage:
        """At most ``limit`` blobs whose hash sorts after ``after``, with their holders and
        pins, all read at one revision (a linearizable first read, then that revision).

        The pins of one page are bounded by ``BLOB_LIST_MAX_PINS``: the page ends before
        the first blob whose pins would pass it (``more`` is then set), and a first blob
        with more pins than that lists the first ``BLOB_LIST_MAX_PINS`` of them, with
        ``pins_truncated`` set on it."""
        first = await self.client.kv.range(_after(BLOB, after), end=_end_of(BLOB), limit=limit)
        blobs = [_info(kv.key.decode()[len(BLOB) :], kv.value, kv.mod_revision) for kv in first]
        if not blobs:
            return BlobPage([], False)
        by_hash = {info.hash: info for info in blobs}
        lo, hi, revision = blobs[0].hash, blobs[-1].hash, first.revision
        async for kv in self.client.kv.scan(
            f"{HOLDER}{lo}/", end=_end_of(f"{HOLDER}{hi}/"), keys_only=True, revision=revision
        ):
            digest, _, node = kv.key.decode()[len(HOLDER) :].partition("/")
            if digest in by_hash:
                by_hash[digest].holders.append(node)
        more, pins_read = first.more, 0
        async for kv in self.client.kv.scan(
            f"{PINNED}{lo}/", end=_end_of(f"{PINNED}{hi}/"), keys_only=True, revision=revision
        ):
            digest, _, name = kv.key.decode()[len(PINNED) :].partition("/")
            if digest not in by_hash:
                continue
            if pins_read == BLOB_LIST_MAX_PINS:
                if digest == lo:  # the page's first blob alone has too many: list a part
                    by_hash[lo].pins_truncated = True
                    blobs = blobs[:1]
                else:  # end the page before the blob whose pins do not fit
                    blobs = blobs[: blobs.index(by_hash[digest])]
                more = True
                break
            by_hash[digest].pins.append(name)
            pins_read += 1
        return BlobPage(blobs, more)

    async def pin_page(self, prefix: str = "", *, after: str = "", limit: int) -> PinPage:
        """At most ``limit`` pins whose name starts with ``prefix`` and sorts after
        ``after``, in name order (one linearizable read)."""
        start = max(PIN + prefix, _after(PIN, after))  # an ``after`` below the prefix: its start
        result = await self.client.kv.range(start, end=_end_of(PIN + prefix), limit=limit)
        pins = [(kv.key.decode()[len(PIN) :], str(json.loads(kv.value))) for kv in result]
        return PinPage(pins, result.more)

    async def infos(self, digests: list[str]) -> dict[str, BlobInfo]:
        """The records (without holders or pins) of ``digests`` that exist, in one read."""
        if not digests:
            return {}
        ops = [Op.get(BLOB + digest) for digest in digests]
        out: dict[str, BlobInfo] = {}
        for response in (await self.client.kv.txn([], ops)).responses:
            for kv in response.kvs:  # type: ignore[union-attr]
                digest = kv.key.decode()[len(BLOB) :]
                out[digest] = _info(digest, kv.value, kv.mod_revision)
        return out

    async def holders(self, *, serializable: bool = True) -> dict[str, list[str]]:
        """Holders of every blob: ``{hash: [node ids]}``."""
        out: dict[str, list[str]] = {}
        async for kv in self.client.kv.scan(HOLDER, keys_only=True, serializable=serializable):
            digest, _, node = kv.key.decode()[len(HOLDER) :].partition("/")
            out.setdefault(digest, []).append(node)
        return out

    async def pinned(self, *, serializable: bool = True) -> set[str]:
        """Hashes that at least one pin keeps."""
        names = await self._names_under(PINNED, serializable)
        return {name.partition("/")[0] for name in names}

    async def pins(self) -> dict[str, str]:
        """Every pin: ``{name: hash}``."""
        return {
            kv.key.decode()[len(PIN) :]: json.loads(kv.value)
            async for kv in self.client.kv.scan(PIN)
        }

    async def replicas_setting(self) -> int | None:
        """The cluster's default replica count, if one was set."""
        kv = await self.client.kv.get(CONFIG, serializable=True)
        return None if kv is None else int(json.loads(kv.value)["replicas"])

    async def repairing(self) -> list[str]:
        """Hashes the repairer reported as being copied."""
        kv = await self.client.kv.get(REPAIRING)
        return [] if kv is None else list(json.loads(kv.value).get("hashes", []))

    # ------------------------------------------------------------------ writes
    async def _touch(
        self, digest: str, size: int, replicas: int | None, ops: list[TxnOp], create: bool
    ) -> None:
        """Rewrite ``b/<digest>`` (``touched`` = now) together with ``ops``, atomically;
        create it when ``create``, else raise ``not_found`` if it is absent."""
        if create:  # most puts are of new blobs: try to create the record without a read
            now = time.time()
            record = {"size": size, "created": now, "touched": now, "replicas": replicas}
            result = await self.client.kv.txn(
                [Compare.create_revision(BLOB + digest) == 0],
                [Op.put(BLOB + digest, _dump(record)), *ops],
            )
            if result.succeeded:
                return
        for _ in range(_CAS_ATTEMPTS):
            kv = await self.client.kv.get(BLOB + digest)
            now = time.time()
            if kv is None:
                if not create:
                    raise NotFoundError(f"blob {digest} not found", hash=digest)
                record = {"size": size, "created": now, "touched": now, "replicas": replicas}
                guard = Compare.create_revision(BLOB + digest) == 0
            else:
                record = json.loads(kv.value)
                record["touched"] = now
                if replicas is not None:
                    record["replicas"] = replicas
                guard = Compare.mod_revision(BLOB + digest) == kv.mod_revision
            result = await self.client.kv.txn([guard], [Op.put(BLOB + digest, _dump(record)), *ops])
            if result.succeeded:
                return
        raise CompareFailedError(f"blob {digest} changed too often to update; try again")

    async def commit_put(
        self, digest: str, size: int, holders: list[str], replicas: int, pin: str | None
    ) -> None:
        """Record a put: the blob, the nodes that hold it, and its pin if one is named."""
        ops = [Op.put(f"{HOLDER}{digest}/{node}", _dump({"at": time.time()})) for node in holders]
        if pin is not None:
            ops += await self._pin_ops(pin, digest)
        await self._touch(digest, size, replicas, ops, create=True)

    async def add_holder(self, digest: str, node: str) -> bool:
        """Record that ``node`` holds ``digest``; False if the blob no longer exists."""
        key = BLOB + digest
        result = await self.client.kv.txn(
            [Compare.create_revision(key) > 0],
            [Op.put(f"{HOLDER}{digest}/{node}", _dump({"at": time.time()}))],
        )
        return result.succeeded

    async def remove_holder(self, digest: str, node: str) -> None:
        """Record that ``node`` no longer holds ``digest``."""
        await self.client.kv.delete(f"{HOLDER}{digest}/{node}")

    async def _pin_ops(self, name: str, digest: str) -> list[TxnOp]:
        ops = [Op.put(PIN + name, _dump(digest)), Op.put(f"{PINNED}{digest}/{name}", b"")]
        old = await self.client.kv.get(PIN + name)
        if old is not None and json.loads(old.value) != digest:
            ops.append(Op.delete(f"{PINNED}{json.loads(old.value)}/{name}"))
        return ops

    async def pin(self, name: str, digest: str) -> None:
        """Keep ``digest`` under the pin ``name`` (moving the pin if it kept another)."""
        await self._touch(digest, 0, None, await self._pin_ops(name, digest), create=False)

    async def unpin(self, name: str) -> str:
        """Drop the pin ``name``; return the hash it kept (``not_found`` if no such pin)."""
        kv = await self.client.kv.get(PIN + name)
        if kv is None:
            raise NotFoundError(f"no pin named {name!r}", name=name)
        digest = json.loads(kv.value)
        ops = [Op.delete(PIN + name), Op.delete(f"{PINNED}{digest}/{name}")]
        try:
            await self._touch(digest, 0, None, ops, create=False)
        except NotFoundError:
            await self.client.kv.txn([], ops)
        return str(digest)

    async def forget(self, info: BlobInfo) -> bool:
        """GC: delete the blob and its holders if its record is unchanged since ``info``
        was read (so a concurrent put or pin wins); return whether it was deleted."""
        key = BLOB + info.hash
        result = await self.client.kv.txn(
            [Compare.mod_revision(key) == info.mod_revision],
            [Op.delete(key), Op.delete(f"{HOLDER}{info.hash}/", prefix=True)],
        )
        return result.succeeded

    async def set_replicas(self, replicas: int) -> None:
        """Set the cluster's default replica count."""
        await self.client.kv.put(CONFIG, _dump({"replicas": replicas}))

    async def set_repairing(self, node: str, hashes: list[str]) -> None:
        """Publish the copies the repairer has in flight (for ``aspen blob status``)."""
        await self.client.kv.put(REPAIRING, _dump({"node": node, "hashes": hashes}))


def _info(digest: str, raw: bytes, mod_revision: int) -> BlobInfo:
    record = json.loads(raw)
    return BlobInfo(
        hash=digest,
        size=int(record["size"]),
        created=float(record["created"]),
        touched=float(record.get("touched", record["created"])),
        replicas=int(record.get("replicas") or 0),
        mod_revision=mod_revision,
    )
