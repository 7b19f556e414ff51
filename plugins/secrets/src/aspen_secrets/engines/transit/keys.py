"""A transit key's policy: its options and every version's material, as one stored map.

A :class:`KeyPolicy` is immutable; creating, rotating, configuring and trimming return a
new one (material is generated here, in the engine's compute step, before the commit).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aspen.errors import InvalidArgumentError, ResourceExhaustedError
from aspen_secrets import limits
from aspen_secrets.engines.transit import material
from aspen_secrets.engines.transit.keytypes import Family, KeyType, key_type

__all__ = ["CONVERGENT_VERSION", "KeyOptions", "KeyPolicy", "KeyVersion", "TooOldError"]

#: The convergent encryption scheme of new keys (a deterministic nonce, as Vault's v3).
CONVERGENT_VERSION = 3
#: Length of the HMAC key every version carries (for ``hmac/`` on any key type).
_HMAC_KEY_BYTES = 32


class TooOldError(InvalidArgumentError):
    """A ciphertext, signature or HMAC made with a version the policy no longer accepts."""


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version: its key material, its HMAC key, and when it was made (Unix seconds)."""

    key: bytes
    hmac_key: bytes
    created: float

    @classmethod
    def generate(cls, kind: KeyType, key_size: int) -> KeyVersion:
        """A new version with fresh material."""
        key = material.generate(kind, key_size)
        hmac_key = key if kind.family is Family.HMAC else os.urandom(_HMAC_KEY_BYTES)
        return cls(key, hmac_key, time.time())


@dataclass(frozen=True, slots=True)
class KeyOptions:
    """What is fixed when a key is created."""

    type: str = "aes256-gcm96"
    derived: bool = False
    convergent: bool = False
    exportable: bool = False
    allow_plaintext_backup: bool = False
    key_size: int = 0

    def validate(self) -> KeyType:
        """Check the combination (Vault's rules); the key type."""
        kind = key_type(self.type)
        if self.derived and not kind.derivation:
            raise InvalidArgumentError(
                f"key derivation is not supported for keys of type {kind.name}"
            )
        if self.convergent and not self.derived:
            raise InvalidArgumentError("convergent encryption requires derivation to be enabled")
        if self.convergent and not kind.convergent:
            raise InvalidArgumentError(
                f"convergent encryption is not supported for keys of type {kind.name}"
            )
        if self.key_size and kind.family is not Family.HMAC:
            raise InvalidArgumentError(f"key_size is not valid for keys of type {kind.name}")
        low, high = limits.TRANSIT_HMAC_MIN_KEY_BYTES, limits.TRANSIT_HMAC_MAX_KEY_BYTES
        if self.key_size and not low <= self.key_size <= high:
            raise InvalidArgumentError(f"key_size must be between {low} and {high} bytes")
        return kind


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """A named key with every live version (``versions`` maps version → material)."""

    name: str
    type: str
    versions: dict[int, KeyVersion]
    latest_version: int
    min_decryption_version: int = 1
    min_encryption_version: int = 0
    min_available_version: int = 0
    deletion_allowed: bool = False
    exportable: bool = False
    allow_plaintext_backup: bool = False
    derived: bool = False
    convergent: bool = False
    key_size: int = 0

    # --- making and changing ----------------------------------------------------------

    @classmethod
    def create(cls, name: str, options: KeyOptions) -> KeyPolicy:
        """A new key at version 1 (generates material: call before the commit)."""
        kind = options.validate()
        size = options.key_size or (kind.size if kind.family is Family.HMAC else 0)
        return cls(
            name=name,
            type=kind.name,
            versions={1: KeyVersion.generate(kind, size)},
            latest_version=1,
            exportable=options.exportable,
            allow_plaintext_backup=options.allow_plaintext_backup,
            derived=options.derived,
            convergent=options.convergent,
            key_size=size,
        )

    def rotated(self) -> KeyPolicy:
        """This key with a new latest version (generates material)."""
        if len(self.versions) >= limits.TRANSIT_MAX_KEY_VERSIONS:
            raise ResourceExhaustedError(
                f"key {self.name!r} has {len(self.versions)} versions, the most allowed; "
                "raise min_decryption_version and trim old versions first"
            )
        latest = self.latest_version + 1
        versions = {**self.versions, latest: KeyVersion.generate(self.kind, self.key_size)}
        return dataclasses.replace(self, versions=versions, latest_version=latest)

    def configured(
        self,
        *,
        min_decryption_version: int | None = None,
        min_encryption_version: int | None = None,
        deletion_allowed: bool | None = None,
        exportable: bool | None = None,
        allow_plaintext_backup: bool | None = None,
    ) -> KeyPolicy:
        """This key with new settings, checked against its versions (Vault's rules)."""
        changes: dict[str, Any] = {}
        if min_decryption_version is not None:
            wanted = max(min_decryption_version, 1)
            if wanted > self.latest_version:
                raise InvalidArgumentError(
                    f"cannot set min decryption version of {wanted}, "
                    f"latest key version is {self.latest_version}"
                )
            if wanted < self.min_available_version:
                raise InvalidArgumentError(
                    f"cannot set min decryption version of {wanted} below the min available "
                    f"version {self.min_available_version} (older versions were trimmed)"
                )
            changes["min_decryption_version"] = wanted
        if min_encryption_version is not None:
            if min_encryption_version > self.latest_version:
                raise InvalidArgumentError(
                    f"cannot set min encryption version of {min_encryption_version}, "
                    f"latest key version is {self.latest_version}"
                )
            changes["min_encryption_version"] = min_encryption_version
        for name, value in (
            ("exportable", exportable),
            ("allow_plaintext_backup", allow_plaintext_backup),
        ):
            if value is not None:
                if getattr(self, name) and not value:
                    raise InvalidArgumentError(f"{name} cannot be disabled once enabled")
                changes[name] = value
        if deletion_allowed is not None:
            changes["deletion_allowed"] = deletion_allowed
        result = dataclasses.replace(self, **changes)
        if 0 < result.min_encryption_version < result.min_decryption_version:
            raise InvalidArgumentError(
                f"cannot set min encryption/decryption values; min encryption version of "
                f"{result.min_encryption_version} must be greater than or equal to min "
                f"decryption version of {result.min_decryption_version}"
            )
        return result

    def trimmed(self, min_available_version: int) -> KeyPolicy:
        """This key without the versions below ``min_available_version``."""
        if min_available_version < 1:
            raise InvalidArgumentError("min_available_version must be at least 1")
        if min_available_version < self.min_available_version:
            raise InvalidArgumentError("min_available_version cannot be decreased")
        if min_available_version > self.min_decryption_version:
            raise InvalidArgumentError(
                f"cannot set min available version of {min_available_version}, "
                f"min decryption version is {self.min_decryption_version}"
            )
        if 0 < self.min_encryption_version < min_available_version:
            raise InvalidArgumentError(
                f"cannot set min available version of {min_available_version}, "
                f"min encryption version is {self.min_encryption_version}"
            )
        versions = {v: k for v, k in self.versions.items() if v >= min_available_version}
        return dataclasses.replace(
            self, versions=versions, min_available_version=min_available_version
        )

    # --- using ------------------------------------------------------------------------

    @property
    def kind(self) -> KeyType:
        """The key type."""
        return key_type(self.type)

    def encryption_version(self, requested: int | None) -> int:
        """The version to encrypt or sign with: ``requested`` (0/None = latest), checked."""
        if not requested:
            return self.latest_version
        if requested > self.latest_version:
            raise InvalidArgumentError(
                f"key_version {requested} is greater than the latest version {self.latest_version}"
            )
        if requested < self.min_encryption_version or requested not in self.versions:
            raise InvalidArgumentError(
                f"key_version {requested} is below the minimum encryption version "
                f"{max(self.min_encryption_version, self.min_available_version)}"
            )
        return requested

    def decryption_version(self, version: int) -> KeyVersion:
        """The material of ``version`` for decrypting or verifying, if the policy allows."""
        if version < 1 or version > self.latest_version:
            raise InvalidArgumentError(f"invalid key version {version}")
        if version < self.min_decryption_version or version not in self.versions:
            raise TooOldError(
                "ciphertext or signature version is disallowed by policy (too old): "
                f"version {version}, min decryption version {self.min_decryption_version}"
            )
        return self.versions[version]

    # --- showing and storing ----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The key as Vault's ``READ keys/<name>`` shows it."""
        kind = self.kind
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "keys": {str(v): self._version_info(kind, k) for v, k in self.versions.items()},
            "latest_version": self.latest_version,
            "min_available_version": self.min_available_version,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "deletion_allowed": self.deletion_allowed,
            "exportable": self.exportable,
            "allow_plaintext_backup": self.allow_plaintext_backup,
            "derived": self.derived,
            "supports_encryption": kind.encryption,
            "supports_decryption": kind.encryption,
            "supports_derivation": kind.derivation,
            "supports_signing": kind.signing,
            "imported_key": False,
            "auto_rotate_period": 0,
        }
        if self.derived:
            data["kdf"] = "hkdf_sha256"
            data["convergent_encryption"] = self.convergent
            if self.convergent:
                data["convergent_encryption_version"] = CONVERGENT_VERSION
        if kind.family is Family.HMAC:
            data["key_size"] = self.key_size
        return data

    def _version_info(self, kind: KeyType, version: KeyVersion) -> Any:
        if not kind.asymmetric:
            return int(version.created)
        created = datetime.fromtimestamp(version.created, UTC)
        info: dict[str, Any] = {
            "creation_time": created.isoformat().replace("+00:00", "Z"),
            "name": kind.curve or kind.name,
        }
        if not self.derived:
            info["public_key"] = material.public_text(
                kind, material.load_private(kind, version.key)
            )
        return info

    def to_value(self) -> dict[str, Any]:
        """The stored map (msgpack-able; version numbers as string keys)."""
        value = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        value["versions"] = {
            str(v): {"key": k.key, "hmac_key": k.hmac_key, "created": k.created}
            for v, k in self.versions.items()
        }
        return value

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> KeyPolicy:
        """The policy stored as ``value`` (see :meth:`to_value`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in value.items() if k in names}
        fields["versions"] = {
            int(v): KeyVersion(k["key"], k["hmac_key"], k["created"])
            for v, k in value["versions"].items()
        }
        return cls(**fields)
