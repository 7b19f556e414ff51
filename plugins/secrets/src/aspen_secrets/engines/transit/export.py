"""``export/<type>/<name>(/<version>)``: key material as Vault exports it."""

from __future__ import annotations

import base64
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets.engines.transit import material
from aspen_secrets.engines.transit.keys import KeyPolicy, KeyVersion
from aspen_secrets.engines.transit.keytypes import KeyType

__all__ = ["EXPORT_TYPES", "export_key"]

#: What can be exported (``public-key`` needs no ``exportable``).
EXPORT_TYPES = ("encryption-key", "signing-key", "hmac-key", "public-key")


def _check(policy: KeyPolicy, export_type: str) -> None:
    kind = policy.kind
    if export_type not in EXPORT_TYPES:
        raise InvalidArgumentError(
            f"invalid export type {export_type!r}; valid: {', '.join(EXPORT_TYPES)}"
        )
    if export_type != "public-key" and not policy.exportable:
        raise InvalidArgumentError("private key material is not exportable")
    supported = {
        "encryption-key": kind.encryption,
        "signing-key": kind.signing,
        "hmac-key": True,
        "public-key": kind.asymmetric and not policy.derived,
    }[export_type]
    if not supported:
        raise InvalidArgumentError(
            f"{export_type} export is not supported for key type {kind.name}"
        )


def _versions(policy: KeyPolicy, version: str | None) -> dict[int, KeyVersion]:
    if version is None:
        return dict(policy.versions)
    if version == "latest":
        number = policy.latest_version
    elif version.isdigit():
        number = int(version)
    else:
        raise InvalidArgumentError(f"invalid version {version!r}: a number or 'latest'")
    if number < policy.min_decryption_version or number not in policy.versions:
        raise InvalidArgumentError(
            f"version {number} is not available for export (min decryption version "
            f"{policy.min_decryption_version}, latest {policy.latest_version})"
        )
    return {number: policy.versions[number]}


def _render(export_type: str, kind: KeyType, version: KeyVersion) -> str:
    if export_type == "hmac-key":
        return base64.b64encode(version.hmac_key).decode()
    if export_type == "public-key":
        return material.public_text(kind, material.load_private(kind, version.key))
    return material.private_text(kind, version.key)


def export_key(policy: KeyPolicy, export_type: str, version: str | None) -> dict[str, Any]:
    """Vault's export answer: ``{"name", "type", "keys": {version: text}}``."""
    _check(policy, export_type)
    kind = policy.kind
    keys = {
        str(number): _render(export_type, kind, ver)
        for number, ver in sorted(_versions(policy, version).items())
    }
    return {"name": policy.name, "type": policy.type, "keys": keys}
