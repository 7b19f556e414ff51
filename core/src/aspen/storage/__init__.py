"""aspen.storage: the LMDB environment, the Raft log and hard state."""

from __future__ import annotations

from aspen.storage.env import DB_NAMES, Storage
from aspen.storage.log import Log, LogCompactedError, LogEntry

__all__ = ["DB_NAMES", "Log", "LogCompactedError", "LogEntry", "Storage"]
