"""The fetch side: dulwich's upload-pack, with whole packs streamed for a full clone.

dulwich finds the objects a client lacks by walking every commit and tree, then writes a
pack object by object: right for a fetch (a few objects), slow for a clone of a whole
history. When a client wants every ref and has nothing in common with the repository
(a clone), not shallow, :class:`ForgeUploadPack` instead sends the store's packs as one
pack stream (:func:`pack_stream`): the largest pack's object bytes as stored (it is
self-contained, so its offset deltas stay valid), then whatever the other packs add, whole,
under one header and trailer. Only
a repository with no alternates (not a fork) is served this way, so a clone carries only
what was pushed to that repository.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aspen_forge import limits

__all__ = ["pack_stream", "upload_pack_handler"]

_PIECE = 64 * 1024


def pack_stream(packs: list[Path], store: Any) -> Iterator[bytes]:
    """One pack (header, objects, SHA-1 trailer) holding every object of ``packs`` (paths of
    ``.pack`` files with their ``.idx``) once: the largest pack's object bytes as stored,
    then each object of the others that it lacks, whole (the packs a thin push completed
    repeat their delta bases, and git refuses a pack with an object twice)."""
    from dulwich.pack import load_pack_index, pack_object_chunks

    fmt = store.object_format
    base = max(packs, key=os.path.getsize) if packs else None
    extra: set[bytes] = set()
    base_count = 0
    if base is not None:
        base_index = load_pack_index(str(base.with_suffix(".idx")), fmt)
        try:
            base_count = len(base_index)
            for path in packs:
                if path == base:
                    continue
                index = load_pack_index(str(path.with_suffix(".idx")), fmt)
                try:
                    extra.update(sha for sha in index if sha not in base_index)
                finally:
                    index.close()
        finally:
            base_index.close()
    digest = hashlib.sha1()
    head = b"PACK" + struct.pack(">II", 2, base_count + len(extra))
    digest.update(head)
    yield head
    if base is not None:
        for piece in _pack_objects(base):
            digest.update(piece)
            yield piece
    for sha in sorted(extra):
        type_num, raw = store.get_raw(sha)
        piece = b"".join(pack_object_chunks(type_num, [raw], object_format=fmt))
        digest.update(piece)
        yield piece
    yield digest.digest()


def _pack_objects(path: Path) -> Iterator[bytes]:
    """The object bytes of the pack file ``path`` (no header, no trailer), piece by piece."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(12)
        left = size - 12 - 20
        while left > 0:
            piece = f.read(min(_PIECE, left))
            if not piece:
                raise OSError(f"pack {path} ended early")
            left -= len(piece)
            yield piece


def upload_pack_handler(packs: Callable[[], list[Path]] | None) -> type:
    """dulwich's ``UploadPackHandler`` that streams ``packs()`` for a full clone
    (``None``: never, e.g. for a fork)."""
    from dulwich.protocol import CAPABILITY_FILTER, CAPABILITY_NO_DONE
    from dulwich.server import UploadPackHandler, _ProtocolGraphWalker

    class ForgeUploadPack(UploadPackHandler):
        """upload-pack that sends whole packs to a cloning client."""

        def capabilities(self) -> list[bytes]:
            """dulwich's, without ``filter`` (partial clones are not served yet)."""
            return [c for c in super().capabilities() if c != CAPABILITY_FILTER]

        def handle(self) -> None:
            """Negotiate as dulwich does; then stream whole packs or dulwich's pack."""
            if packs is None:
                super().handle()
                return
            self._processing_have_lines = True
            walker = _ProtocolGraphWalker(
                self, self.repo.object_store, self.repo.get_peeled, self.repo.refs.get_symrefs
            )
            wants: list[Any] = []

            def wants_wrapper(refs: Any, depth: int | None = None) -> list[Any]:
                wants.extend(walker.determine_wants(refs, depth))
                return wants

            missing = self.repo.find_missing_objects(
                wants_wrapper, walker, self.progress, get_tagged=self.get_tagged
            )
            common = getattr(self.repo.object_store, "common", [None])  # ForgeObjectStore
            if not wants or missing is None:
                return
            everything = set(self.repo.get_refs().values())
            whole = not common and not getattr(walker, "shallow", None) and everything <= set(wants)
            if not whole:
                self._send(missing, walker)
                return
            if not walker.handle_done(
                not self.has_capability(CAPABILITY_NO_DONE), self._done_received
            ):
                return
            self._start_pack_send_phase()
            for piece in pack_stream(packs(), self.repo.object_store):
                self.write_pack_data(piece)
            self.proto.write_pkt_line(None)

        def _send(self, missing: Any, walker: Any) -> None:
            """dulwich's own path: the objects the client lacks, one by one."""
            from dulwich.pack import write_pack_from_container

            object_ids = list(missing)
            if not walker.handle_done(
                not self.has_capability(CAPABILITY_NO_DONE), self._done_received
            ):
                return
            self._start_pack_send_phase()
            write_pack_from_container(
                self.write_pack_data,
                self.repo.object_store,
                object_ids,
                object_format=self.repo.object_format,
                # finding reusable deltas scans every object of every pack: worth it only
                # for many objects; a few are sent whole
                reuse_deltas=len(object_ids) >= limits.REUSE_DELTAS_MIN_OBJECTS,
            )
            self.proto.write_pkt_line(None)

    return ForgeUploadPack
