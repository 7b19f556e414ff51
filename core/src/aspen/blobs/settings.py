"""The blob store's tunables on one node: ``aspen.limits`` defaults, overridable by
``ASPEN_BLOB_*`` environment variables (tests use short grace periods and small bounds)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from aspen import limits

__all__ = ["BlobSettings"]


@dataclass(frozen=True, slots=True)
class BlobSettings:
    """Bounds and periods of the blob store (see the ``BLOB_*`` constants in aspen.limits)."""

    max_bytes: int = limits.BLOB_MAX_BYTES
    disk_reserve_bytes: int = limits.BLOB_DISK_RESERVE_BYTES
    gc_grace_seconds: float = limits.BLOB_GC_GRACE_SECONDS
    holder_grace_seconds: float = limits.BLOB_HOLDER_GRACE_SECONDS
    repair_interval_seconds: float = limits.BLOB_REPAIR_INTERVAL_SECONDS
    scrub_interval_seconds: float = limits.BLOB_SCRUB_INTERVAL_SECONDS
    upload_idle_seconds: float = limits.BLOB_UPLOAD_IDLE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> BlobSettings:
        """Defaults, each replaced by ``ASPEN_BLOB_<NAME>`` when that is set."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"ASPEN_BLOB_{f.name.upper()}")
            if raw:
                values[f.name] = int(raw) if f.type in (int, "int") else float(raw)
        return cls(**values)
