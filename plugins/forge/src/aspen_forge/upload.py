"""The fetch side: dulwich's upload-pack, with whole packs streamed for a full clone.

dulwich finds the objects a client lacks by walking every commit and tree, then writes a
pack object by object: right for a fetch (a few objects), slow for a clone of a whole
history. When a client wants every ref and has nothing in common with the repository
(a clone), not shallow and unfiltered, :class:`ForgeUploadPack` instead sends the store's
packs as one pack stream: their object bytes as stored (each pack is self-contained, and
offset deltas stay valid when packs are concatenated) under one header and trailer. Only
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


def pack_stream(packs: list[Path]) -> Iterator[bytes]:
    """One pack (header, objects, SHA-1 trailer) made of the objects of ``packs`` (paths
    of ``.pack`` files), read piece by piece."""
    counts = []
    for path in packs:
        with open(path, "rb") as f:
            header = f.read(12)
        counts.append(struct.unpack(">I", header[8:12])[0])
    digest = hashlib.sha1()
    head = b"PACK" + struct.pack(">II", 2, sum(counts))
    digest.update(head)
    yield head
    for path in packs:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(12)
            left = size - 12 - 20
            while left > 0:
                piece = f.read(min(_PIECE, left))
                if not piece:
                    raise OSError(f"pack {path} ended early")
                left -= len(piece)
                digest.update(piece)
                yield piece
    yield digest.digest()


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
            for piece in pack_stream(packs()):
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
