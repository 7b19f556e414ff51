"""A bounded LRU of opened (decrypted) values, keyed by KV key and mod revision.

A value stored at a KV key with a given mod revision never changes (a new write gets a
new revision), so the plaintext opened once for ``(key, revision)`` is the plaintext of
every later read of that revision: the store skips AES-GCM for it. Only the msgpack
bytes are kept (callers unpack a fresh copy, so nothing they change leaks into the
cache), one revision per key, within a total byte budget; values over the per-entry
bound are not cached.
"""

from __future__ import annotations

from collections import OrderedDict

from aspen_secrets import limits

__all__ = ["OpenedCache"]


class OpenedCache:
    """Plaintexts by KV key, each valid for one mod revision; least recently used first
    dropped once over ``budget`` bytes."""

    def __init__(
        self,
        budget: int = limits.SECRETS_OPEN_CACHE_BYTES,
        max_value: int = limits.SECRETS_OPEN_CACHE_MAX_VALUE_BYTES,
    ) -> None:
        self._budget = budget
        self._max_value = max_value
        self._items: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        self._size = 0

    def get(self, key: bytes, revision: int) -> bytes | None:
        """The plaintext of ``key`` at ``revision``, if cached."""
        found = self._items.get(key)
        if found is None or found[0] != revision:
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: bytes, revision: int, plaintext: bytes) -> None:
        """Remember the plaintext of ``key`` at ``revision`` (replacing an older one)."""
        self.discard(key)
        if len(plaintext) > self._max_value:
            return
        self._items[key] = (revision, plaintext)
        self._size += len(key) + len(plaintext)
        while self._size > self._budget and self._items:
            old_key, (_, old) = self._items.popitem(last=False)
            self._size -= len(old_key) + len(old)

    def discard(self, key: bytes) -> None:
        """Forget ``key``."""
        found = self._items.pop(key, None)
        if found is not None:
            self._size -= len(key) + len(found[1])

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()
        self._size = 0

    def __len__(self) -> int:
        return len(self._items)
