"""A per-node cache of commit parents, so that fetch negotiation does not parse history.

dulwich walks every ancestor of what a fetching client has (to know what not to send),
reading each commit from its pack. Commit ids name immutable commits, so their parents can
be kept: :class:`ParentsCache` answers dulwich's commit-graph lookup (``get_parents``),
reading a commit only the first time this node meets it. Bounded by
``MAX_PARENT_CACHE_COMMITS`` (then cleared and refilled).
"""

from __future__ import annotations

import threading
from typing import Any

from aspen_forge import limits

__all__ = ["ParentsCache", "StoreParents"]


class ParentsCache:
    """Commit id → parent ids, shared by every store of one node (thread-safe)."""

    def __init__(self, most: int = limits.MAX_PARENT_CACHE_COMMITS) -> None:
        self._parents: dict[bytes, list[bytes]] = {}
        self._most = most
        self._lock = threading.Lock()

    def for_store(self, store: Any) -> StoreParents:
        """The commit-graph view dulwich asks, reading misses from ``store``."""
        return StoreParents(self, store)

    def get(self, sha: bytes) -> list[bytes] | None:
        """The cached parents of ``sha``."""
        return self._parents.get(sha)

    def put(self, sha: bytes, parents: list[bytes]) -> None:
        """Remember the parents of commit ``sha``."""
        with self._lock:
            if len(self._parents) >= self._most:
                self._parents.clear()
            self._parents[sha] = parents

    def __len__(self) -> int:
        return len(self._parents)


class StoreParents:
    """What dulwich's ``get_commit_graph()`` returns: ``get_parents(sha)``."""

    def __init__(self, cache: ParentsCache, store: Any) -> None:
        self._cache = cache
        self._store = store

    def get_parents(self, sha: bytes) -> list[bytes] | None:
        """The parents of commit ``sha`` (``None`` if it is not a commit here)."""
        from dulwich.objects import Commit

        parents = self._cache.get(sha)
        if parents is not None:
            return parents
        try:
            obj = self._store[sha]
        except KeyError:
            return None
        if not isinstance(obj, Commit):
            return None
        self._cache.put(sha, list(obj.parents))
        return list(obj.parents)
