"""A small LRU of loaded private key objects, keyed by (key name, entry revision, version).

A key entry's revision changes on every write to it, so a cached object can never
outlive the material it was loaded from. Operations run in worker threads, so the
cache is locked (loading happens outside the lock; a rare double load is harmless).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from aspen_secrets import limits

__all__ = ["KeyCache"]


class KeyCache:
    """At most ``size`` loaded objects, least recently used dropped first."""

    def __init__(self, size: int = limits.TRANSIT_KEY_CACHE_ENTRIES) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ident: Hashable, load: Callable[[], Any]) -> Any:
        """The object cached as ``ident``, loading (and caching) it when missing."""
        with self._lock:
            if ident in self._items:
                self._items.move_to_end(ident)
                return self._items[ident]
        value = load()
        with self._lock:
            self._items[ident] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value
