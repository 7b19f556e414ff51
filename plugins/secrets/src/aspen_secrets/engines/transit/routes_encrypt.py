"""Encryption routes: ``encrypt``, ``decrypt``, ``rewrap`` and ``datakey``."""

from __future__ import annotations

import base64
import os
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.base import route
from aspen_secrets.engines.transit import params
from aspen_secrets.engines.transit.batch import batch_items, run
from aspen_secrets.engines.transit.crypto import KeyHandle
from aspen_secrets.engines.transit.keys import KeyOptions
from aspen_secrets.engines.transit.keystore import KeyStore
from aspen_secrets.engines.transit.keytypes import key_type
from aspen_secrets.fields import get_bool, get_int, get_str
from aspen_secrets.logical import Operation, Request, Response

__all__ = ["EncryptionRoutes"]

_DATAKEY_BITS = (128, 256, 512)
#: Longest ``vault:vN:…`` text accepted (base64 of the largest input plus overhead).
_MAX_CIPHERTEXT_CHARS = limits.TRANSIT_MAX_INPUT_BYTES * 2


def _no_nonce(item: dict[str, Any]) -> None:
    if params.optional_b64(item, "nonce"):
        raise InvalidArgumentError(
            "provided nonce not allowed for this key (convergent keys derive their nonce)"
        )


def _encrypt(handle: KeyHandle, item: dict[str, Any], plaintext: bytes) -> tuple[str, int]:
    _no_nonce(item)
    return handle.encrypt(
        plaintext,
        context=params.context(item),
        associated_data=params.optional_b64(item, "associated_data"),
        key_version=params.key_version(item),
    )


def _decrypt(handle: KeyHandle, item: dict[str, Any]) -> bytes:
    text = get_str(item, "ciphertext", required=True, max_len=_MAX_CIPHERTEXT_CHARS)
    plaintext, _ = handle.decrypt(
        text,
        context=params.context(item),
        associated_data=params.optional_b64(item, "associated_data"),
    )
    return plaintext


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class EncryptionRoutes:
    """Symmetric (and RSA-OAEP) encryption with named keys."""

    keystore: KeyStore

    async def _encryption_key(self, name: str, data: dict[str, Any]) -> KeyHandle:
        """The key, created on first use as Vault does (``type``, derived when a context
        is given, ``convergent_encryption``)."""
        handle = await self.keystore.load(params.key_name(name))
        if handle is not None:
            return handle
        type_name = get_str(data, "type", "aes256-gcm96") or "aes256-gcm96"
        if not key_type(type_name).encryption:
            raise InvalidArgumentError(f"key type {type_name} does not support encryption")
        items = batch_items(data) or [data]
        derived = any(isinstance(i, dict) and params.context(i) for i in items)
        options = KeyOptions(
            type=type_name,
            derived=derived,
            convergent=get_bool(data, "convergent_encryption"),
        )
        handle, _ = await self.keystore.create(name, options)
        return handle

    @route(r"encrypt/(?P<name>[^/]+)", Operation.WRITE)
    async def encrypt(self, request: Request, name: str) -> Response:
        """Encrypt ``plaintext`` (base64) or every ``batch_input`` item."""
        handle = await self._encryption_key(name, request.data)

        def one(item: dict[str, Any]) -> dict[str, Any]:
            ciphertext, version = _encrypt(handle, item, params.input_bytes(item, "plaintext"))
            return {"ciphertext": ciphertext, "key_version": version}

        return await run(request.data, one, cheap=handle.cheap)

    @route(r"decrypt/(?P<name>[^/]+)", Operation.WRITE)
    async def decrypt(self, request: Request, name: str) -> Response:
        """Decrypt ``ciphertext`` or every ``batch_input`` item; plaintext in base64."""
        handle = await self.keystore.require(params.key_name(name))
        return await run(
            request.data,
            lambda item: {"plaintext": _b64(_decrypt(handle, item))},
            cheap=handle.cheap,
        )

    @route(r"rewrap/(?P<name>[^/]+)", Operation.WRITE)
    async def rewrap(self, request: Request, name: str) -> Response:
        """Decrypt and encrypt again with the latest (or ``key_version``) version."""
        handle = await self.keystore.require(params.key_name(name))

        def one(item: dict[str, Any]) -> dict[str, Any]:
            ciphertext, version = _encrypt(handle, item, _decrypt(handle, item))
            return {"ciphertext": ciphertext, "key_version": version}

        return await run(request.data, one, cheap=handle.cheap)

    @route(r"datakey/(?P<kind>[^/]+)/(?P<name>[^/]+)", Operation.WRITE)
    async def datakey(self, request: Request, kind: str, name: str) -> dict[str, Any]:
        """A fresh random key encrypted with the named key (``plaintext`` also returns it)."""
        if kind not in ("plaintext", "wrapped"):
            raise InvalidArgumentError(f"invalid datakey type {kind!r}: plaintext or wrapped")
        bits = get_int(request.data, "bits", 256)
        if bits not in _DATAKEY_BITS:
            raise InvalidArgumentError("bits must be one of 128, 256, 512")
        handle = await self.keystore.require(params.key_name(name))
        key = os.urandom(bits // 8)
        ciphertext, version = _encrypt(handle, request.data, key)
        answer: dict[str, Any] = {"ciphertext": ciphertext, "key_version": version}
        if kind == "plaintext":
            answer["plaintext"] = _b64(key)
        return answer
