"""``node.blobs``: one node's blob service (store, metadata, transfer, repair, GC).

A put is written to this node's store while it is hashed, then copied to other members
(each pulls it from here on a ``fetch`` instruction) until ``R`` nodes hold it durably, then
recorded in KV with its holders in one transaction: only then is it acknowledged and
visible. A read is served from the local replica, piece by verified piece; a node without
one (or whose replica fails its check) reads from a holder instead, from where it was.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from aspen.blobs.hashing import BlobRef, check_range, parse_hash
from aspen.blobs.meta import PREFIX as META_PREFIX
from aspen.blobs.meta import BlobInfo, BlobMeta, check_pin_name
from aspen.blobs.repair import Repairer
from aspen.blobs.settings import BlobSettings
from aspen.blobs.store import BLOBS_DIR, BlobCorruptError, BlobStore, BlobWriter
from aspen.blobs.tee import Tee
from aspen.blobs.transfer import PeerClients
from aspen.blobs.uploads import Upload, Uploads
from aspen.client.aclient import AsyncClient
from aspen.client.blobs import BlobSource, blob_pieces
from aspen.errors import AspenError, InvalidArgumentError, NotFoundError, UnavailableError
from aspen.limits import (
    BLOB_COPY_TIMEOUT_SECONDS,
    BLOB_DEFAULT_REPLICAS,
    BLOB_LIST_LIMIT,
    BLOB_LOCAL_GC_INTERVAL_SECONDS,
    BLOB_MAX_REPLICAS,
    BLOB_REPAIR_SCAN_BLOBS,
)
from aspen.rpc import params as p

if TYPE_CHECKING:
    from aspen.node.node import Node

__all__ = ["META_CAPABILITIES", "BlobService"]

log = logging.getLogger("aspen.blobs")

#: All the service's own client may do: read and write the blob metadata (``PREFIX``).
META_CAPABILITIES = (f"kv:read:{META_PREFIX}", f"kv:write:{META_PREFIX}")


class BlobService:
    """The blob store of one node; plugins reach it as ``node.blobs``."""

    def __init__(self, node: Node, settings: BlobSettings | None = None) -> None:
        self.node = node
        self.settings = settings or BlobSettings.from_env()
        self.store = BlobStore(
            node.data_dir / BLOBS_DIR,
            max_bytes=self.settings.max_bytes,
            reserve_bytes=self.settings.disk_reserve_bytes,
        )
        self.uploads = Uploads()
        self.peers = PeerClients(node)
        #: A client of the cluster (writes reach the leader from any node) holding only
        #: :data:`META_CAPABILITIES`, not the root token; set in run().
        self.client: AsyncClient
        self.meta: BlobMeta
        self.repairer = Repairer(self)

    # ------------------------------------------------------------------ life
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled: a client of the cluster for metadata, housekeeping (idle
        uploads, local GC, scrub) and, on the leader, the repairer. Ready (``node.blobs``
        usable) once ``task_status.started()``."""
        token = self.node.internal_token(META_CAPABILITIES)
        self.client = AsyncClient(self.node.endpoint, token)
        self.meta = BlobMeta(self.client)
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._housekeeping, name="blobs-housekeeping")
                tg.start_soon(self.repairer.run, name="blobs-repairer")
        finally:
            with anyio.CancelScope(shield=True):
                await self.client.aclose()
                await self.peers.aclose()

    async def _housekeeping(self) -> None:
        """Drop idle uploads, remove unreferenced local replicas, scrub now and then."""
        settings = self.settings
        next_scrub = time.monotonic() + settings.scrub_interval_seconds
        collect_every = min(settings.gc_grace_seconds / 4, BLOB_LOCAL_GC_INTERVAL_SECONDS)
        next_collect = time.monotonic() + collect_every
        while True:
            await anyio.sleep(min(settings.repair_interval_seconds, 1.0))
            self.uploads.reap(settings.upload_idle_seconds)
            try:
                if time.monotonic() >= next_collect:
                    await self.collect_local()
                    next_collect = time.monotonic() + collect_every
                if time.monotonic() >= next_scrub:
                    await self.scrub()
                    next_scrub = time.monotonic() + self.settings.scrub_interval_seconds
            except AspenError as exc:
                log.debug("blobs: housekeeping: %s", exc)
            except Exception:
                log.exception("blobs: housekeeping failed")

    # ------------------------------------------------------------------ the node API
    async def put(
        self,
        source: BlobSource,
        *,
        replicas: int | None = None,
        pin: str | None = None,
        size: int | None = None,
    ) -> BlobRef:
        """Store the bytes of ``source`` (bytes, or an (async) iterable of bytes) and
        return their :class:`BlobRef` once ``replicas`` nodes hold them durably."""
        if pin is not None:
            check_pin_name(pin)
        writer = await self._write(source, size)
        return await self.publish(writer, replicas, pin)

    async def put_durable(
        self, source: BlobSource, *, pin: str | None = None, size: int | None = None
    ) -> BlobRef:
        """Store the bytes of ``source`` like :meth:`put` at the cluster's replica count,
        but acknowledge them once a majority of the voters hold them if members are down
        (as durable as the Raft log that will name the blob); the repairer copies them to
        the rest when those members are back. ``unavailable`` below a majority."""
        if pin is not None:
            check_pin_name(pin)
        writer = await self._write(source, size)
        return await self.publish(writer, None, pin, minimum=self.majority())

    def majority(self) -> int:
        """How many nodes are a majority of the cluster's voters."""
        return len(self.node.parts.cluster.replicator.conf.voters) // 2 + 1

    async def _write(self, source: BlobSource, size: int | None) -> BlobWriter:
        """A writer holding the bytes of ``source`` (not yet committed)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            size = len(source)
        writer = await anyio.to_thread.run_sync(self.store.writer, size)
        try:
            async for piece in blob_pieces(source):
                await anyio.to_thread.run_sync(writer.write, piece)
        except BaseException:
            writer.abort()
            raise
        return writer

    async def open(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the verified bytes of ``digest`` (``[offset, offset + length)``)."""
        async for piece in self.read(parse_hash(digest), offset, length):
            yield piece

    async def stat(self, digest: str) -> dict[str, Any]:
        """``{"hash", "size", "holders", "pins", "replicas", "created"}`` (``not_found``)."""
        return (await self.meta.require(parse_hash(digest))).to_wire()

    async def pin(self, name: str, digest: str) -> None:
        """Keep ``digest`` under the pin ``name`` (a plugin prefixes names with its own)."""
        await self.meta.pin(check_pin_name(name), parse_hash(digest))

    async def unpin(self, name: str) -> str:
        """Drop the pin ``name``; return the hash it kept."""
        return await self.meta.unpin(check_pin_name(name))

    # ------------------------------------------------------------------ uploads (RPC)
    async def open_upload(
        self, connection: int, size: int | None, replicas: int | None, pin: str | None
    ) -> Upload:
        """Start an upload for a client connection, with the streams of its copies to
        ``replicas - 1`` other members."""
        if pin is not None:
            check_pin_name(pin)
        want = await self.replica_count(replicas)
        writer = await anyio.to_thread.run_sync(self.store.writer, size)
        upload = self.uploads.open(connection, writer, want, pin, size)
        if want > 1:
            upload.tee = Tee(self.node)
            upload.tee.open(self._other_members()[: want - 1], size)
        return upload

    async def close_upload(self, upload: Upload) -> BlobRef:
        """Finish an upload: commit it here, complete its copies, record it."""
        async with upload.lock:
            self.uploads.finish(upload)
            try:
                if upload.failed is not None:
                    raise upload.failed
                if upload.size is not None and upload.written != upload.size:
                    raise InvalidArgumentError(
                        f"the put announced {upload.size} bytes but sent {upload.written}",
                        field="size",
                    )
                return await self.publish(upload.writer, upload.replicas, upload.pin, upload.tee)
            except BaseException:
                upload.writer.abort()
                if upload.tee is not None:
                    upload.tee.abort()
                raise

    async def abort_upload(self, upload: Upload) -> None:
        """Drop an upload and what it wrote (and its copies)."""
        async with upload.lock:
            self.uploads.close(upload)

    async def receive_copy(
        self, peer_id: str, header: dict[str, Any], chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        """A member streams a copy of a put here (see :mod:`aspen.blobs.tee`): store it,
        answer its hash (the sender checks it; an unmatched copy is left to local GC)."""
        size = None if header.get("size") is None else p.require_int(header, "size", min=0)
        writer = await anyio.to_thread.run_sync(self.store.writer, size)
        try:
            async for piece in chunks:
                await anyio.to_thread.run_sync(writer.write, piece)
            ref = await anyio.to_thread.run_sync(writer.commit)
        finally:
            writer.abort()
        return {"hash": ref.hash, "size": ref.size}

    # ------------------------------------------------------------------ put: replicate, record
    async def publish(
        self,
        writer: BlobWriter,
        replicas: int | None,
        pin: str | None,
        tee: Tee | None = None,
        *,
        minimum: int | None = None,
    ) -> BlobRef:
        """Commit ``writer`` here, have the members of ``tee`` commit their streamed copies,
        copy the blob to more members until ``replicas`` nodes hold it, record it (with
        ``minimum``, accepted once that many hold it when ``replicas`` cannot be met)."""
        ref = await anyio.to_thread.run_sync(writer.commit)
        want = await self.replica_count(replicas)
        holders = [self.node.id]
        if tee is not None:
            holders += await tee.commit(ref.hash)
        holders = await self._replicate(ref, want, holders, min(want, minimum or want))
        await self.meta.commit_put(ref.hash, ref.size, holders, want, pin)
        return BlobRef(ref.hash, ref.size, len(holders))

    def _check_replicas(self, replicas: int) -> None:
        members = len(self.node.parts.cluster.members())
        if not 1 <= replicas <= min(BLOB_MAX_REPLICAS, members):
            raise InvalidArgumentError(
                f"replicas must be between 1 and the {members} member(s) of the cluster "
                f"(BLOB_MAX_REPLICAS = {BLOB_MAX_REPLICAS}), not {replicas}",
                field="replicas",
            )

    async def replica_count(self, requested: int | None) -> int:
        """``requested``, else the cluster's setting, else ``min(3, voters)``."""
        if requested is not None:
            self._check_replicas(requested)
            return requested
        setting = await self.meta.replicas_setting()
        voters = len(self.node.parts.cluster.replicator.conf.voters)
        return max(1, min(setting or BLOB_DEFAULT_REPLICAS, voters))

    def _other_members(self) -> list[str]:
        """The other members, voters first, each group in random order (spreads load)."""
        conf = self.node.parts.cluster.replicator.conf
        voters = [m for m in conf.voters if m != self.node.id]
        learners = [m for m in conf.learners if m != self.node.id]
        random.shuffle(voters)
        random.shuffle(learners)
        return voters + learners

    async def _replicate(
        self, ref: BlobRef, want: int, holders: list[str], enough: int
    ) -> list[str]:
        """Have other members copy ``ref`` from here until ``want`` nodes hold it; refused
        (``unavailable``) if fewer than ``enough`` do when no member is left to try."""
        holders = list(holders)
        candidates = [m for m in self._other_members() if m not in holders]
        failures: list[str] = []
        while len(holders) < want and candidates:
            batch = candidates[: want - len(holders)]
            del candidates[: len(batch)]
            async with anyio.create_task_group() as tg:
                for target in batch:
                    tg.start_soon(self._copy_to, target, ref, self.node.id, holders, failures)
        if len(holders) < enough:
            needed = f", at least {enough} needed" if enough < want else ""
            raise UnavailableError(
                f"blob {ref.hash} is stored on {len(holders)} of the {want} nodes asked for"
                f"{needed} ({'; '.join(failures) or 'not enough members'}); try again later "
                "or with fewer replicas",
                hash=ref.hash,
                stored=len(holders),
                replicas=want,
            )
        return holders

    async def _copy_to(
        self,
        target: str,
        ref: BlobRef,
        source: str,
        holders: list[str],
        failures: list[str],
        *,
        register: bool = False,
    ) -> None:
        """Ask ``target`` to copy ``ref`` from ``source``; add it to ``holders`` on success."""
        params = {"hash": ref.hash, "size": ref.size, "source": source, "register": register}
        try:
            await self.peers.call(target, "fetch", params, BLOB_COPY_TIMEOUT_SECONDS)
        except (AspenError, OSError) as exc:
            failures.append(f"{target[:12]}: {exc}")
            log.info("blobs: copying %s to %s failed: %s", ref.hash, target, exc)
            return
        holders.append(target)

    async def fetch(self, digest: str, size: int, source: str, register: bool) -> None:
        """Copy ``digest`` from member ``source`` into this node's store (a member's
        ``fetch`` instruction);
        with ``register``, record this node as a holder."""
        self.store.check_size(size)
        if not await anyio.to_thread.run_sync(self.store.has, digest):
            writer = await anyio.to_thread.run_sync(self.store.writer, size)
            try:
                async for piece in self.peers.read(source, digest, 0, size):
                    await anyio.to_thread.run_sync(writer.write, piece)
                await anyio.to_thread.run_sync(writer.commit, digest)
            finally:
                writer.abort()
        else:
            await anyio.to_thread.run_sync(self.store.touch, digest)
        if register and not await self.meta.add_holder(digest, self.node.id):
            raise NotFoundError(f"blob {digest} was removed meanwhile", hash=digest)

    # ------------------------------------------------------------------ reads
    async def _local_pieces(
        self, digest: str, offset: int, length: int | None
    ) -> AsyncIterator[bytes]:
        """The verified pieces of the local replica; a damaged one is quarantined."""
        pieces = self.store.read(digest, offset, length)
        try:
            while True:
                piece = await anyio.to_thread.run_sync(next, pieces, None)
                if piece is None:
                    return
                yield piece
        except BlobCorruptError:
            self.node.spawn(self.quarantine, digest, name="blobs-quarantine")
            raise
        finally:
            pieces.close()

    async def _info_for_read(self, digest: str) -> BlobInfo:
        """The blob's record: this node's view first (enough to serve a local replica),
        else the cluster's (linearizable, with its holders)."""
        info = await self.meta.get(digest, serializable=True)
        return info if info is not None else await self.meta.require(digest)

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None, *, local: bool = False
    ) -> AsyncIterator[bytes]:
        """Yield the verified bytes of ``[offset, offset + length)`` of ``digest``: from
        this node's replica, else (or from where it failed its check) from a holder. With
        ``local``, only this node's replica (``not_found`` without one)."""
        if local:
            async for piece in self._local_pieces(digest, offset, length):
                yield piece
            return
        info = await self._info_for_read(digest)
        end = offset + check_range(info.size, offset, length)
        position = offset
        if await anyio.to_thread.run_sync(self.store.has, digest):
            try:
                async for piece in self._local_pieces(digest, position, end - position):
                    yield piece
                    position += len(piece)
                return
            except (BlobCorruptError, NotFoundError) as exc:
                log.warning("blobs: reading %s from another holder: %s", digest, exc)
        holders = info.holders or await self.meta.holder_ids(digest)
        others = [h for h in holders if h != self.node.id]
        random.shuffle(others)
        for holder in others:
            if position >= end:
                return
            try:
                async for piece in self.peers.read(holder, digest, position, end - position):
                    yield piece
                    position += len(piece)
            except (AspenError, OSError) as exc:
                log.warning("blobs: reading %s from %s failed: %s", digest, holder, exc)
        if position < end:
            raise UnavailableError(
                f"no holder of blob {digest} could serve it now (holders: "
                f"{', '.join(holders) or 'none'})",
                hash=digest,
            )

    async def serve_call(
        self, peer_id: str, header: dict[str, Any], chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        """A member's instruction over the peer transport (:mod:`aspen.blobs.transfer`):
        ``fetch`` (copy ``{hash, size, source, register}`` from member ``source`` here) or
        ``ping`` (a liveness probe of the repairer); answers ``{node}``."""
        async for _ in chunks:
            raise InvalidArgumentError("a blob instruction carries no chunks")
        method, params = header.get("method"), header.get("params")
        if not isinstance(params, dict):
            raise InvalidArgumentError("blob instruction params must be a map")
        if method == "fetch":
            await self.fetch(
                parse_hash(params.get("hash")),
                p.require_int(params, "size", min=0),
                p.require_str(params, "source"),
                bool(p.optional_bool(params, "register")),
            )
        elif method != "ping":
            raise InvalidArgumentError(f"unknown blob instruction {method!r} from {peer_id}")
        return {"node": self.node.id}

    async def serve_fetch(self, peer_id: str, header: dict[str, Any]) -> AsyncIterator[bytes]:
        """A member's fetch of this node's replica: ``{"kind": "blob", "hash", "offset",
        "length"}`` -> its verified pieces (see :mod:`aspen.blobs.transfer`)."""
        if header.get("kind") != "blob":
            raise InvalidArgumentError(f"unknown fetch {header.get('kind')!r}")
        digest = parse_hash(header.get("hash"))
        offset = p.optional_int(header, "offset", 0, min=0)
        length = None if header.get("length") is None else p.require_int(header, "length", min=0)
        async for piece in self._local_pieces(digest, offset, length):
            yield piece

    # ------------------------------------------------------------------ damage, GC, scrub
    async def quarantine(self, digest: str) -> None:
        """Drop this node's damaged replica of ``digest`` and stop being its holder (the
        repairer copies a good one back)."""
        log.warning("blobs: replica of %s on this node is damaged; dropping it", digest)
        await anyio.to_thread.run_sync(self.store.delete, digest)
        try:
            await self.meta.remove_holder(digest, self.node.id)
        except AspenError as exc:
            log.warning("blobs: could not unregister damaged %s: %s", digest, exc)

    async def scrub(self) -> int:
        """Re-verify every local replica, quarantine damaged ones, and stop being the
        holder of blobs whose replica is missing here; return how many were bad."""
        damaged = 0
        local = await anyio.to_thread.run_sync(lambda: set(self.store.hashes()))
        for digest in local:
            if not await anyio.to_thread.run_sync(self.store.verify, digest):
                damaged += 1
                await self.quarantine(digest)
        for digest, holders in (await self.meta.holders()).items():
            if (
                self.node.id in holders
                and digest not in local
                and not await anyio.to_thread.run_sync(self.store.has, digest)  # put meanwhile?
            ):
                damaged += 1
                await self.quarantine(digest)
        return damaged

    async def collect_local(self) -> int:
        """Remove local replicas the cluster no longer records, once they have not been
        written or touched for the GC grace period; return how many were removed."""
        older_than = time.time() - self.settings.gc_grace_seconds
        removed = 0
        stale = await anyio.to_thread.run_sync(self.store.stale, older_than)
        for digest in stale[:BLOB_REPAIR_SCAN_BLOBS]:
            if await self.meta.exists(digest):
                continue
            if await anyio.to_thread.run_sync(self.store.delete_if_stale, digest, older_than):
                removed += 1
                log.info("blobs: removed unreferenced %s from this node", digest)
        return removed

    # ------------------------------------------------------------------ status
    async def status(self) -> dict[str, Any]:
        """``{"blobs", "bytes", "under_replicated", "repairing", "replicas"}``."""
        holders = await self.meta.holders(serializable=False)
        members = set(self.node.parts.cluster.members())
        count = total = under = 0
        async for info in self.meta.blobs(serializable=False):
            count, total = count + 1, total + info.size
            want = min(info.replicas or 1, len(members))
            if len([h for h in holders.get(info.hash, []) if h in members]) < want:
                under += 1
        local_blobs, local_bytes = await anyio.to_thread.run_sync(self.store.usage)
        return {
            "blobs": count,
            "bytes": total,
            "under_replicated": under,
            "repairing": len(await self.meta.repairing()),
            "replicas": await self.replica_count(None),
            "local": {"blobs": local_blobs, "bytes": local_bytes, "uploads": len(self.uploads)},
        }

    async def list(self, *, after: str = "", limit: int = BLOB_LIST_LIMIT) -> dict[str, Any]:
        """One page of blobs in hash order, after the hash ``after``, with holders and pins:
        ``{"blobs": [...], "more": bool}`` (ask again with ``after`` = the last hash)."""
        page = await self.meta.page(after=after, limit=limit)
        return {"blobs": [info.to_wire() for info in page.blobs], "more": page.more}

    async def pins(
        self, prefix: str = "", *, after: str = "", limit: int = BLOB_LIST_LIMIT
    ) -> dict[str, Any]:
        """One page of the pins whose name starts with ``prefix``, in name order, after the
        name ``after``: ``{"pins": [{"name", "hash", "size"}], "more": bool}``."""
        page = await self.meta.pin_page(prefix, after=after, limit=limit)
        infos = await self.meta.infos(sorted({digest for _, digest in page.pins}))
        pins = [
            {"name": name, "hash": digest, "size": infos[digest].size}
            for name, digest in page.pins
            if digest in infos  # a pin whose blob GC is removing right now
        ]
        return {"pins": pins, "more": page.more}

    async def copy(self, ref: BlobRef, source: str, target: str) -> bool:
        """Repair: have ``target`` copy ``ref`` from ``source`` and register itself."""
        holders: list[str] = []
        await self._copy_to(target, ref, source, holders, [], register=True)
        return bool(holders)
