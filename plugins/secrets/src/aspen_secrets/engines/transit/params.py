"""Transit request fields on top of :mod:`aspen_secrets.fields`: bounded base64 inputs,
key names and versions, output formats."""

from __future__ import annotations

import base64
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.fields import get_b64, get_int, get_str

__all__ = [
    "context",
    "encode_output",
    "input_bytes",
    "key_name",
    "key_version",
    "optional_b64",
    "output_format",
]

_FORMATS = ("hex", "base64")


def key_name(name: str) -> str:
    """A key name from the path, bounded."""
    if len(name) > limits.TRANSIT_MAX_KEY_NAME_CHARS:
        raise InvalidArgumentError(
            f"key name is longer than {limits.TRANSIT_MAX_KEY_NAME_CHARS} characters"
        )
    return name


def input_bytes(data: dict[str, Any], name: str = "input") -> bytes:
    """A required base64 payload (``plaintext``, ``input``), at most
    ``TRANSIT_MAX_INPUT_BYTES`` once decoded (empty is allowed, as in Vault)."""
    value = get_b64(data, name, required=True, max_len=limits.TRANSIT_MAX_INPUT_BYTES)
    assert value is not None
    return value


def optional_b64(data: dict[str, Any], name: str) -> bytes | None:
    """An optional short base64 field (``associated_data``, ``nonce``); ``None`` when
    absent or empty."""
    return get_b64(data, name, max_len=limits.TRANSIT_MAX_CONTEXT_BYTES) or None


def context(data: dict[str, Any]) -> bytes | None:
    """The derivation ``context`` (base64), ``None`` when absent or empty."""
    return optional_b64(data, "context")


def key_version(data: dict[str, Any]) -> int | None:
    """``key_version`` (0 or absent means the latest)."""
    return get_int(data, "key_version", 0, min=0) or None


def output_format(data: dict[str, Any], default: str) -> str:
    """The ``format`` field: ``hex`` or ``base64``."""
    value = get_str(data, "format", default, choices=_FORMATS)
    assert value is not None
    return value


def encode_output(raw: bytes, fmt: str) -> str:
    """``raw`` as hex or base64 text."""
    return raw.hex() if fmt == "hex" else base64.b64encode(raw).decode()
