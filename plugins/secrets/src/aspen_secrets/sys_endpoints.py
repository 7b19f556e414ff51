"""Vault's ``sys/*`` endpoints this plugin serves, and ``auth/token/lookup-self``.

``sys/mounts`` (list; read, enable, disable one; read and tune one's ``…/tune``), the
``vault kv`` CLI's preflight (``sys/mounts-all/<path>``, ``sys/internal/ui/mounts/<path>``:
the mount serving a path),
``sys/rotate`` and ``sys/key-status`` (the keyring), ``sys/seal-status`` and
``sys/leader`` (both read without a token, as in Vault). ``sys/health`` is answered by
the HTTP layer itself (it needs no token and its status code carries the answer).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen_secrets import __version__, limits
from aspen_secrets.engines.base import Engine, Mount, route
from aspen_secrets.fields import get_map, get_str, parse_duration
from aspen_secrets.logical import Operation, Request

if TYPE_CHECKING:
    from aspen_secrets.service import SecretsService

__all__ = ["SYS_MOUNT", "SysEngine", "mount_view", "preflight_view", "rfc3339", "token_lookup"]

#: The pseudo-mount the system endpoints live at.
SYS_MOUNT = Mount("sys/", "system", "system", "system endpoints")
#: ``vault version``-style string reported by health and seal status.
VERSION = f"{__version__}+aspen"


def rfc3339(epoch: int | float) -> str:
    """A Unix time as Vault prints it (RFC 3339, UTC)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def mount_view(mount: Mount) -> dict[str, Any]:
    """A mount as Vault's ``sys/mounts`` shows it."""
    config = {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False}
    config.update(mount.config)
    return {
        "type": mount.type,
        "uuid": mount.uuid,
        "accessor": f"{mount.type}_{mount.uuid[:8]}",
        "description": mount.description,
        "options": dict(mount.options) or None,
        "config": config,
        "local": False,
        "seal_wrap": False,
        "external_entropy_access": False,
        "plugin_version": "",
        "running_plugin_version": f"v{__version__}+builtin.aspen",
        "running_sha256": "",
    }


def preflight_view(mount: Mount) -> dict[str, Any]:
    """A mount as Vault's ``sys/internal/ui/mounts/<path>`` shows it: the ``sys/mounts``
    view plus its ``path`` (with the trailing ``/``)."""
    return {**mount_view(mount), "path": mount.path}


def token_lookup() -> dict[str, Any]:
    """``auth/token/lookup-self`` for the root token (the only token there is)."""
    return {
        "accessor": "",
        "creation_time": 0,
        "creation_ttl": 0,
        "display_name": "root",
        "entity_id": "",
        "expire_time": None,
        "explicit_max_ttl": 0,
        "id": "",
        "meta": None,
        "num_uses": 0,
        "orphan": True,
        "path": "auth/token/root",
        "policies": ["root"],
        "renewable": False,
        "ttl": 0,
        "type": "service",
    }


class SysEngine(Engine):
    """The system endpoints, routed like an engine's paths (relative to ``sys/``)."""

    type_name = "system"
    #: Read without a token, as Vault serves them.
    unauthenticated_paths: ClassVar[tuple[str, ...]] = ("seal-status", "leader")

    def __init__(self, service: SecretsService) -> None:
        super().__init__(service.store, SYS_MOUNT)
        self.service = service

    # ------------------------------------------------------------------ mounts
    @route(r"mounts", Operation.READ)
    async def list_mounts(self, request: Request) -> dict[str, Any]:
        """Every mount, by path."""
        mounts = await self.service.router.table.read()
        return {path: mount_view(m) for path, m in sorted(mounts.items())}

    # the tune routes come first: ``mounts/(?P<path>.+)`` would match them too
    @route(r"mounts/(?P<path>.+)/tune", Operation.READ)
    async def read_tune(self, request: Request, path: str) -> dict[str, Any]:
        """A mount's tunables, with the system defaults filled in (as Vault shows them)."""
        mount = await self._mount(path)
        config = mount.config
        system = limits.SECRETS_SYSTEM_LEASE_TTL_SECONDS
        return {
            "description": mount.description,
            "default_lease_ttl": config.get("default_lease_ttl") or system,
            "max_lease_ttl": config.get("max_lease_ttl") or system,
            "force_no_cache": bool(config.get("force_no_cache", False)),
            "options": dict(mount.options) or None,
        }

    @route(r"mounts/(?P<path>.+)/tune", Operation.WRITE)
    async def tune(self, request: Request, path: str) -> None:
        """Change a mount's ``default_lease_ttl``, ``max_lease_ttl`` or ``description``."""
        mount = await self._mount(path)
        data = request.data
        await self.service.router.table.tune(
            mount.path,
            description=get_str(data, "description", max_len=1024),
            config=_ttl_config(data),
        )

    @route(r"mounts/(?P<path>.+)", Operation.READ)
    async def read_mount(self, request: Request, path: str) -> dict[str, Any]:
        """One mount."""
        return mount_view(await self._mount(path))

    @route(r"mounts-all/(?P<path>.+)", Operation.READ)
    async def mount_of_path(self, request: Request, path: str) -> dict[str, Any]:
        """The mount serving ``path`` (the ``vault kv`` CLI's preflight, which learns the
        KV version from ``options.version`` and the mount from ``path``)."""
        return preflight_view(await self._mount_serving(path))

    @route(r"internal/ui/mounts/(?P<path>.+)", Operation.READ)
    async def ui_mount_of_path(self, request: Request, path: str) -> dict[str, Any]:
        """The same preflight, at the path older ``vault`` CLIs ask."""
        return preflight_view(await self._mount_serving(path))

    async def _mount_serving(self, path: str) -> Mount:
        """The mount whose path is the longest prefix of ``path``."""
        mounts = await self.service.router.table.read()
        key = path.strip("/") + "/"
        best = max((p for p in mounts if key.startswith(p)), key=len, default=None)
        if best is None:
            raise NotFoundError(f"no secrets engine is mounted at or above {key}")
        return mounts[best]

    async def _mount(self, path: str) -> Mount:
        mounts = await self.service.router.table.read()
        key = path.strip("/") + "/"
        if key not in mounts:
            raise NotFoundError(f"no secrets engine is mounted at {key}")
        return mounts[key]

    @route(r"mounts/(?P<path>.+)", Operation.WRITE)
    async def enable_mount(self, request: Request, path: str) -> None:
        """Mount an engine: ``{"type", "description", "options", "config"}``."""
        data = request.data
        options = get_map(data, "options", {}) or {}
        await self.service.router.table.mount(
            path,
            get_str(data, "type", required=True, max_len=64),  # type: ignore[arg-type]
            description=get_str(data, "description", "", max_len=1024) or "",
            options={str(k): str(v) for k, v in options.items() if v is not None},
            config=_mount_config(get_map(data, "config", {}) or {}),
        )

    @route(r"mounts/(?P<path>.+)", Operation.DELETE)
    async def disable_mount(self, request: Request, path: str) -> None:
        """Unmount an engine and delete its state."""
        await self.service.router.table.unmount(path)

    # ------------------------------------------------------------------ keyring
    @route(r"rotate", Operation.WRITE)
    async def rotate(self, request: Request) -> None:
        """Add a new data-encryption key to the keyring."""
        await self.service.keyring.rotate()

    @route(r"key-status", Operation.READ)
    async def key_status(self, request: Request) -> dict[str, Any]:
        """The keyring's current term and when it was installed."""
        keyring = await self.service.keyring.reload()
        term = keyring.term
        return {
            "term": term,
            "install_time": rfc3339(keyring.installed.get(term, 0)),
            "encryptions": 0,
        }

    # ------------------------------------------------------------------ status
    @route(r"seal-status", Operation.READ)
    async def seal_status(self, request: Request) -> dict[str, Any]:
        """Vault's seal status (sealed when the keyring cannot be opened)."""
        return self.service.seal_status()

    @route(r"leader", Operation.READ)
    async def leader(self, request: Request) -> dict[str, Any]:
        """Whether this node leads, and the leader's secrets HTTP address if known."""
        return await self.service.leader_info()


_TTL_FIELDS = ("default_lease_ttl", "max_lease_ttl")


def _ttl_config(raw: dict[str, Any]) -> dict[str, int]:
    """The lease TTLs given in ``raw``, in seconds (``"system"`` or ``0``: the default)."""
    config = {}
    for name in _TTL_FIELDS:
        value = raw.get(name)
        if value is None or value == "":
            continue
        seconds = 0 if value == "system" else parse_duration(value, name)
        if seconds > limits.SECRETS_MAX_MOUNT_TTL_SECONDS:
            raise InvalidArgumentError(
                f"{name} is over SECRETS_MAX_MOUNT_TTL_SECONDS "
                f"({limits.SECRETS_MAX_MOUNT_TTL_SECONDS} seconds)"
            )
        config[name] = seconds
    return config


def _mount_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The mount config fields kept: the lease TTLs in seconds, the other tunables as given."""
    keep = ("force_no_cache", "audit_non_hmac_request_keys")
    return {**{k: raw[k] for k in keep if raw.get(k) is not None}, **_ttl_config(raw)}
