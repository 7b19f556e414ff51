"""Key management routes: ``keys``, ``keys/<name>`` (+ ``/config``, ``/rotate``,
``/trim``) and ``export/<type>/<name>(/<version>)``."""

from __future__ import annotations

from typing import Any

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen_secrets.engines.base import route
from aspen_secrets.engines.transit.export import export_key
from aspen_secrets.engines.transit.keys import KeyOptions, KeyPolicy
from aspen_secrets.engines.transit.keystore import KeyStore
from aspen_secrets.engines.transit.params import key_name
from aspen_secrets.fields import get_bool, get_duration, get_int, get_str
from aspen_secrets.logical import Operation, Request, Response

__all__ = ["KeyRoutes", "key_options"]

_NAME = r"keys/(?P<name>[^/]+)"


def _no_auto_rotation(data: dict[str, Any]) -> None:
    """Refuse a non-zero ``auto_rotate_period`` (no background rotation here)."""
    if get_duration(data, "auto_rotate_period", 0):
        raise InvalidArgumentError("auto_rotate_period is not supported by this transit engine")


def key_options(data: dict[str, Any], *, default_type: str = "aes256-gcm96") -> KeyOptions:
    """The creation options of a request (``type``, ``derived``, ``convergent_encryption``,
    ``exportable``, ``allow_plaintext_backup``, ``key_size``)."""
    _no_auto_rotation(data)
    options = KeyOptions(
        type=get_str(data, "type", default_type) or default_type,
        derived=get_bool(data, "derived"),
        convergent=get_bool(data, "convergent_encryption"),
        exportable=get_bool(data, "exportable"),
        allow_plaintext_backup=get_bool(data, "allow_plaintext_backup"),
        key_size=get_int(data, "key_size", 0, min=0) or 0,
    )
    options.validate()
    return options


def _optional_bool(data: dict[str, Any], name: str) -> bool | None:
    return get_bool(data, name) if data.get(name) is not None else None


class KeyRoutes:
    """Creating, reading, listing, configuring, rotating, trimming, deleting, exporting."""

    keystore: KeyStore

    @route(r"keys/?", Operation.LIST)
    async def list_keys(self, request: Request) -> dict[str, Any]:
        """Every key name (404 when there is none, as Vault answers an empty LIST)."""
        names = await self.keystore.names()
        if not names:
            raise NotFoundError("no transit keys")
        return {"keys": names}

    @route(_NAME, Operation.WRITE)
    async def create_key(self, request: Request, name: str) -> Response:
        """Create a key (a key that exists is left as it is, with a warning)."""
        handle, created = await self.keystore.create(key_name(name), key_options(request.data))
        warnings = () if created else (f"key {name} already existed",)
        return Response(data=handle.policy.info(), warnings=warnings)

    @route(_NAME, Operation.READ)
    async def read_key(self, request: Request, name: str) -> dict[str, Any]:
        """The key's policy and versions (public keys for asymmetric types)."""
        handle = await self.keystore.require(key_name(name), missing=NotFoundError)
        return handle.policy.info()

    @route(_NAME, Operation.DELETE)
    async def delete_key(self, request: Request, name: str) -> None:
        """Delete the key (only when its config allows deletion)."""
        await self.keystore.delete(key_name(name))

    @route(_NAME + "/config", Operation.WRITE)
    async def configure_key(self, request: Request, name: str) -> dict[str, Any]:
        """Change min versions, deletion_allowed, exportable, allow_plaintext_backup."""
        data = request.data
        _no_auto_rotation(data)
        min_decryption = get_int(data, "min_decryption_version", min=0)
        min_encryption = get_int(data, "min_encryption_version", min=0)
        deletion = _optional_bool(data, "deletion_allowed")
        exportable = _optional_bool(data, "exportable")
        backup = _optional_bool(data, "allow_plaintext_backup")

        def change(policy: KeyPolicy) -> KeyPolicy:
            return policy.configured(
                min_decryption_version=min_decryption,
                min_encryption_version=min_encryption,
                deletion_allowed=deletion,
                exportable=exportable,
                allow_plaintext_backup=backup,
            )

        return (await self.keystore.update(key_name(name), change)).info()

    @route(_NAME + "/rotate", Operation.WRITE)
    async def rotate_key(self, request: Request, name: str) -> dict[str, Any]:
        """Add a new latest version (its material is made before the commit)."""
        policy = await self.keystore.update(key_name(name), KeyPolicy.rotated, slow=True)
        return policy.info()

    @route(_NAME + "/trim", Operation.WRITE)
    async def trim_key(self, request: Request, name: str) -> dict[str, Any]:
        """Drop the versions below ``min_available_version`` for good."""
        minimum = get_int(request.data, "min_available_version", required=True, min=1)
        assert minimum is not None
        policy = await self.keystore.update(key_name(name), lambda p: p.trimmed(minimum))
        return policy.info()

    @route(r"export/(?P<export_type>[^/]+)/(?P<name>[^/]+)(?:/(?P<version>[^/]+))?", Operation.READ)
    async def export(
        self, request: Request, export_type: str, name: str, version: str | None
    ) -> dict[str, Any]:
        """Key material of every version, or of one (``latest`` or a number)."""
        handle = await self.keystore.require(key_name(name), missing=NotFoundError)
        return export_key(handle.policy, export_type, version)
