"""Where engines keep their state: a path → value map with atomic, conditional commits.

Engines never see the cluster or encryption: they read :class:`Entry` objects (a
msgpack-able value plus the revision it was written at) and commit lists of
:class:`Write` that may each expect a revision. A commit is all-or-nothing and is one
replicated transaction in the cluster (:class:`aspen_secrets.kvstore.KvStore`); in unit
tests it is :class:`MemoryStore`.

The pattern for every change is read → compute (random keys, nonces and serials are made
here, *before* the commit is proposed) → commit with the revisions read → on a race,
start again: :func:`modify` does that loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from aspen.errors import CompareFailedError, InvalidArgumentError
from aspen_secrets import limits

__all__ = [
    "ABSENT",
    "Entry",
    "MemoryStore",
    "ScopedStore",
    "Store",
    "Write",
    "check_path",
    "children",
    "modify",
    "pack_value",
    "truncation_warnings",
]

#: ``Write.expect_revision`` value meaning "the path must not exist".
ABSENT = 0


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value and the revision it was last written at (always > 0)."""

    value: Any
    revision: int


@dataclass(frozen=True, slots=True)
class Write:
    """One change in a commit: set ``path`` to ``value``, or delete it.

    ``expect_revision``: ``None`` writes unconditionally, :data:`ABSENT` (0) requires that
    the path does not exist, ``n`` requires that it is still at revision ``n``.
    """

    path: str
    value: Any = None
    delete: bool = False
    expect_revision: int | None = None


class Store(Protocol):
    """The state an engine owns (already scoped to its mount)."""

    async def get(self, path: str) -> Entry | None:
        """The entry at ``path``, or ``None``."""
        ...

    async def scan(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> list[tuple[str, Entry]]:
        """Every ``(path, entry)`` whose path starts with ``prefix``, in path order."""
        ...

    async def keys(self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS) -> list[str]:
        """Every path that starts with ``prefix``, in order (values not read)."""
        ...

    async def children(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> tuple[list[str], bool]:
        """Vault's LIST under ``prefix``: the distinct next segments of the paths that start
        with it (folders end in ``/``), at most ``limit``, and whether more were left out.
        Costs what it answers: the paths below a folder are not read one by one."""
        ...

    async def commit(self, writes: Sequence[Write]) -> bool:
        """Apply every write atomically; ``False`` (nothing written) if an expectation fails."""
        ...


def check_path(path: str) -> str:
    """Validate a path inside a mount: no empty, ``.`` or ``..`` segments, bounded length."""
    if len(path) > limits.SECRETS_MAX_PATH_CHARS:
        raise InvalidArgumentError(
            f"path is longer than {limits.SECRETS_MAX_PATH_CHARS} characters"
        )
    if "\x00" in path or any(seg in (".", "..") for seg in path.split("/")):
        raise InvalidArgumentError(f"invalid path {path!r}")
    return path


def children(paths: Sequence[str], prefix: str) -> list[str]:
    """Vault's LIST answer: the distinct next segments under ``prefix``; folders end in ``/``.

    ``children(["a/b", "a/c/d", "a/c/e"], "a/") == ["b", "c/"]``.
    """
    seen: dict[str, None] = {}
    for path in paths:
        if not path.startswith(prefix) or path == prefix:
            continue
        rest = path[len(prefix) :]
        head, sep, _ = rest.partition("/")
        seen[head + sep] = None
    return sorted(seen)


async def modify(
    store: Store,
    compute: Callable[[], Awaitable[tuple[Sequence[Write], Any]]],
    *,
    attempts: int = limits.SECRETS_MAX_WRITE_ATTEMPTS,
) -> Any:
    """Run ``compute`` (which reads, then returns ``(writes, result)``) and commit its
    writes; when another writer got there first, run it again. Returns ``result``.

    ``compute`` must read everything it bases its writes on *inside* the call and put the
    revisions it read in its writes' ``expect_revision``.
    """
    for _ in range(attempts):
        writes, result = await compute()
        if not writes or await store.commit(writes):
            return result
    raise CompareFailedError(f"the write raced other writers {attempts} times; try again")


class ScopedStore:
    """A view of ``store`` under ``prefix`` (paths are joined as ``prefix + path``)."""

    def __init__(self, store: Store, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    async def get(self, path: str) -> Entry | None:
        """See :meth:`Store.get`."""
        return await self._store.get(self._prefix + path)

    async def scan(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> list[tuple[str, Entry]]:
        """See :meth:`Store.scan`."""
        cut = len(self._prefix)
        found = await self._store.scan(self._prefix + prefix, limit=limit)
        return [(path[cut:], entry) for path, entry in found]

    async def keys(self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS) -> list[str]:
        """See :meth:`Store.keys`."""
        cut = len(self._prefix)
        return [p[cut:] for p in await self._store.keys(self._prefix + prefix, limit=limit)]

    async def children(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> tuple[list[str], bool]:
        """See :meth:`Store.children`."""
        return await self._store.children(self._prefix + prefix, limit=limit)

    async def commit(self, writes: Sequence[Write]) -> bool:
        """See :meth:`Store.commit`."""
        return await self._store.commit(
            [Write(self._prefix + w.path, w.value, w.delete, w.expect_revision) for w in writes]
        )


def truncation_warnings(
    found: Sequence[Any],
    limit: int = limits.SECRETS_MAX_LIST_KEYS,
    *,
    truncated: bool | None = None,
) -> tuple[str, ...]:
    """The warning a LIST answer carries when its scan stopped at ``limit`` keys (the
    store returned as many as it was allowed: there may be more; ``truncated`` says so
    when the listing knows)."""
    if truncated is None:
        truncated = len(found) >= limit
    return (f"list truncated at {limit} keys",) if truncated else ()


def pack_value(path: str, value: Any) -> bytes:
    """The msgpack of a value to store at ``path``; ``invalid_argument`` when it cannot be
    packed (a lone surrogate in a string, an integer beyond 64 bits, an odd type)."""
    try:
        return msgpack.packb(value)
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(f"the value for {path} cannot be stored: {exc}") from None


class MemoryStore:
    """An in-process :class:`Store` for unit tests, with the same semantics as the cluster's
    (values are copied through msgpack, as they would be on the wire)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    async def get(self, path: str) -> Entry | None:
        """See :meth:`Store.get`."""
        found = self._data.get(path)
        return None if found is None else Entry(msgpack.unpackb(found[0]), found[1])

    async def scan(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> list[tuple[str, Entry]]:
        """See :meth:`Store.scan`."""
        paths = sorted(p for p in self._data if p.startswith(prefix))[:limit]
        return [(p, Entry(msgpack.unpackb(self._data[p][0]), self._data[p][1])) for p in paths]

    async def keys(self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS) -> list[str]:
        """See :meth:`Store.keys`."""
        return sorted(p for p in self._data if p.startswith(prefix))[:limit]

    async def children(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> tuple[list[str], bool]:
        """See :meth:`Store.children`."""
        names = children(sorted(p for p in self._data if p.startswith(prefix)), prefix)
        return names[:limit], len(names) > limit

    async def commit(self, writes: Sequence[Write]) -> bool:
        """See :meth:`Store.commit`."""
        packed = {w.path: pack_value(w.path, w.value) for w in writes if not w.delete}
        for w in writes:
            if w.expect_revision is None:
                continue
            current = self._data.get(w.path)
            if (current[1] if current else ABSENT) != w.expect_revision:
                return False
        self.revision += 1
        for w in writes:
            if w.delete:
                self._data.pop(w.path, None)
            else:
                self._data[w.path] = (packed[w.path], self.revision)
        return True
