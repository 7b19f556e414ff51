"""Vault's versioned value format: ``vault:v<N>:<base64>`` for ciphertexts, HMACs and
signatures (JWS-marshalled signatures use unpadded URL-safe base64)."""

from __future__ import annotations

import base64
import binascii
import re

from aspen.errors import InvalidArgumentError

__all__ = ["PREFIX", "decode", "encode"]

#: The first field of every value.
PREFIX = "vault"
_VERSION = re.compile(r"v([1-9][0-9]{0,9})")


def encode(version: int, blob: bytes, *, urlsafe: bool = False) -> str:
    """``vault:v<version>:<base64 of blob>``."""
    if urlsafe:
        text = base64.urlsafe_b64encode(blob).rstrip(b"=").decode()
    else:
        text = base64.b64encode(blob).decode()
    return f"{PREFIX}:v{version}:{text}"


def decode(value: object, what: str = "ciphertext", *, urlsafe: bool = False) -> tuple[int, bytes]:
    """``(version, blob)`` of a value made by :func:`encode`; a clear
    ``invalid_argument`` error naming ``what`` for anything malformed."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"invalid {what}: must be a non-empty string")
    prefix, sep, rest = value.partition(":")
    if not sep or prefix != PREFIX:
        raise InvalidArgumentError(f"invalid {what}: no prefix (expected '{PREFIX}:v<N>:')")
    version_text, sep, body = rest.partition(":")
    match = _VERSION.fullmatch(version_text)
    if not sep or match is None:
        raise InvalidArgumentError(f"invalid {what}: version number could not be decoded")
    try:
        if urlsafe:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        else:
            blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"invalid {what}: could not decode base64") from None
    return int(match.group(1)), blob
