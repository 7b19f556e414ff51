"""Sending and receiving state machine snapshots between nodes.

The leader's Raft asks for a snapshot when a follower needs entries it has compacted. The
node then dumps its state machine from one read transaction (:mod:`aspen.kv.snapshot`) and
streams it in chunks beside the normal Raft traffic; the position it announces is the dump's
own (applied index, term, membership). The follower spools the chunks to a file, then hands
Raft the SNAPSHOT message; when Raft says to install it (``Ready.snapshot``), the driver
restores the spool inside its cycle transaction.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from aspen import limits
from aspen.kv import snapshot as sm_snapshot
from aspen.raft.types import ConfState, SnapshotMeta
from aspen.storage import Storage
from aspen.storage.private import PRIVATE_FILE_MODE, make_private_dir

__all__ = ["SnapshotSpool", "dump_with_meta", "install_received_snapshot", "snapshot_header"]

log = logging.getLogger(__name__)

#: Directory (inside the data dir) where incoming snapshots are spooled.
SPOOL_DIR = "snapshots-in"


def snapshot_header(meta: SnapshotMeta, leader: str, term: int) -> dict[str, Any]:
    """The header sent before a snapshot's chunks."""
    return {
        "kind": "snapshot",
        "from": leader,
        "term": term,
        "index": meta.index,
        "snap_term": meta.term,
        "voters": list(meta.conf.voters),
        "learners": list(meta.conf.learners),
    }


def dump_with_meta(storage: Storage, raft_storage: Any) -> tuple[SnapshotMeta, Iterator[bytes]]:
    """Open a read transaction and return (its snapshot position, an iterator of its chunks,
    each framed with a 4-byte length: the transport may split or merge them on the way)."""
    txn = storage.begin()
    meta_sm = raft_storage.snapshot_meta_in(txn)

    def chunks() -> Iterator[bytes]:
        try:
            for chunk in sm_snapshot.dump_chunks(storage, txn):
                yield len(chunk).to_bytes(4, "big") + chunk
        finally:
            txn.abort()

    return meta_sm, chunks()


class SnapshotSpool:
    """Where incoming snapshots are written before Raft decides to install them."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / SPOOL_DIR
        make_private_dir(self.dir)
        for partial in self.dir.glob("*.partial*"):  # transfers cut short by a crash
            partial.unlink(missing_ok=True)

    def cleanup(self, installed: int) -> None:
        """Delete spool files at or below ``installed`` (called after the install commits)."""
        for path in self.dir.glob("*.spool"):
            if int(path.stem) <= installed:
                path.unlink(missing_ok=True)

    def path_for(self, index: int) -> Path:
        """The spool file of the snapshot at ``index``."""
        return self.dir / f"{index:020d}.spool"

    async def receive(self, header: dict[str, Any], chunks: AsyncIterator[bytes]) -> SnapshotMeta:
        """Spool a streamed snapshot; return its position, once it is on disk and parses."""
        meta = SnapshotMeta(
            int(header["index"]),
            int(header["snap_term"]),
            ConfState(tuple(header["voters"]), tuple(header["learners"])),
        )
        tmp = self.path_for(meta.index).with_suffix(f".partial.{uuid.uuid4().hex}")
        size = 0
        try:
            with open(tmp, "wb", opener=_private_opener) as out:
                async for data in chunks:  # a byte stream: sender framing, any split
                    size += len(data)
                    if size > limits.MAX_SNAPSHOT_BYTES:
                        raise ValueError("snapshot larger than MAX_SNAPSHOT_BYTES")
                    await anyio.to_thread.run_sync(out.write, data)
                await anyio.to_thread.run_sync(_flush_and_sync, out)
            await anyio.to_thread.run_sync(_check_spool, tmp)  # refuse a bad transfer now,
            tmp.replace(self.path_for(meta.index))  # not when the driver installs it
        finally:
            tmp.unlink(missing_ok=True)
        return meta


def _check_spool(path: Path) -> None:
    """Parse a spooled snapshot completely; raise ``ValueError`` if it is cut or garbled."""
    with open(path, "rb") as f:
        for chunk in sm_snapshot.read_spool(f):  # msgpack raises ValueError when cut
            if not (
                isinstance(chunk, list)
                and len(chunk) == 2
                and isinstance(chunk[0], str)
                and isinstance(chunk[1], list)
                and len(chunk[1]) % 2 == 0
            ):
                raise ValueError("a snapshot chunk is not [database, [key, value, ...]]")


def _private_opener(path: str, flags: int) -> int:
    """Open a spool file readable by the node's user only."""
    return os.open(path, flags, PRIVATE_FILE_MODE)


def _flush_and_sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


def install_received_snapshot(
    storage: Storage, raft_storage: Any, txn: Any, meta: SnapshotMeta, spool: SnapshotSpool
) -> int:
    """Replace the state machine with the spooled snapshot at ``meta`` (inside ``txn``);
    return its size in bytes."""
    path = spool.path_for(meta.index)
    with open(path, "rb") as f:
        sm_snapshot.restore(storage, txn, sm_snapshot.read_spool(f))
    raft_storage.reset_log(txn, meta.index, meta.term)
    raft_storage.set_conf_state(txn, meta.conf)
    log.info("installed snapshot at index %d term %d", meta.index, meta.term)
    return path.stat().st_size
