"""Each node's copy of the object stores it serves, as dulwich :class:`DiskObjectStore`s.

The cluster's truth is the pack records in KV (:mod:`.packs`). Before a git request is
served, :meth:`LocalStores.sync` writes every recorded pack this node lacks into
``<data_dir>/forge/stores/<store id>/pack/`` (inline bytes from the record, or the blob's
verified bytes streamed to disk); the ``.idx`` is renamed into place last, so a pack is
visible to dulwich only once complete. Any node can therefore read any object; a node that
served a push already holds its pack. A pack left by a push whose commit failed is never
named by a ref, so it changes no answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from aspen_forge.storage.packs import PackRecord, read_pack
from aspen_forge.storage.parents import ParentsCache

__all__ = ["LocalStores"]


class LocalStores:
    """The object stores of one node, under ``root``."""

    def __init__(self, node: Any, root: Path) -> None:
        self.node = node
        self.root = root
        self._locks: dict[str, anyio.Lock] = {}
        self.parents = ParentsCache()

    def path(self, store_id: str) -> Path:
        """The directory of object store ``store_id``."""
        return self.root / store_id

    def _lock(self, store_id: str) -> anyio.Lock:
        lock = self._locks.get(store_id)
        if lock is None:
            lock = self._locks[store_id] = anyio.Lock()
        return lock

    def pack_paths(self, store_id: str, names: list[str]) -> list[Path]:
        """The local ``.pack`` files of the packs ``names`` (after :meth:`sync`)."""
        return [self.path(store_id) / "pack" / f"pack-{name}.pack" for name in names]

    async def sync(self, store_id: str, names: list[str], alternates: tuple[str, ...] = ()) -> None:
        """Make sure every pack of ``names`` (recorded in KV) is on this node's disk, and
        that the store reads ``alternates`` (other stores' ids) as git alternates."""
        pack_dir = self.path(store_id) / "pack"
        missing = [n for n in names if not (pack_dir / f"pack-{n}.idx").exists()]
        await anyio.to_thread.run_sync(self._init, store_id, alternates)
        if not missing:
            return
        async with self._lock(store_id):
            for name in missing:
                if not (pack_dir / f"pack-{name}.idx").exists():
                    await self._fetch(pack_dir, await read_pack(self.node, store_id, name))

    def _init(self, store_id: str, alternates: tuple[str, ...]) -> None:
        """Create the store's directories (``pack/``, ``info/``) and its alternates file."""
        path = self.path(store_id)
        if not (path / "info").exists():
            (path / "pack").mkdir(parents=True, exist_ok=True)
            (path / "info").mkdir(exist_ok=True)
        wanted = "".join(f"{self.path(a)}\n" for a in alternates)
        listed = path / "info" / "alternates"
        current = listed.read_text() if listed.exists() else ""
        if current != wanted:
            tmp = listed.with_suffix(".tmp")
            tmp.write_text(wanted)
            os.replace(tmp, listed)

    async def _fetch(self, pack_dir: Path, record: PackRecord) -> None:
        base = pack_dir / f"pack-{record.name}"
        tmp_pack = pack_dir / f"tmp-fetch-{record.name}.pack"
        tmp_idx = pack_dir / f"tmp-fetch-{record.name}.idx"
        await self._write(tmp_pack, record.pack, record.pack_blob)
        await self._write(tmp_idx, record.idx, record.idx_blob)
        await anyio.to_thread.run_sync(os.replace, tmp_pack, base.with_suffix(".pack"))
        await anyio.to_thread.run_sync(os.replace, tmp_idx, base.with_suffix(".idx"))

    async def _write(self, path: Path, inline: bytes | None, blob: str | None) -> None:
        handle = await anyio.to_thread.run_sync(open, path, "wb")
        try:
            if inline is not None:
                await anyio.to_thread.run_sync(handle.write, inline)
            elif blob:
                async for piece in self.node.blobs.open(blob):
                    await anyio.to_thread.run_sync(handle.write, piece)
            await anyio.to_thread.run_sync(os.fsync, handle.fileno())
        finally:
            handle.close()

    def open(self, store_id: str) -> Any:
        """A dulwich object store over ``store_id``'s local packs (and its alternates);
        close it after use; call from a worker thread."""
        from dulwich.object_store import DiskObjectStore

        parents = self.parents

        class ForgeObjectStore(DiskObjectStore):
            """A :class:`DiskObjectStore` that remembers the commits a fetch negotiation
            found in common (:mod:`aspen_forge.upload` streams whole packs when none) and
            looks commit parents up in the node's :class:`ParentsCache`."""

            common: list[Any] = []

            def find_common_revisions(self, graphwalker: Any) -> Any:
                self.common = list(super().find_common_revisions(graphwalker))
                return self.common

            def get_commit_graph(self) -> Any:
                """The node's parents cache, in place of a commit-graph file."""
                return parents.for_store(self)

        return ForgeObjectStore(str(self.path(store_id)))
