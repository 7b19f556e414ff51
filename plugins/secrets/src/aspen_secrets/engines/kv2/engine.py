"""The KV version 2 secrets engine (Vault's ``kv-v2`` HTTP API, paths relative to the mount).

``config`` (read/write), ``data/<path>`` (read/write/patch/delete), ``delete/<path>``,
``undelete/<path>``, ``destroy/<path>`` (write ``versions``), ``metadata/<path>``
(read/write/patch/delete/list) and ``subkeys/<path>`` (read). Storage layout, effective
settings and what responses show: :mod:`aspen_secrets.engines.kv2.model`.

Every change is one commit that expects the revision of the metadata entry it read
(:func:`~aspen_secrets.store.modify` retries on a race), so concurrent writers never
lose or duplicate a version; timestamps are taken inside ``compute``, before the commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aspen.errors import CompareFailedError, InvalidArgumentError, NotFoundError
from aspen_secrets.engines.base import Engine, Mount, route
from aspen_secrets.engines.kv2.jsondoc import merge_patch, subkeys
from aspen_secrets.engines.kv2.model import (
    Config,
    SecretMeta,
    VersionInfo,
    meta_key,
    version_key,
)
from aspen_secrets.engines.kv2.params import (
    check_custom_metadata,
    check_data,
    read_cas,
    read_custom_metadata,
    read_data,
    read_max_versions,
    read_signed_duration,
    read_versions,
    secret_path,
)
from aspen_secrets.fields import get_bool, get_int
from aspen_secrets.logical import Operation, Request, Response
from aspen_secrets.store import ABSENT, Store, Write, modify, truncation_warnings

__all__ = ["KvV2Engine"]

_CONFIG_KEY = "config"
_META_PREFIX = meta_key("")
_SECRET = r"(?P<path>.+)"
_CAS_WARNING = (
    '"cas_required" set to false, but is mandated by backend config. This value will be ignored.'
)

#: Changes one version in place; returns whether it changed anything.
VersionChange = Callable[[SecretMeta, Config, VersionInfo, int], bool]


def _soft_delete(meta: SecretMeta, config: Config, info: VersionInfo, now: int) -> bool:
    if not info.is_readable(now):
        return False
    info.deletion_time = now
    return True


def _undelete(meta: SecretMeta, config: Config, info: VersionInfo, now: int) -> bool:
    if info.destroyed:
        return False
    info.deletion_time = meta.deletion_time_from(now, config)
    return True


def _destroy(meta: SecretMeta, config: Config, info: VersionInfo, now: int) -> bool:
    if info.destroyed:
        return False
    info.destroyed = True
    return True


def _check_cas(meta: SecretMeta, config: Config, cas: int | None) -> None:
    """Vault's check-and-set rule (``cas`` 0 = the secret must have no version yet)."""
    if cas is not None:
        if cas != meta.current_version:
            raise CompareFailedError("check-and-set parameter did not match the current version")
    elif meta.cas_required_by(config):
        raise InvalidArgumentError("check-and-set parameter required for this call")


def _optional_bool(body: dict[str, Any], name: str) -> bool | None:
    return None if body.get(name) is None else get_bool(body, name)


class KvV2Engine(Engine):
    """Versioned key/value secrets, compatible with Vault's KV v2 engine.

    ``clock`` (nanoseconds since the epoch) is read once per request, inside the
    read→compute step; tests pass their own to move time.
    """

    type_name = "kv"

    def __init__(
        self, store: Store, mount: Mount, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__(store, mount)
        self.clock = clock

    # --- storage -------------------------------------------------------------------

    async def _config(self) -> tuple[Config, int]:
        entry = await self.store.get(_CONFIG_KEY)
        if entry is None:
            return Config(), ABSENT
        return Config.from_value(entry.value), entry.revision

    async def _meta(self, path: str) -> tuple[SecretMeta | None, int]:
        entry = await self.store.get(meta_key(path))
        if entry is None:
            return None, ABSENT
        return SecretMeta.from_value(entry.value), entry.revision

    async def _existing_meta(self, path: str) -> tuple[SecretMeta, int]:
        meta, revision = await self._meta(path)
        if meta is None:
            raise NotFoundError(f"no secret at {self.mount.path}{path}")
        return meta, revision

    @staticmethod
    def _save(path: str, meta: SecretMeta, revision: int) -> Write:
        return Write(meta_key(path), meta.to_value(), expect_revision=revision)

    def _new_version(
        self,
        path: str,
        meta: SecretMeta,
        revision: int,
        config: Config,
        data: dict[str, Any],
        now: int,
    ) -> tuple[list[Write], dict[str, Any]]:
        """The writes adding ``data`` as the next version (pruning the oldest ones)."""
        number, dropped = meta.add_version(now, config)
        writes = [Write(version_key(path, number), data), self._save(path, meta, revision)]
        writes += [Write(version_key(path, old), delete=True) for old in dropped]
        return writes, meta.version_json(number)

    async def _read_version(
        self, path: str, request: Request
    ) -> tuple[SecretMeta, int, dict[str, Any] | None]:
        """The secret's metadata, the version asked for (``version``, else the latest) and
        its data (``None`` when deleted or destroyed); ``NotFoundError`` if there is none."""
        meta, _ = await self._existing_meta(secret_path(path))
        asked = get_int(request.data, "version", 0) or 0
        number = asked if asked > 0 else meta.current_version
        info = meta.versions.get(number)
        if info is None:
            raise NotFoundError(f"no version {number} of {self.mount.path}{path}")
        if not info.is_readable(self.clock()):
            return meta, number, None
        entry = await self.store.get(version_key(path, number))
        if entry is None:  # destroyed or pruned since the metadata was read
            raise NotFoundError(f"version {number} of {self.mount.path}{path} is gone")
        return meta, number, entry.value

    # --- config --------------------------------------------------------------------

    @route("config", Operation.READ)
    async def read_config(self, request: Request) -> dict[str, Any]:
        """The mount's settings as stored (0 / ``"0s"`` when unset)."""
        config, _ = await self._config()
        return config.to_json()

    @route("config", Operation.WRITE)
    async def write_config(self, request: Request) -> None:
        """Set ``max_versions``, ``cas_required`` and ``delete_version_after`` (negative
        disables automatic deletion for the whole mount)."""
        body = request.data
        max_versions = read_max_versions(body)
        cas_required = _optional_bool(body, "cas_required")
        delete_after = read_signed_duration(body, "delete_version_after", signed=True)
        if max_versions is None and cas_required is None and delete_after is None:
            return None

        async def compute() -> tuple[list[Write], None]:
            config, revision = await self._config()
            if max_versions is not None:
                config.max_versions = max_versions
            if cas_required is not None:
                config.cas_required = cas_required
            if delete_after is not None:
                config.delete_version_after = max(delete_after, -1)
            return [Write(_CONFIG_KEY, config.to_value(), expect_revision=revision)], None

        return await modify(self.store, compute)

    # --- data ----------------------------------------------------------------------

    @route(f"data/{_SECRET}", Operation.READ)
    async def read_data(self, request: Request, path: str) -> Response | dict[str, Any]:
        """A version's data and metadata; a deleted or destroyed one answers 404 with
        ``{"data": null, "metadata": {...}}`` as Vault does."""
        meta, number, data = await self._read_version(path, request)
        body = {"data": data, "metadata": meta.version_json(number)}
        return body if data is not None else Response(data=body, status=404)

    @route(f"data/{_SECRET}", Operation.WRITE)
    async def write_data(self, request: Request, path: str) -> dict[str, Any]:
        """Add a version (``options.cas``: 0 = only if the secret has no version)."""
        path = secret_path(path)
        data = read_data(request.data)
        cas = read_cas(request.data)

        async def compute() -> tuple[list[Write], dict[str, Any]]:
            config, _ = await self._config()
            meta, revision = await self._meta(path)
            now = self.clock()
            meta = meta or SecretMeta(created_time=now, updated_time=now)
            _check_cas(meta, config, cas)
            return self._new_version(path, meta, revision, config, data, now)

        return await modify(self.store, compute)

    @route(f"data/{_SECRET}", Operation.PATCH)
    async def patch_data(self, request: Request, path: str) -> Response | dict[str, Any]:
        """Add a version that is the latest one with ``data`` merged in (RFC 7396)."""
        path = secret_path(path)
        patch = read_data(request.data)
        cas = read_cas(request.data)

        async def compute() -> tuple[list[Write], Response | dict[str, Any]]:
            config, _ = await self._config()
            meta, revision = await self._existing_meta(path)
            _check_cas(meta, config, cas)
            number = meta.current_version
            info = meta.versions.get(number)
            if info is None:
                raise NotFoundError(f"no version of {self.mount.path}{path}")
            now = self.clock()
            if not info.is_readable(now):
                return [], Response(data=meta.version_json(number), status=404)
            entry = await self.store.get(version_key(path, number))
            if entry is None:  # the next commit would fail anyway: the metadata moved on
                raise NotFoundError(f"version {number} of {self.mount.path}{path} is gone")
            merged = check_data(merge_patch(entry.value, patch))
            return self._new_version(path, meta, revision, config, merged, now)

        return await modify(self.store, compute)

    @route(f"data/{_SECRET}", Operation.DELETE)
    async def delete_latest(self, request: Request, path: str) -> None:
        """Soft-delete the latest version (nothing happens if it is already gone)."""
        path = secret_path(path)

        async def compute() -> tuple[list[Write], None]:
            config, _ = await self._config()
            meta, revision = await self._meta(path)
            info = meta.versions.get(meta.current_version) if meta else None
            if meta is None or info is None or not _soft_delete(meta, config, info, self.clock()):
                return [], None
            return [self._save(path, meta, revision)], None

        return await modify(self.store, compute)

    # --- versions ------------------------------------------------------------------

    async def _change_versions(
        self, request: Request, path: str, change: VersionChange, *, drop_data: bool = False
    ) -> None:
        """Apply ``change`` to each listed version that exists (unknown ones are skipped,
        as Vault does); with ``drop_data`` the changed versions' data is deleted too."""
        path = secret_path(path)
        numbers = read_versions(request.data)

        async def compute() -> tuple[list[Write], None]:
            config, _ = await self._config()
            meta, revision = await self._meta(path)
            if meta is None:
                return [], None
            now = self.clock()
            changed = [
                n
                for n in numbers
                if n in meta.versions and change(meta, config, meta.versions[n], now)
            ]
            if not changed:
                return [], None
            writes = [self._save(path, meta, revision)]
            if drop_data:
                writes += [Write(version_key(path, n), delete=True) for n in changed]
            return writes, None

        return await modify(self.store, compute)

    @route(f"delete/{_SECRET}", Operation.WRITE)
    async def delete_versions(self, request: Request, path: str) -> None:
        """Soft-delete the listed ``versions``."""
        return await self._change_versions(request, path, _soft_delete)

    @route(f"undelete/{_SECRET}", Operation.WRITE)
    async def undelete_versions(self, request: Request, path: str) -> None:
        """Restore the listed soft-deleted ``versions`` (destroyed ones stay destroyed)."""
        return await self._change_versions(request, path, _undelete)

    @route(f"destroy/{_SECRET}", Operation.WRITE)
    async def destroy_versions(self, request: Request, path: str) -> None:
        """Delete the data of the listed ``versions`` for good (``destroyed: true``)."""
        return await self._change_versions(request, path, _destroy, drop_data=True)

    # --- metadata ------------------------------------------------------------------

    @route(r"metadata(?:/(?P<path>.*))?", Operation.LIST)
    async def list_secrets(self, request: Request, path: str | None = None) -> Response:
        """The secrets and folders (ending in ``/``) directly under ``path`` (with a warning
        when the scan stopped at ``SECRETS_MAX_LIST_KEYS``)."""
        folder = (path or "").strip("/")
        prefix = secret_path(folder) + "/" if folder else ""
        keys, truncated = await self.store.children(_META_PREFIX + prefix)
        if not keys:
            raise NotFoundError(f"nothing under {self.mount.path}metadata/{prefix}")
        return Response({"keys": keys}, warnings=truncation_warnings(keys, truncated=truncated))

    @route(f"metadata/{_SECRET}", Operation.READ)
    async def read_metadata(self, request: Request, path: str) -> dict[str, Any]:
        """The secret's settings, custom metadata and the state of every kept version."""
        meta, _ = await self._existing_meta(secret_path(path))
        return meta.to_json()

    async def _update_metadata(self, request: Request, path: str, *, patch: bool) -> Response:
        """Metadata write (creates the secret's metadata if missing) or patch (needs it;
        ``custom_metadata`` is merge-patched, ``null`` removes a key)."""
        path = secret_path(path)
        body = request.data
        max_versions = read_max_versions(body)
        cas_required = _optional_bool(body, "cas_required")
        delete_after = read_signed_duration(body, "delete_version_after", signed=False)
        custom = read_custom_metadata(body, allow_null=patch)
        if all(v is None for v in (max_versions, cas_required, delete_after, custom)):
            if patch:
                await self._existing_meta(path)
            return Response()

        async def compute() -> tuple[list[Write], Response]:
            config, _ = await self._config()
            if patch:
                meta, revision = await self._existing_meta(path)
            else:
                found, revision = await self._meta(path)
                now = self.clock()
                meta = found or SecretMeta(created_time=now, updated_time=now)
            if max_versions is not None:
                meta.max_versions = max_versions
            if cas_required is not None:
                meta.cas_required = cas_required
            if delete_after is not None:
                meta.delete_version_after = delete_after
            if custom is not None:
                merged = merge_patch(meta.custom_metadata or {}, custom) if patch else custom
                meta.custom_metadata = check_custom_metadata(merged)
            warn = cas_required is False and config.cas_required
            return [self._save(path, meta, revision)], Response(
                warnings=(_CAS_WARNING,) if warn else ()
            )

        return await modify(self.store, compute)

    @route(f"metadata/{_SECRET}", Operation.WRITE)
    async def write_metadata(self, request: Request, path: str) -> Response:
        """Set ``max_versions``, ``cas_required``, ``delete_version_after`` and
        ``custom_metadata`` (replaced as a whole) without adding a version."""
        return await self._update_metadata(request, path, patch=False)

    @route(f"metadata/{_SECRET}", Operation.PATCH)
    async def patch_metadata(self, request: Request, path: str) -> Response:
        """Change some of an existing secret's settings; ``custom_metadata`` merges."""
        return await self._update_metadata(request, path, patch=True)

    @route(f"metadata/{_SECRET}", Operation.DELETE)
    async def delete_metadata(self, request: Request, path: str) -> None:
        """Delete the secret: its metadata and the data of every version."""
        path = secret_path(path)

        async def compute() -> tuple[list[Write], None]:
            meta, revision = await self._meta(path)
            if meta is None:
                return [], None
            writes = [Write(meta_key(path), delete=True, expect_revision=revision)]
            writes += [
                Write(version_key(path, n), delete=True)
                for n, info in meta.versions.items()
                if not info.destroyed
            ]
            return writes, None

        return await modify(self.store, compute)

    # --- subkeys -------------------------------------------------------------------

    @route(f"subkeys/{_SECRET}", Operation.READ)
    async def read_subkeys(self, request: Request, path: str) -> Response | dict[str, Any]:
        """The key structure of a version with every leaf ``null`` (``depth``: 0 = all)."""
        depth = get_int(request.data, "depth", 0, min=0) or 0
        meta, number, data = await self._read_version(path, request)
        body = {
            "subkeys": None if data is None else subkeys(data, depth),
            "metadata": meta.version_json(number),
        }
        return body if data is not None else Response(data=body, status=404)
