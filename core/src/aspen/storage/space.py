"""Room to write: free disk space and LMDB map use.

A node checks them before it proposes a write (:class:`SpaceGuard`), so a full disk
refuses writes with ``resource_exhausted`` instead of failing a commit, and classes a
failed write transaction as "out of space" (:func:`out_of_space`), a state the node
survives and leaves by itself once space is freed.

LMDB reports a full disk in three ways: ``ENOSPC`` (:class:`lmdb.DiskError`), a short
write reported as ``EIO`` (``mdb_page_flush``: "short write, filesystem full?" — what a
full tmpfs gives), and ``MDB_MAP_FULL`` (:class:`lmdb.MapFullError`) once the data file
reaches the map size. After each of them the write transaction is aborted and the
environment stays usable: nothing of the transaction was made visible. The exception is
a failed write of the meta page itself (an overwrite in place, so not for lack of space
on tmpfs or ext4), which LMDB marks fatal: the next transaction gets ``MDB_PANIC``
(:class:`lmdb.PanicError`), which is never classed as out of space, so the node stops
there. Neither is an ``EIO`` while the disk has room (a real I/O error), nor a failed
``fsync`` after a commit (the driver's flush): both stay fail-stop.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import lmdb

from aspen import limits
from aspen.errors import ResourceExhaustedError

if TYPE_CHECKING:
    from aspen.storage.env import Storage

__all__ = [
    "OutOfSpace",
    "SpaceGuard",
    "SpaceReport",
    "format_bytes",
    "no_space_raised",
    "out_of_space",
    "space_report",
]

_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class SpaceReport:
    """Free space on the disk holding a node's LMDB environment, and use of its map."""

    path: str
    free_bytes: int
    total_bytes: int
    map_used_bytes: int
    map_size_bytes: int

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-able dict."""
        return asdict(self)


def space_report(storage: Storage) -> SpaceReport:
    """Measure now (one ``statvfs`` and one ``mdb_env_info``: cheap, never blocks long).
    Free bytes count the data file's blocks allocated ahead (``Storage.reserve``) too."""
    st = os.statvfs(storage.path)
    used = storage.size_bytes()
    return SpaceReport(
        path=str(storage.path),
        free_bytes=st.f_bavail * st.f_frsize + max(0, storage.reserved_bytes - used),
        total_bytes=st.f_blocks * st.f_frsize,
        map_used_bytes=used,
        map_size_bytes=storage.map_size,
    )


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``512 B``, ``3.2 MiB``, ``61.9 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def out_of_space(exc: BaseException, storage: Storage) -> str | None:
    """Why ``exc``, raised by a write transaction of ``storage``, means there is no room
    (a sentence naming disk space or the map size), or ``None`` for any other failure."""
    if isinstance(exc, lmdb.MapFullError):
        report = space_report(storage)
        return (
            f"the LMDB map is full ({format_bytes(report.map_used_bytes)} of "
            f"LMDB_MAP_SIZE, {format_bytes(report.map_size_bytes)}, in use)"
        )
    if isinstance(exc, lmdb.DiskError) or (
        isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS
    ):
        return _disk_full(space_report(storage))
    if isinstance(exc, lmdb.Error) and not isinstance(exc, lmdb.PanicError):
        report = space_report(storage)  # EIO from a short write: full only if it is
        if report.free_bytes < limits.DISK_RESERVE_BYTES:
            return _disk_full(report)
    return None


class OutOfSpace(Exception):
    """A write transaction failed because the disk or the LMDB map is full; ``reason`` is
    a sentence that says which (LMDB aborted the transaction, the environment is usable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextmanager
def no_space_raised(storage: Storage) -> Iterator[None]:
    """Turn a failure of ``storage``'s write transaction for lack of space, inside the
    block, into :class:`OutOfSpace`; any other failure passes through unchanged."""
    try:
        yield
    except Exception as exc:
        reason = out_of_space(exc, storage)
        if reason is None:
            raise
        raise OutOfSpace(reason) from exc


def _disk_full(report: SpaceReport) -> str:
    return f"the disk is full ({format_bytes(report.free_bytes)} free in {report.path})"


class SpaceGuard:
    """Admits writes while the disk and the LMDB map have room for them, and remembers
    whether the last write cycle failed for lack of space (``full``).

    Measuring (``statvfs`` plus ``mdb_env_info``) on every write costs the write path
    about 5% of its CPU, so a measurement is reused for up to ``SPACE_REUSE_SECONDS``
    while the room it showed, less what was admitted since, stays over
    ``SPACE_REUSE_HEADROOM_BYTES``. Near full the guard measures every time; space taken
    by another program within that second is caught by the commit (:class:`OutOfSpace`).
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        #: Space claimed by writes admitted but not finished yet (see :meth:`claim`).
        self.pending_bytes = 0
        #: Why the last write cycle failed for lack of space; ``None`` once one succeeds.
        self.full: str | None = None
        self._measured: SpaceReport | None = None
        self._measured_at = 0.0
        #: Bytes admitted since ``_measured`` was taken.
        self._admitted_since = 0

    def _room(self, wanted: int) -> SpaceReport:
        """A measurement to judge a write needing ``wanted`` bytes by: the last one while it
        shows ample room, else a fresh one."""
        last = self._measured
        if last is not None and time.monotonic() - self._measured_at < limits.SPACE_REUSE_SECONDS:
            spent = self._admitted_since + wanted + limits.SPACE_REUSE_HEADROOM_BYTES
            if last.free_bytes >= spent and last.map_used_bytes + spent <= last.map_size_bytes:
                return last
        self._measured = space_report(self._storage)
        self._measured_at = time.monotonic()
        self._admitted_since = 0
        return self._measured

    def crowded_by(self, nbytes: int) -> bool:
        """Whether ``nbytes`` (of a WAL segment, say) exceed half of the free disk space last
        measured (False before any measurement): then they should be given back."""
        return self._measured is not None and 2 * nbytes > self._measured.free_bytes

    def report(self) -> dict[str, Any]:
        """Free disk space, map use, space claimed by writes in flight, and ``full``."""
        return {
            **space_report(self._storage).to_json(),
            "reserve_bytes": limits.DISK_RESERVE_BYTES,
            "pending_bytes": self.pending_bytes,
            "full": self.full,
        }

    def check(self, nbytes: int) -> None:
        """Raise ``resource_exhausted`` naming disk space (or the map size) unless a write
        of ``nbytes`` encoded bytes fits while ``DISK_RESERVE_BYTES`` stay free."""
        need = nbytes * limits.WRITE_SPACE_FACTOR
        wanted = self.pending_bytes + need + limits.DISK_RESERVE_BYTES
        report = self._room(wanted)
        if report.free_bytes < wanted:
            raise ResourceExhaustedError(
                f"{_disk_full(report)}: a write of {format_bytes(nbytes)} needs about "
                f"{format_bytes(need)} and DISK_RESERVE_BYTES "
                f"({format_bytes(limits.DISK_RESERVE_BYTES)}) stay free for Raft; free disk "
                "space and writes resume by themselves",
                free_bytes=report.free_bytes,
                path=report.path,
            )
        if report.map_used_bytes + wanted > report.map_size_bytes:
            raise ResourceExhaustedError(
                f"the LMDB map is nearly full ({format_bytes(report.map_used_bytes)} of "
                f"LMDB_MAP_SIZE, {format_bytes(report.map_size_bytes)}, in use): a write of "
                f"{format_bytes(nbytes)} needs about {format_bytes(need)}",
                map_used_bytes=report.map_used_bytes,
                map_size_bytes=report.map_size_bytes,
            )
        self._admitted_since += need

    def claim(self, nbytes: int) -> _Claim:
        """:meth:`check`, then count the write's space as claimed until the block exits."""
        self.check(nbytes)
        return _Claim(self, nbytes * limits.WRITE_SPACE_FACTOR)


class _Claim:
    """The space of one write in flight, released when its ``with`` block exits (a plain
    class: a generator context manager costs a few µs more on every write)."""

    __slots__ = ("_guard", "_need")

    def __init__(self, guard: SpaceGuard, need: int) -> None:
        self._guard, self._need = guard, need
        guard.pending_bytes += need

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self._guard.pending_bytes -= self._need
