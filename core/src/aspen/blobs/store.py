"""One node's blobs on its own disk: ``<data_dir>/blobs``.

Layout: ``objects/<first two hex digits>/<hash>`` holds a blob's bytes and ``<hash>.sums``
its chunk sums (:class:`~aspen.blobs.hashing.ChunkSums`); ``tmp/`` holds puts in progress.
A put writes a temporary file while hashing it, fsyncs it, writes and fsyncs the sums, then
renames sums and bytes into place and fsyncs the directory: a blob is present exactly when
its bytes file exists, and then it is complete and durable. Whatever is left in ``tmp/``
after a crash is deleted when the store opens.

Every method does blocking I/O: call them from a worker thread (``anyio.to_thread``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

from aspen.blobs.hashing import (
    HASH_RE,
    VERIFY_CHUNK_BYTES,
    BlobRef,
    ChunkSums,
    Hasher,
    check_range,
)
from aspen.errors import (
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from aspen.storage.private import make_private_dir

__all__ = ["BlobCorruptError", "BlobStore", "BlobWriter"]

#: Name of the blob directory inside a node's data directory.
BLOBS_DIR = "blobs"


class BlobCorruptError(UnavailableError):
    """This node's replica of a blob failed its hash check (it is never served)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_full(exc: OSError, what: str) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"no disk space left on this node for {what} ({exc.strerror}); free space in its "
        "data directory or put the blob elsewhere",
        resource="disk",
    )


class BlobStore:
    """Content-addressed files under ``root``; see the module docstring."""

    def __init__(self, root: Path, *, max_bytes: int, reserve_bytes: int) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        #: Held while a replica is put in place or removed as stale: a put of a hash and
        #: the local GC of the same hash never interleave.
        self.lock = threading.Lock()
        make_private_dir(root)  # 0700 like the rest of the data dir: blobs hold user data
        make_private_dir(self.objects)
        shutil.rmtree(self.tmp, ignore_errors=True)  # puts a crash interrupted
        make_private_dir(self.tmp)

    # ------------------------------------------------------------------ where
    def path(self, digest: str) -> Path:
        """The file holding the bytes of ``digest``."""
        return self.objects / digest[:2] / digest

    def sums_path(self, digest: str) -> Path:
        """The file holding the chunk sums of ``digest``."""
        return self.objects / digest[:2] / f"{digest}.sums"

    # ------------------------------------------------------------------ questions
    def _stat(self, digest: str) -> os.stat_result | None:
        try:
            return self.path(digest).stat()
        except FileNotFoundError:
            return None

    def size(self, digest: str) -> int | None:
        """Size of the local replica of ``digest``, or ``None`` if this node has none."""
        st = self._stat(digest)
        return None if st is None else st.st_size

    def has(self, digest: str) -> bool:
        """Whether this node holds ``digest``."""
        return self.path(digest).exists()

    def mtime(self, digest: str) -> float | None:
        """When the local replica was last written or touched (``None``: absent)."""
        st = self._stat(digest)
        return None if st is None else st.st_mtime

    def touch(self, digest: str) -> None:
        """Mark the local replica as just used (GC of local files goes by this time)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(digest))

    def hashes(self) -> Iterator[str]:
        """Every blob held here (in no particular order)."""
        for sub in self.objects.iterdir():
            for entry in sub.iterdir():
                if HASH_RE.fullmatch(entry.name):
                    yield entry.name

    def stale(self, older_than: float) -> list[str]:
        """The replicas last written or touched before ``older_than`` (GC candidates)."""
        out = []
        for digest in self.hashes():
            mtime = self.mtime(digest)
            if mtime is not None and mtime < older_than:
                out.append(digest)
        return out

    def usage(self) -> tuple[int, int]:
        """``(blobs, bytes)`` held here."""
        count = total = 0
        for digest in self.hashes():
            size = self.size(digest)
            if size is not None:
                count, total = count + 1, total + size
        return count, total

    def free_bytes(self) -> int:
        """Free bytes on the disk of the store."""
        return shutil.disk_usage(self.root).free

    # ------------------------------------------------------------------ writing
    def writer(self, size: int | None = None) -> BlobWriter:
        """Start writing a blob (of ``size`` bytes if known: refused now when it is over
        the bound or does not fit the disk)."""
        if size is not None:
            self.check_size(size)
            if self.free_bytes() < size + self.reserve_bytes:
                raise ResourceExhaustedError(
                    f"a blob of {size} bytes does not fit on this node's disk "
                    f"({self.free_bytes()} bytes free, BLOB_DISK_RESERVE_BYTES = "
                    f"{self.reserve_bytes} kept free)",
                    resource="disk",
                )
        return BlobWriter(self)

    def check_size(self, size: int) -> None:
        """Refuse a blob over the bound (``resource_exhausted`` naming it)."""
        if size > self.max_bytes:
            raise ResourceExhaustedError(
                f"a blob of {size} bytes is over the bound (BLOB_MAX_BYTES = {self.max_bytes})",
                limit=self.max_bytes,
            )

    def delete(self, digest: str) -> bool:
        """Remove the local replica of ``digest``; return whether there was one."""
        existed = False
        for path in (self.path(digest), self.sums_path(digest)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                existed = True
        return existed

    def delete_if_stale(self, digest: str, older_than: float) -> bool:
        """Remove the local replica if it was last written or touched before ``older_than``
        (a put of the same hash touches it under the same lock, so it is never removed)."""
        with self.lock:
            mtime = self.mtime(digest)
            if mtime is None or mtime >= older_than:
                return False
            return self.delete(digest)

    # ------------------------------------------------------------------ reading
    def _sums(self, digest: str, size: int) -> ChunkSums:
        try:
            data = self.sums_path(digest).read_bytes()
        except FileNotFoundError:
            data = b""
        sums = ChunkSums.decode(digest, size, data)
        if sums is None:
            raise BlobCorruptError(f"the sums of blob {digest} on this node are damaged")
        return sums

    def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> Generator[bytes, None, None]:
        """Yield the bytes of ``[offset, offset + length)`` of ``digest`` in pieces of at
        most ``VERIFY_CHUNK_BYTES``, each verified before it is yielded. Raises
        ``not_found`` if absent, :class:`BlobCorruptError` at the first damaged piece."""
        size = self.size(digest)
        if size is None:
            raise NotFoundError(f"blob {digest} is not on this node", hash=digest)
        length = check_range(size, offset, length)
        sums = self._sums(digest, size)
        end = offset + length
        index = offset // VERIFY_CHUNK_BYTES
        with open(self.path(digest), "rb", buffering=0) as f:
            while offset < end:
                start = index * VERIFY_CHUNK_BYTES
                f.seek(start)
                piece = f.read(min(VERIFY_CHUNK_BYTES, size - start))
                if not sums.check(index, piece):
                    raise BlobCorruptError(
                        f"blob {digest} on this node failed its hash check at byte {start}",
                        hash=digest,
                        offset=start,
                    )
                stop = min(end, start + len(piece))
                yield piece[offset - start : stop - start]
                offset, index = stop, index + 1

    def verify(self, digest: str) -> bool:
        """Re-hash the whole local replica; ``False`` if it is damaged (or vanished)."""
        size = self.size(digest)
        if size is None:
            return False
        hasher = Hasher()
        try:
            for piece in self.read(digest):
                hasher.update(piece)
        except (BlobCorruptError, NotFoundError):
            return False
        return hasher.finish()[0] == digest


class BlobWriter:
    """A blob being written: :meth:`write` the bytes in order, then :meth:`commit` or
    :meth:`abort`. Nothing is visible before the commit."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        name = secrets.token_hex(8)
        self.tmp_path = store.tmp / name
        self.tmp_sums = store.tmp / f"{name}.sums"
        self._file = open(self.tmp_path, "xb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        self._hasher = Hasher()
        self.closed = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._hasher.size

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (refused past the bound or when the disk is full)."""
        store = self.store
        store.check_size(self._hasher.size + len(data))
        free = store.free_bytes()
        if free < store.reserve_bytes + len(data):
            self.abort()
            raise ResourceExhaustedError(
                f"no disk space left on this node for a blob ({free} bytes free, "
                f"BLOB_DISK_RESERVE_BYTES = {store.reserve_bytes} kept free)",
                resource="disk",
            )
        self._hasher.update(data)
        view = memoryview(data)
        try:
            while view:
                n = self._file.write(view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(exc, "a blob") from exc
            raise

    def commit(self, expected: str | None = None) -> BlobRef:
        """Make the blob durable and visible; if ``expected`` is given and the bytes do not
        hash to it, drop them and raise ``invalid_argument``."""
        digest, sums = self._hasher.finish()
        try:
            if expected is not None and digest != expected:
                raise InvalidArgumentError(
                    f"the bytes hash to {digest}, not to the expected {expected}",
                    hash=digest,
                    expected=expected,
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            with open(self.tmp_sums, "xb") as f:
                f.write(sums.encode())
                f.flush()
                os.fsync(f.fileno())
            final = self.store.path(digest)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            with self.store.lock:
                if final.exists():
                    self.store.touch(digest)  # stored once per node: keep the replica we have
                else:
                    os.replace(self.tmp_sums, self.store.sums_path(digest))
                    os.replace(self.tmp_path, final)
                    _fsync_dir(final.parent)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(exc, "a blob") from exc
            raise
        finally:
            self.abort()
        return BlobRef(digest, sums.size)

    def abort(self) -> None:
        """Drop what was written (no effect after a commit)."""
        if not self._file.closed:
            self._file.close()
        for path in (self.tmp_path, self.tmp_sums):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.closed = True
