"""Pack records: the cluster's list of the packs of one object store.

A push lands as **one pack** (dulwich completes a thin pack with its bases, so every pack
is self-contained). Its record under ``packs/<store>/<pack name>`` holds:

* ``pack``: the pack bytes inline when at most ``INLINE_PACK_BYTES``, else ``pack_blob``:
  the BLAKE3 hash of a blob (pinned ``forge/<store>/<name>``) holding them;
* ``idx``: the pack's index (the object ids it holds, with offsets) inline when at most
  ``INLINE_INDEX_BYTES``, else ``idx_blob``;
* ``size``, ``count``, ``created``.

The record is written in the same transaction as the push's ref updates, so a small push
is one Raft entry and a large one is the blob put plus that one entry; a ref never names
an object whose pack is not recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgpack

from aspen_forge import limits

__all__ = ["PackRecord", "pin_name", "publish_pack", "read_pack", "read_pack_names"]


@dataclass
class PackRecord:
    """One pack of an object store, as recorded in KV."""

    name: str
    size: int
    count: int
    pack: bytes | None = None
    pack_blob: str | None = None
    idx: bytes | None = None
    idx_blob: str | None = None
    created: float = field(default_factory=time.time)

    def to_value(self) -> bytes:
        """The KV value (msgpack)."""
        return msgpack.packb(
            {k: v for k, v in self.__dict__.items() if v is not None}, use_bin_type=True
        )

    @classmethod
    def from_value(cls, value: bytes) -> PackRecord:
        """Decode a KV value written by :meth:`to_value`."""
        data = msgpack.unpackb(value, raw=False)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})

    @property
    def blobs(self) -> list[str]:
        """The blob hashes this record keeps."""
        return [h for h in (self.pack_blob, self.idx_blob) if h]


def pin_name(store_id: str, pack_name: str, what: str) -> str:
    """The blob pin of a pack's ``pack`` or ``idx`` bytes."""
    return f"forge/{store_id}/{pack_name}.{what}"


async def _file_pieces(path: Path, piece: int = 1024 * 1024) -> Any:
    """The bytes of ``path``, one thread read per piece (never the whole file at once)."""
    handle = await anyio.to_thread.run_sync(open, path, "rb")
    try:
        while True:
            data = await anyio.to_thread.run_sync(handle.read, piece)
            if not data:
                return
            yield data
    finally:
        handle.close()


async def _put_blob(node: Any, path: Path, pin: str) -> str:
    """Put the file ``path`` as a blob pinned ``pin``; its hash (``node.blobs.put_durable``:
    at the cluster's replica count, or a majority of the voters while members are down)."""
    size = os.path.getsize(path)
    return str((await node.blobs.put_durable(_file_pieces(path), pin=pin, size=size)).hash)


async def publish_pack(node: Any, store_id: str, basename: Path, count: int) -> PackRecord:
    """Make the completed pack ``basename``.pack/.idx durable in the cluster (inline, or
    as blobs replicated before this returns) and return its record (not yet written)."""
    name = basename.name.removeprefix("pack-")
    pack_path, idx_path = basename.with_suffix(".pack"), basename.with_suffix(".idx")
    size = os.path.getsize(pack_path)
    record = PackRecord(name=name, size=size, count=count)
    if size <= limits.INLINE_PACK_BYTES:
        record.pack = await anyio.Path(pack_path).read_bytes()
    else:
        record.pack_blob = await _put_blob(node, pack_path, pin_name(store_id, name, "pack"))
    if os.path.getsize(idx_path) <= limits.INLINE_INDEX_BYTES:
        record.idx = await anyio.Path(idx_path).read_bytes()
    else:
        record.idx_blob = await _put_blob(node, idx_path, pin_name(store_id, name, "idx"))
    return record


async def read_pack_names(node: Any, store_id: str) -> list[str]:
    """The names of every pack of ``store_id`` (linearizable, keys only: a request reads the
    records, which may hold inline packs, only of the packs its node lacks; at most
    MAX_PACKS)."""
    from aspen.errors import ResourceExhaustedError
    from aspen.kv import paging
    from aspen_forge.keys import packs_prefix

    prefix = packs_prefix(store_id)
    records, truncated, _ = await paging.collect(
        node.call, prefix, most=limits.MAX_PACKS, keys_only=True, local=True
    )
    if truncated:
        raise ResourceExhaustedError(
            f"object store holds more than MAX_PACKS ({limits.MAX_PACKS}) packs"
        )
    return [kv["key"][len(prefix) :].decode() for kv in records]


async def read_pack(node: Any, store_id: str, name: str) -> PackRecord:
    """The record of pack ``name`` of ``store_id``."""
    from aspen.errors import NotFoundError
    from aspen_forge.keys import pack_key

    kvs = (await node.call("kv.range", {"key": pack_key(store_id, name)}))["kvs"]
    if not kvs:
        raise NotFoundError(f"pack {name} of store {store_id} is not recorded")
    return PackRecord.from_value(kvs[0]["value"])
