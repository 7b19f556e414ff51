"""The LMDB environment every piece of node state lives in.

One environment per node, opened with ``sync=True`` by default so a committed write
transaction survives ``kill -9`` and power loss (LMDB's copy-on-write B-tree never
overwrites live pages, so a crash at any moment leaves the last committed state).

The environment runs with LMDB's ``MDB_NOMETASYNC``: a commit flushes its data pages, and
:meth:`Storage.begin` (``durable=True``, the default) then flushes the meta page too, so
such a commit is durable exactly as with plain ``sync``. ``durable=False`` skips that
second flush: the commit keeps LMDB's integrity (data is on disk before any meta page that
points at it) but a power loss may undo it until the next durable commit or
:meth:`Storage.flush`. ``kill -9`` never undoes a commit either way (it is in the page
cache). Only state that can be rebuilt after such a loss may be written that way.
:meth:`Storage.reserve` keeps ``LMDB_RESERVE_BYTES`` of the data file allocated ahead, so a
commit the Raft-log WAL already acknowledged does not fail for a disk another program
filled. ``writemap`` stays off: the state machine runs every command in a nested transaction,
which LMDB does not allow with a writable memory map.

The directory is made 0700 and LMDB creates its files 0600 (a node tightens existing ones
on start, see :mod:`aspen.storage.private`): they hold every value the node stores.
When the disk or the map is full, a write transaction fails and is aborted with the
environment still usable (see :mod:`aspen.storage.space`).

The meta database records the layout version (:data:`STORAGE_FORMAT` under
:data:`FORMAT_KEY`). A directory written in another layout is refused with a
:class:`~aspen.errors.StorageFormatError` before anything in it is read or changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lmdb

from aspen import limits
from aspen.errors import StorageFormatError
from aspen.storage.private import PRIVATE_FILE_MODE, make_private_dir

__all__ = ["DB_NAMES", "FORMAT_KEY", "STORAGE_FORMAT", "Storage"]

#: The named databases of the environment.
DB_NAMES: tuple[str, ...] = (
    "meta",
    "log",
    "kv",
    "history",
    "keyrevs",
    "leases",
    "lease_keys",
    "events",  # the event journal (aspen.journal.store); empty in older data dirs
)
#: Databases holding sorted duplicate values of a fixed size (see :mod:`aspen.kv.layout`).
_DUPFIXED_DBS = frozenset({"keyrevs"})
#: Meta key of the layout version (8 bytes BE).
FORMAT_KEY = b"storage/format"
#: The layout this code reads and writes. 1: every key-value stored in ``kv`` and again in
#: each ``history`` entry (no format key); 2: each value once, in ``history`` (see
#: :mod:`aspen.kv.layout`).
STORAGE_FORMAT = 2


class Storage:
    """One LMDB environment in directory ``path`` with Aspen's named databases."""

    def __init__(self, path: Path | str, *, sync: bool = True, map_size: int = 0) -> None:
        """Open (creating if missing) the environment at ``path``; ``map_size`` bounds the
        data file (0: ``LMDB_MAP_SIZE``; tests make it small to reach it)."""
        self.path = Path(path)
        self._sync = sync
        self.map_size = map_size or limits.LMDB_MAP_SIZE
        make_private_dir(self.path)
        self.env: lmdb.Environment = lmdb.open(
            str(self.path),
            subdir=True,
            map_size=self.map_size,
            mode=PRIVATE_FILE_MODE,
            max_dbs=limits.LMDB_MAX_DBS,
            max_readers=limits.LMDB_MAX_READERS,
            sync=sync,
            metasync=False,  # begin(durable=True) flushes the meta page itself
            writemap=False,
            readahead=False,
        )
        self._dbs: dict[str, Any] = {}
        #: Full flushes (data and meta page) so far: :meth:`flush` and durable commits.
        self.flushes = 0
        self._page_size: int = self.env.stat()["psize"]
        #: The data file's length: past its last used page, blocks :meth:`reserve` allocated.
        self._reserved_to = (self.path / "data.mdb").stat().st_size
        try:
            with self.env.begin(write=True) as txn:
                meta = self.env.open_db(b"meta", txn=txn, create=True)
                self._check_format(txn, meta)
                for name in DB_NAMES:
                    dupfixed = name in _DUPFIXED_DBS
                    self._dbs[name] = self.env.open_db(
                        name.encode(), txn=txn, create=True, dupsort=dupfixed, dupfixed=dupfixed
                    )
        except StorageFormatError:
            self.env.close()
            raise

    def _check_format(self, txn: lmdb.Transaction, meta: Any) -> None:
        """Record :data:`STORAGE_FORMAT` in a new environment; refuse one of another format."""
        raw = txn.get(FORMAT_KEY, db=meta)
        if raw is None:
            if txn.stat(meta)["entries"] == 0:  # nothing written yet: a new environment
                txn.put(FORMAT_KEY, STORAGE_FORMAT.to_bytes(8, "big"), db=meta)
                return
            found = 1  # written before the format was recorded
        else:
            found = int.from_bytes(raw, "big")
        if found != STORAGE_FORMAT:
            raise StorageFormatError(
                f"data directory {self.path} holds storage format {found}; this version of "
                f"Aspen reads format {STORAGE_FORMAT} only. Start a node of the version that "
                "wrote it, or start this one on an empty data directory and let it catch up "
                "from the cluster",
                path=str(self.path),
                found=found,
                expected=STORAGE_FORMAT,
            )

    def db(self, name: str) -> Any:
        """Return the handle of the named database (one of :data:`DB_NAMES`)."""
        try:
            return self._dbs[name]
        except KeyError:
            raise KeyError(f"unknown database {name!r}; known: {', '.join(DB_NAMES)}") from None

    def begin(self, write: bool = False, *, durable: bool = True) -> Any:
        """Start a transaction (use it as a context manager: commit on success, abort on error).

        A write transaction is durable once the ``with`` block exits unless ``durable`` is
        False: then it is committed with integrity but may be undone by a power loss until
        the next durable commit or :meth:`flush` (see the module docstring)."""
        if write and durable and self._sync:
            return _DurableTxn(self)
        return self.env.begin(write=write)

    @property
    def syncs(self) -> bool:
        """Whether commits are flushed to disk at all (``sync=False``: throwaway test nodes)."""
        return self._sync

    @property
    def reserved_bytes(self) -> int:
        """Bytes of the data file allocated (its length, including :meth:`reserve`'s)."""
        return self._reserved_to

    def reserve(self) -> bool:
        """Keep ``LMDB_RESERVE_BYTES`` allocated past the data file's last used page
        (``posix_fallocate``; topped up once half of it is used). False when less than
        half of it is left and the disk lacks the room to top it up (a commit may then
        fail for lack of space)."""
        if not self._sync:
            return True
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self._page_size
        if self._reserved_to - used >= limits.LMDB_RESERVE_BYTES // 2:
            return True
        fd = os.open(self.path / "data.mdb", os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, used + limits.LMDB_RESERVE_BYTES)
        except OSError:
            return False
        finally:
            os.close(fd)
        self._reserved_to = used + limits.LMDB_RESERVE_BYTES
        return True

    def flush(self) -> None:
        """Make every transaction committed so far durable (a no-op without ``sync``)."""
        if self._sync:
            self.env.sync(True)
            self.flushes += 1

    def sync(self) -> None:
        """Flush to disk (only needed when opened with ``sync=False``)."""
        self.env.sync(True)

    def size_bytes(self) -> int:
        """Bytes of the data file in use (pages up to the highest allocated one)."""
        info = self.env.info()
        return (info["last_pgno"] + 1) * self.env.stat()["psize"]

    def close(self) -> None:
        """Close the environment; the object is unusable afterwards."""
        self.env.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DurableTxn:
    """A write transaction whose commit is flushed to disk, meta page included."""

    __slots__ = ("_storage", "_txn")

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._txn = storage.env.begin(write=True)

    def __enter__(self) -> lmdb.Transaction:
        return self._txn.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._txn.__exit__(*exc)
        if exc[0] is None:
            self._storage.flush()
