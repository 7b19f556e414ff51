"""A thread-safe least-recently-used cache of text bounded by the UTF-8 bytes it holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["ByteLRU"]


class ByteLRU:
    """Text values by key, at most ``max_bytes`` (UTF-8) of them; a value over a quarter
    of the bound is not kept, so that one page cannot flush the rest."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[str, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> str | None:
        """The value of ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: str) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used over the bound."""
        size = len(value.encode())
        if size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._size += size - (old[1] if old is not None else 0)
            self._items[key] = (value, size)
            while self._size > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped
