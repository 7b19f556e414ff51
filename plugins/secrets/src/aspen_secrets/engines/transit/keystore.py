"""Transit keys in the engine's store: one entry per key at ``keys/<name>``.

Every change is read → compute (new material is generated here, off the event loop) →
commit expecting the revision read, retried by :func:`aspen_secrets.store.modify`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen_secrets.engines.transit.cache import KeyCache
from aspen_secrets.engines.transit.crypto import KeyHandle
from aspen_secrets.engines.transit.keys import KeyOptions, KeyPolicy
from aspen_secrets.store import ABSENT, Store, Write, modify

__all__ = ["KEYS_PREFIX", "KeyStore"]

#: Where key entries live inside the mount's store.
KEYS_PREFIX = "keys/"


class KeyStore:
    """Reads and changes the key entries of one transit mount."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache = KeyCache()

    async def load(self, name: str) -> KeyHandle | None:
        """The key called ``name``, or ``None``."""
        entry = await self._store.get(KEYS_PREFIX + name)
        if entry is None:
            return None
        # a policy is frozen and its entry's revision changes on every write: parse it once
        policy = self._cache.get(
            ("policy", name, entry.revision), lambda: KeyPolicy.from_value(entry.value)
        )
        return KeyHandle(policy, entry.revision, self._cache)

    async def require(
        self, name: str, *, missing: type[Exception] = InvalidArgumentError
    ) -> KeyHandle:
        """The key called ``name``; ``missing`` (400 by default, as Vault's operations
        answer) when there is none."""
        handle = await self.load(name)
        if handle is None:
            raise missing(f"key {name!r} not found")
        return handle

    async def names(self) -> list[str]:
        """Every key name, sorted."""
        names, _ = await self._store.children(KEYS_PREFIX)
        return names

    async def create(self, name: str, options: KeyOptions) -> tuple[KeyHandle, bool]:
        """The key called ``name``, created with ``options`` unless it exists; whether it
        was created."""
        options.validate()

        async def compute() -> tuple[list[Write], bool]:
            if await self._store.get(KEYS_PREFIX + name) is not None:
                return [], False
            policy = await asyncio.to_thread(KeyPolicy.create, name, options)
            return [Write(KEYS_PREFIX + name, policy.to_value(), expect_revision=ABSENT)], True

        created = await modify(self._store, compute)
        return await self.require(name), created

    async def update(
        self, name: str, change: Callable[[KeyPolicy], KeyPolicy], *, slow: bool = False
    ) -> KeyPolicy:
        """Apply ``change`` to the stored key (run in a thread when ``slow``, e.g. when
        it generates RSA material) and commit the result; the new policy."""

        async def compute() -> tuple[list[Write], KeyPolicy]:
            entry = await self._store.get(KEYS_PREFIX + name)
            if entry is None:
                raise NotFoundError(f"key {name!r} not found")
            policy = KeyPolicy.from_value(entry.value)
            new = await asyncio.to_thread(change, policy) if slow else change(policy)
            write = Write(KEYS_PREFIX + name, new.to_value(), expect_revision=entry.revision)
            return [write], new

        return await modify(self._store, compute)

    async def delete(self, name: str) -> None:
        """Delete the key if its policy allows deletion."""

        async def compute() -> tuple[list[Write], None]:
            entry = await self._store.get(KEYS_PREFIX + name)
            if entry is None:
                raise NotFoundError(f"key {name!r} not found")
            if not entry.value.get("deletion_allowed"):
                raise InvalidArgumentError("deletion is not allowed for this key")
            return [Write(KEYS_PREFIX + name, delete=True, expect_revision=entry.revision)], None

        await modify(self._store, compute)
