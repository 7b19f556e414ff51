"""The Raft-log write-ahead log: what a node has promised (entries it acknowledged, its
term and vote) made durable with ONE ``fdatasync`` per write cycle.

LMDB stays the readable copy of the Raft log and hard state (``aspen.storage.log``), but
its commits are no longer what makes them durable: the driver writes each cycle's new
entries and hard state here, syncs this file once, and only then lets the cycle's messages
(acknowledgements, votes) and answers out; the LMDB transaction holding the same changes,
and the state machine's apply, commits after that without a meta-page flush
(``Storage.begin(durable=False)``). A crash thus may lose LMDB commits, never WAL records
that were synced, and LMDB never holds a Raft write the WAL has not synced. Entries may
also wait in memory only, beside the WAL, until a later cycle writes them into LMDB (the
tail: ``LmdbRaftStorage.defer``); LMDB is then behind the WAL, never ahead of it.

**Checkpoint.** Every ``WAL_CHECKPOINT_BYTES`` or ``WAL_CHECKPOINT_ENTRIES`` the driver
flushes LMDB (then it holds everything written here so far) and calls
:meth:`Wal.checkpoint`: a new segment starts (its header record synced, the directory
synced) and the older segments are deleted. So the WAL is one segment, bounded in size,
and a restart replays only the newest segment whose header is intact.

**Replay** (``LmdbRaftStorage.attach_wal`` in :mod:`aspen.node.raft_storage`) redoes the
segment's records into LMDB in order: an ``ENTRIES`` record replaces the log from its first
index on (as the driver's ``persist`` did), ``HARD`` records raise term, vote and commit
monotonically. LMDB may already hold some or all of them (it is at least at the last
checkpoint and at most at the WAL's end), and redoing them in order gives the same log
either way.

**Generation.** Installing a snapshot replaces the log; the cycle that does it bumps a
generation counter in LMDB, flushes LMDB and checkpoints with the new generation. A
segment of an older generation than LMDB's is never replayed (a crash between the flush
and the new segment leaves exactly that).

**Record format.** ``length u32 | crc32 u32 | type u8 | batch u64 | payload``
(big-endian; the CRC covers type, batch and payload; the payload is msgpack; the type's
high bit marks the last record of a sync batch). A bad record followed by no intact record
of a later sync batch is a torn tail (a write the crash cut short, never synced, so never
acknowledged): it is truncated. A bad record followed by one of a later batch was synced
once (a batch is written only after the one before it was synced): that is corruption no
crash explains, :class:`~aspen.errors.StorageCorruptError`, and the node refuses to start.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from aspen import limits
from aspen.errors import StorageCorruptError
from aspen.storage.private import PRIVATE_FILE_MODE, make_private_dir

__all__ = ["ENTRIES", "HARD", "HEADER", "Wal", "WalRecord"]

_HEAD = struct.Struct(">IIBQ")
#: Record types.
HEADER, ENTRIES, HARD = 1, 2, 3
_TYPES = frozenset({HEADER, ENTRIES, HARD})
_TAIL = struct.Struct(">BQ")
#: Flag on the type byte: the last record of its sync batch.
_LAST = 0x80
_SUFFIX = ".wal"
#: A header record ([generation, seq]) is never longer than this.
_HEADER_MAX_BYTES = 64


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One decoded record: its type and msgpack-decoded payload."""

    type: int
    payload: Any
    #: The sync batch it was written in (one per :meth:`Wal.sync`, rising).
    batch: int = 0
    #: Whether it is the last record of its batch.
    last: bool = True


def _encode(rtype: int, batch: int, body: bytes, *, last: bool) -> bytes:
    """One record; ``last`` marks the last record of its sync batch."""
    tag = rtype | (_LAST if last else 0)
    crc = zlib.crc32(body, zlib.crc32(_TAIL.pack(tag, batch)))
    return _HEAD.pack(len(body), crc, tag, batch) + body


def _write_all(f: Any, data: bytes) -> None:
    """Write all of ``data`` to the unbuffered file ``f``: a raw write may write only part
    of it (a disk nearly full) and say so only by its count; the next one then raises."""
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]


def _max_payload() -> int:
    return max(limits.WAL_RECORD_BYTES, limits.MAX_ENTRY_BYTES) + 1024


def _parse_at(data: bytes, offset: int) -> tuple[WalRecord, int] | None:
    """The record at ``offset`` and the offset after it, or None if it is not intact."""
    if offset + _HEAD.size > len(data):
        return None
    length, crc, tag, batch = _HEAD.unpack_from(data, offset)
    end = offset + _HEAD.size + length
    rtype = tag & ~_LAST
    if rtype not in _TYPES or length > _max_payload() or end > len(data):
        return None
    payload = data[offset + _HEAD.size : end]
    if zlib.crc32(payload, zlib.crc32(_TAIL.pack(tag, batch))) != crc:
        return None
    try:
        record = WalRecord(rtype, msgpack.unpackb(payload, raw=False), batch, bool(tag & _LAST))
        return record, end
    except ValueError:
        return None


def _synced_after(data: bytes, offset: int, before: WalRecord) -> bool:
    """Whether an intact record of a batch later than the bad one's follows the bad record
    at ``offset`` (found by the stated lengths from there on; ``before`` is the last intact
    record, whose batch the bad one continues unless ``before`` ended it). A batch is only
    written once the earlier ones were synced, so then the bad record was durable once:
    corruption, not a torn tail (a cut write of the last, unsynced batch, some of whose
    later pages may have reached the disk)."""
    bad_batch = before.batch + 1 if before.last else before.batch
    while offset + _HEAD.size <= len(data):
        length = _HEAD.unpack_from(data, offset)[0]
        if length > _max_payload():
            return False
        offset += _HEAD.size + length
        parsed = _parse_at(data, offset)
        if parsed is not None and parsed[0].batch > bad_batch:
            return True
    return False


class Wal:
    """The segmented WAL in directory ``path`` (``sync=False`` skips fsyncs: test nodes)."""

    def __init__(self, path: Path | str, *, sync: bool = True) -> None:
        self.path = Path(path)
        self._sync = sync
        make_private_dir(self.path)
        self._pending: list[tuple[int, bytes]] = []
        self._file: Any = None
        self._seq = 0
        self._offset = 0
        #: The last sync batch written (records of the next sync carry this + 1).
        self._batch = 0
        #: Bytes and entries written since the last checkpoint.
        self.bytes_since_checkpoint = 0
        self.entries_since_checkpoint = 0
        #: fdatasyncs of WAL segments (what a write cycle's durability costs), checkpoints.
        self.fsyncs = 0
        self.checkpoints = 0
        self.generation = 0

    # ------------------------------------------------------------------ open / replay
    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(p for p in self.path.iterdir() if p.name.endswith(_SUFFIX))

    def read(self) -> tuple[int, list[WalRecord]]:
        """The newest segment with an intact header: its generation and its records after
        the header. A torn tail is truncated; corruption before it raises
        :class:`StorageCorruptError`. Returns (-1, []) when there is no segment."""
        for seg in reversed(self.segments()):
            data = seg.read_bytes()
            first = _parse_at(data, 0)
            if first is None or first[0].type != HEADER:
                if len(data) > _HEADER_MAX_BYTES:
                    raise self._corrupt(seg, 0, "its header record fails its checksum")
                continue  # a checkpoint cut short while it began this segment: no records
            header, offset = first
            records: list[WalRecord] = []
            before = header
            while offset < len(data):
                parsed = _parse_at(data, offset)
                if parsed is None:
                    if _synced_after(data, offset, before):
                        raise self._corrupt(seg, offset, "a record fails its checksum")
                    with open(seg, "r+b") as f:  # torn tail: never synced, never acknowledged
                        f.truncate(offset)
                        os.fsync(f.fileno())
                    break
                record, offset = parsed
                records.append(record)
                before = record
            self._batch = before.batch
            return int(header.payload[0]), records
        return -1, []

    def _corrupt(self, seg: Path, offset: int, what: str) -> StorageCorruptError:
        return StorageCorruptError(
            f"the Raft-log WAL {seg} is corrupt at byte {offset}: {what}, and records "
            "synced after it follow, so this is not a write cut short by a crash. The "
            "node refuses to start rather than drop log entries it may have acknowledged: "
            "restore the data directory from a backup, or remove this member and add it "
            "again empty so it catches up from the cluster",
            path=str(seg),
            offset=offset,
        )

    # ------------------------------------------------------------------ writes
    def append_entries(self, entries: list[tuple[int, int, bytes]]) -> None:
        """Queue (index, term, data) entries (contiguous; they replace the log from the first
        one's index on), in records of at most ``WAL_RECORD_BYTES``."""
        chunk: list[tuple[int, int, bytes]] = []
        size = 0
        for entry in entries:
            if chunk and size + len(entry[2]) > limits.WAL_RECORD_BYTES:
                self._queue(ENTRIES, chunk)
                chunk, size = [], 0
            chunk.append(entry)
            size += len(entry[2]) + 24
        if chunk:
            self._queue(ENTRIES, chunk)
        self.entries_since_checkpoint += len(entries)

    def append_hard_state(self, term: int, vote: str | None, commit: int) -> None:
        """Queue the hard state (replay keeps the highest term, its vote, the highest commit)."""
        self._queue(HARD, [term, vote, commit])

    def _queue(self, rtype: int, payload: Any) -> None:
        self._pending.append((rtype, msgpack.packb(payload, use_bin_type=True)))

    @property
    def has_pending(self) -> bool:
        """Whether records wait for :meth:`sync`."""
        return bool(self._pending)

    def discard_pending(self) -> None:
        """Forget queued records (their cycle failed before its sync)."""
        self._pending.clear()

    def sync(self) -> None:
        """Write the queued records and make them durable (one ``fdatasync``). On a write
        error the segment is cut back to what was durable and the error re-raised."""
        if not self._pending:
            return
        batch, n = self._batch + 1, len(self._pending)
        data = b"".join(
            _encode(rtype, batch, body, last=k == n - 1)
            for k, (rtype, body) in enumerate(self._pending)
        )
        self._pending.clear()
        f = self._open_file()
        try:
            _write_all(f, data)
            f.flush()
            if self._sync:
                os.fdatasync(f.fileno())
                self.fsyncs += 1
        except OSError:
            f.seek(self._offset)
            f.truncate(self._offset)
            raise
        self._offset += len(data)
        self._batch += 1
        self.bytes_since_checkpoint += len(data)

    def checkpoint_due(self) -> bool:
        """Whether enough was written since the last checkpoint to take one."""
        return (
            self.bytes_since_checkpoint >= limits.WAL_CHECKPOINT_BYTES
            or self.entries_since_checkpoint >= limits.WAL_CHECKPOINT_ENTRIES
        )

    def checkpoint(self, generation: int) -> None:
        """Start a new segment of ``generation`` and delete the older ones. Call it only
        once LMDB durably holds everything written here (``Storage.flush``). If the new
        segment cannot be made (e.g. ``ENOSPC``), the error is raised with the current
        segment still open and intact."""
        old = self.segments()
        seq = max([self._seq, *(int(p.stem, 16) for p in old)]) + 1
        seg = self.path / f"{seq:016x}{_SUFFIX}"
        header = _encode(HEADER, self._batch + 1, msgpack.packb([generation, seq]), last=True)
        fd = os.open(seg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            os.write(fd, header)
            if self._sync:
                os.fdatasync(fd)
                self._sync_dir()
        except OSError:
            os.close(fd)
            seg.unlink(missing_ok=True)
            raise
        self.close()
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._seq, self._batch, self._offset = seq, self._batch + 1, len(header)
        for p in old:
            p.unlink(missing_ok=True)
        if self._sync and old:
            self._sync_dir()
        self.generation = generation
        self.bytes_since_checkpoint = 0
        self.entries_since_checkpoint = 0
        self.checkpoints += 1

    def _open_file(self) -> Any:
        if self._file is None:
            raise RuntimeError("the WAL has no open segment: checkpoint() it first")
        return self._file

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def size_bytes(self) -> int:
        """Bytes of every segment on disk."""
        return sum(p.stat().st_size for p in self.segments())

    def stats(self) -> dict[str, int]:
        """Counters for ``node.status``: fsyncs, checkpoints, segments, bytes on disk, and
        the generation (one per snapshot installed)."""
        return {
            "generation": self.generation,
            "fsyncs": self.fsyncs,
            "checkpoints": self.checkpoints,
            "segments": len(self.segments()),
            "bytes": self.size_bytes(),
        }

    def close(self) -> None:
        """Close the open segment (what was synced stays)."""
        if self._file is not None:
            self._file.close()
            self._file = None
