"""aspen-jobs: job queues on an Aspen cluster (see README.md)."""

from __future__ import annotations

__all__: list[str] = []
