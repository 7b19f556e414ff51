"""The mount table and the router from a full request path to its engine.

The table is one store entry (:data:`TABLE_PATH`): ``{"mounts": {path: Mount.to_json()},
"pending_purges": [uuid, …]}``.
A new cluster gets the default mounts (``secret/`` kv v2, ``transit/``, ``pki/``) the
first time any node starts, created with an ``ABSENT`` expectation so that starting
nodes race harmlessly. Each mount's engine keeps its state under ``mounts/<uuid>/``
(:class:`~aspen_secrets.store.ScopedStore`), so an unmount deletes that prefix and a
remount at the same path starts empty. The unmount removes the mount and records its uuid
in ``pending_purges`` in one commit, then purges the prefix in batches and drops the uuid
from the list: a purge cut short (a crash, a lost leader) is finished by the next unmount
or when the leader's plugin starts (:meth:`MountTable.resume_purges`). As in Vault,
unmounting a path where nothing is mounted succeeds (so a retried unmount is harmless).

:class:`Router` resolves a path to ``(mount, engine, rest)`` by longest mount prefix,
caching engine instances by mount uuid and the table by its revision: another node's
mount change (or tuning, which rebuilds the engine with the new config) is seen at the
next request.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aspen.errors import AspenError, InvalidArgumentError, NotFoundError, UnavailableError
from aspen_secrets import limits
from aspen_secrets.engines import ENGINE_TYPES, engine_class
from aspen_secrets.engines.base import Engine, Mount
from aspen_secrets.logical import UnsupportedPathError
from aspen_secrets.store import ABSENT, Entry, ScopedStore, Store, Write, check_path, modify

__all__ = [
    "DEFAULT_MOUNTS",
    "RESERVED_PREFIXES",
    "TABLE_PATH",
    "MountTable",
    "Router",
    "engine_prefix",
    "is_unauthenticated",
    "normalize_mount_path",
]

log = logging.getLogger(__name__)

#: Store path of the mount table.
TABLE_PATH = "core/mounts"
#: Path prefixes no engine may be mounted at (they are the plugin's own endpoints).
RESERVED_PREFIXES = ("sys/", "auth/", "identity/", "cubbyhole/")
#: The mounts a new cluster starts with: (path, type, options, description).
DEFAULT_MOUNTS: tuple[tuple[str, str, dict[str, str], str], ...] = (
    ("secret/", "kv", {"version": "2"}, "key/value secret storage"),
    ("transit/", "transit", {}, "encryption as a service"),
    ("pki/", "pki", {}, "certificate authority"),
)
#: The mount type Vault also accepts for a KV version 2 engine.
KV_V2_ALIAS = "kv-v2"
_SEGMENT = re.compile(r"[A-Za-z0-9_.@-]+")

#: Reads the table entry; the router uses a local (serializable) read for its cache check.
TableReader = Callable[[str], Awaitable[Entry | None]]


def engine_prefix(mount_uuid: str) -> str:
    """Store prefix of the state of the engine mounted with ``mount_uuid``."""
    return f"mounts/{mount_uuid}/"


def normalize_mount_path(path: str) -> str:
    """``"a/b"``, ``"/a/b/"`` → ``"a/b/"``; refuses empty, odd or reserved paths."""
    clean = path.strip("/")
    if not clean:
        raise InvalidArgumentError("a mount path must not be empty")
    check_path(clean)
    for segment in clean.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidArgumentError(
                f"invalid mount path {path!r}: segments are letters, digits and _ . @ -"
            )
    normal = clean + "/"
    if normal.startswith(RESERVED_PREFIXES):
        raise InvalidArgumentError(f"cannot mount at {normal!r}: the path is reserved")
    return normal


def _mount_from_json(path: str, raw: dict[str, Any]) -> Mount:
    return Mount(
        path=path,
        type=raw["type"],
        uuid=raw["uuid"],
        description=raw.get("description", ""),
        options=dict(raw.get("options") or {}),
        config=dict(raw.get("config") or {}),
    )


def _check_options(type_name: str, options: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Validate a new mount's type and options (only KV version 2 is served); returns the
    type and options to store (Vault's ``kv-v2`` type is ``kv`` with version 2)."""
    if type_name == KV_V2_ALIAS:
        type_name, options = "kv", {**options, "version": options.get("version") or "2"}
    if type_name not in ENGINE_TYPES:
        known = ", ".join(sorted(ENGINE_TYPES))
        raise InvalidArgumentError(f"unknown secrets engine type {type_name!r}; known: {known}")
    options = {str(k): str(v) for k, v in options.items()}
    if type_name == "kv":
        version = options.setdefault("version", "2")
        if version != "2":
            raise InvalidArgumentError(
                f"only KV version 2 is supported (options.version={version!r})"
            )
    return type_name, options


class MountTable:
    """Reads and changes the stored mount table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def parse(entry: Entry | None) -> dict[str, Mount]:
        """The mounts of a stored table entry (path → mount)."""
        if entry is None:
            return {}
        return {p: _mount_from_json(p, raw) for p, raw in entry.value["mounts"].items()}

    @staticmethod
    def pending_purges(entry: Entry | None) -> list[str]:
        """The uuids of unmounted engines whose state is not fully deleted yet."""
        if entry is None:
            return []
        return [str(u) for u in entry.value.get("pending_purges") or ()]

    @classmethod
    def _value(cls, mounts: dict[str, Mount], entry: Entry | None) -> dict[str, Any]:
        """The stored table of ``mounts``, keeping the pending purges of ``entry``."""
        return cls._table(mounts, cls.pending_purges(entry))

    @staticmethod
    def _table(mounts: dict[str, Mount], pending: list[str]) -> dict[str, Any]:
        return {
            "mounts": {p: m.to_json() for p, m in sorted(mounts.items())},
            "pending_purges": sorted(set(pending)),
        }

    async def read(self) -> dict[str, Mount]:
        """Every mount, by path."""
        return self.parse(await self.store.get(TABLE_PATH))

    async def ensure_defaults(self) -> bool:
        """Create the default mounts if the cluster has no mount table yet; True if created."""
        if await self.store.get(TABLE_PATH) is not None:
            return False
        mounts = {
            path: Mount(path, kind, str(uuid.uuid4()), description, dict(options))
            for path, kind, options, description in DEFAULT_MOUNTS
        }
        return await self.store.commit(
            [Write(TABLE_PATH, self._value(mounts, None), expect_revision=ABSENT)]
        )

    async def mount(
        self,
        path: str,
        type_name: str,
        *,
        description: str = "",
        options: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Mount:
        """Add a mount at ``path`` (refused if it overlaps an existing one)."""
        path = normalize_mount_path(path)
        type_name, options = _check_options(type_name, dict(options or {}))

        async def compute() -> tuple[list[Write], Mount]:
            entry = await self.store.get(TABLE_PATH)
            mounts = self.parse(entry)
            for existing in mounts:
                if existing.startswith(path) or path.startswith(existing):
                    raise InvalidArgumentError(f"path is already in use at {existing}")
            if len(mounts) >= limits.SECRETS_MAX_MOUNTS:
                raise InvalidArgumentError(
                    f"SECRETS_MAX_MOUNTS ({limits.SECRETS_MAX_MOUNTS}) engines are mounted"
                )
            new = Mount(path, type_name, str(uuid.uuid4()), description, options, config or {})
            expect = entry.revision if entry is not None else ABSENT
            value = self._value({**mounts, path: new}, entry)
            return [Write(TABLE_PATH, value, expect_revision=expect)], new

        return await modify(self.store, compute)

    async def tune(
        self, path: str, *, description: str | None = None, config: dict[str, Any] | None = None
    ) -> Mount:
        """Change the mount at ``path``: its description (if given) and the ``config``
        fields given (merged into its config; a default lease TTL over the maximum is
        refused)."""
        path = normalize_mount_path(path)

        async def compute() -> tuple[list[Write], Mount]:
            entry = await self.store.get(TABLE_PATH)
            mounts = self.parse(entry)
            if path not in mounts or entry is None:
                raise NotFoundError(f"no secrets engine is mounted at {path}")
            old = mounts[path]
            new = replace(
                old,
                description=old.description if description is None else description,
                config={**old.config, **(config or {})},
            )
            default, maximum = (new.config.get(k) for k in ("default_lease_ttl", "max_lease_ttl"))
            if default and maximum and default > maximum:
                raise InvalidArgumentError("default_lease_ttl cannot be greater than max_lease_ttl")
            value = self._value({**mounts, path: new}, entry)
            return [Write(TABLE_PATH, value, expect_revision=entry.revision)], new

        return await modify(self.store, compute)

    async def unmount(self, path: str) -> Mount | None:
        """Remove the mount at ``path`` (recording it as a pending purge in the same commit)
        and delete its engine's state in bounded batches. Returns the removed mount, or
        ``None`` when nothing was mounted at ``path`` (not an error, as in Vault: a retried
        unmount succeeds; leftover purges are finished all the same)."""
        path = normalize_mount_path(path)

        async def compute() -> tuple[list[Write], Mount | None]:
            entry = await self.store.get(TABLE_PATH)
            mounts = self.parse(entry)
            gone = mounts.pop(path, None)
            if gone is None or entry is None:
                return [], None
            value = self._table(mounts, [*self.pending_purges(entry), gone.uuid])
            return [Write(TABLE_PATH, value, expect_revision=entry.revision)], gone

        gone = await modify(self.store, compute)
        await self.resume_purges()
        return gone

    async def resume_purges(self) -> int:
        """Finish every pending purge; returns how many entries were deleted."""
        deleted = 0
        for mount_uuid in self.pending_purges(await self.store.get(TABLE_PATH)):
            deleted += await self.purge(mount_uuid)
        return deleted

    async def purge(self, mount_uuid: str) -> int:
        """Delete every entry of an unmounted engine, then drop it from the pending purges;
        returns how many entries were deleted."""
        prefix = engine_prefix(mount_uuid)
        deleted = 0
        while True:
            paths = await self.store.keys(prefix, limit=limits.SECRETS_UNMOUNT_BATCH)
            if not paths:
                break
            await self.store.commit([Write(p, delete=True) for p in paths])
            deleted += len(paths)

        async def compute() -> tuple[list[Write], None]:
            entry = await self.store.get(TABLE_PATH)
            pending = self.pending_purges(entry)
            if entry is None or mount_uuid not in pending:
                return [], None
            rest = [u for u in pending if u != mount_uuid]
            value = self._table(self.parse(entry), rest)
            return [Write(TABLE_PATH, value, expect_revision=entry.revision)], None

        await modify(self.store, compute)
        return deleted


def is_unauthenticated(engine: Engine, rest: str) -> bool:
    """Whether ``rest`` (a path inside ``engine``'s mount) fully matches one of the regular
    expressions of the engine class's ``unauthenticated_paths`` (none by default)."""
    patterns: tuple[str, ...] = getattr(engine, "unauthenticated_paths", ())
    return any(re.fullmatch(pattern, rest) for pattern in patterns)


@dataclass
class _Cached:
    revision: int
    mounts: dict[str, Mount]


class Router:
    """Finds the engine of a full request path; engines are built once per mount uuid."""

    def __init__(self, store: Store, read_table: TableReader | None = None) -> None:
        self.table = MountTable(store)
        self._store = store
        self._read_table = read_table or store.get
        self._cache = _Cached(-1, {})
        self._engines: dict[str, Engine] = {}

    async def mounts(self) -> dict[str, Mount]:
        """The current mounts (re-read when the stored table's revision changed)."""
        entry = await self._read_table(TABLE_PATH)
        revision = entry.revision if entry is not None else 0
        if revision != self._cache.revision:
            mounts = MountTable.parse(entry)
            self._cache = _Cached(revision, mounts)
            live = {m.uuid: m for m in mounts.values()}  # a tuned mount gets a new engine
            self._engines = {u: e for u, e in self._engines.items() if live.get(u) == e.mount}
        return self._cache.mounts

    async def resolve(self, path: str) -> tuple[Mount, Engine, str]:
        """``(mount, engine, path inside the mount)`` for a full path (longest prefix)."""
        mounts = await self.mounts()
        candidate = path.strip("/") + "/"
        best = max((p for p in mounts if candidate.startswith(p)), key=len, default=None)
        if best is None:
            raise UnsupportedPathError(f"no handler for route {path!r}: no mount at this path")
        mount = mounts[best]
        return mount, await self.engine(mount), candidate[len(best) :].strip("/")

    async def unauthenticated(self, path: str) -> bool:
        """Whether the engine serving ``path`` lets it be read without a token."""
        try:
            _, engine, rest = await self.resolve(check_path(path))
        except AspenError:
            return False
        return is_unauthenticated(engine, rest)

    async def engine(self, mount: Mount) -> Engine:
        """The engine instance of ``mount`` (imported and initialized on first use)."""
        engine = self._engines.get(mount.uuid)
        if engine is not None:
            return engine
        try:
            cls = engine_class(mount.type)
        except InvalidArgumentError:
            raise
        except Exception as exc:
            log.exception("secrets engine %r cannot be loaded", mount.type)
            raise UnavailableError(
                f"the {mount.type!r} secrets engine mounted at {mount.path} is not available: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        engine = cls(ScopedStore(self._store, engine_prefix(mount.uuid)), mount)
        await engine.initialize()
        self._engines[mount.uuid] = engine
        return engine
