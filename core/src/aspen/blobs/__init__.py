"""The blob store: content-addressed (BLAKE3), replicated, self-repairing large objects.

Modules, one job each: :mod:`~aspen.blobs.hashing` (names and verification),
:mod:`~aspen.blobs.store` (one node's files), :mod:`~aspen.blobs.meta` (cluster state in
KV), :mod:`~aspen.blobs.transfer` (node-to-node copies), :mod:`~aspen.blobs.uploads` (puts
in progress), :mod:`~aspen.blobs.repair` (repairer and GC), :mod:`~aspen.blobs.service`
(``node.blobs``), :mod:`~aspen.blobs.handlers` (the ``blob.*`` methods). See docs/blobs.md.
"""

from __future__ import annotations

from aspen.blobs.hashing import BlobRef, parse_hash

__all__ = ["BlobRef", "parse_hash"]
