"""Reading and checking the fields of KV v2 requests (Vault's names, messages and bounds)."""

from __future__ import annotations

import math
from typing import Any

import msgpack

from aspen.errors import InvalidArgumentError, ResourceExhaustedError
from aspen_secrets import limits
from aspen_secrets.fields import get_duration, get_int, parse_duration
from aspen_secrets.store import check_path

__all__ = [
    "CUSTOM_METADATA_ERROR",
    "check_custom_metadata",
    "check_data",
    "read_cas",
    "read_custom_metadata",
    "read_data",
    "read_max_versions",
    "read_signed_duration",
    "read_versions",
    "secret_path",
]

#: Prefix of every ``custom_metadata`` error (Vault's wording).
CUSTOM_METADATA_ERROR = "custom_metadata validation failed"


def secret_path(path: str) -> str:
    """A secret's path: :func:`check_path` rules, bounded bytes, and no empty segment."""
    check_path(path)
    if _utf8_len(path, "path") > limits.KV2_MAX_PATH_BYTES:
        raise InvalidArgumentError(f"path is longer than {limits.KV2_MAX_PATH_BYTES} bytes")
    if not path or "" in path.split("/"):
        raise InvalidArgumentError(f"invalid secret path {path!r}")
    return path


def _utf8_len(text: str, what: str) -> int:
    """Length of ``text`` in UTF-8 bytes (lone surrogates are refused)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} is not valid UTF-8 text") from None


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth of maps and lists, stopping once past the bound."""
    if level > limits.KV2_MAX_DATA_DEPTH:
        return level
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return level
    return max((_depth(item, level + 1) for item in items), default=level + 1)


def _non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or infinite float anywhere (JSON cannot carry one)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    return False


def check_data(data: Any) -> dict[str, Any]:
    """A secret's ``data``: a JSON object within the depth and size bounds."""
    if not isinstance(data, dict):
        raise InvalidArgumentError("field 'data' must be a JSON object")
    if _depth(data) > limits.KV2_MAX_DATA_DEPTH:
        raise InvalidArgumentError(
            f"field 'data' is nested deeper than {limits.KV2_MAX_DATA_DEPTH} levels"
        )
    if _non_finite(data):
        raise InvalidArgumentError("field 'data' holds NaN or Infinity, which is not valid JSON")
    try:
        size = len(msgpack.packb(data))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(f"field 'data' cannot be stored: {exc}") from None
    if size > limits.KV2_MAX_DATA_BYTES:
        raise ResourceExhaustedError(
            f"field 'data' is {size} bytes, more than {limits.KV2_MAX_DATA_BYTES}"
        )
    return data


def read_data(body: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` map of a data write or patch (Vault: "no data provided" when absent)."""
    if body.get("data") is None:
        raise InvalidArgumentError("no data provided")
    return check_data(body["data"])


def read_cas(body: dict[str, Any]) -> int | None:
    """``options.cas`` (``None`` when not given)."""
    options = body.get("options")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise InvalidArgumentError("field 'options' must be an object")
    if options.get("cas") is None:
        return None
    try:
        return get_int(options, "cas", min=0)
    except InvalidArgumentError:
        raise InvalidArgumentError("error parsing check-and-set parameter") from None


def read_versions(body: dict[str, Any]) -> list[int]:
    """``versions``: a list of numbers or a comma-separated string, at least one."""
    raw = body.get("versions")
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if raw is None or raw == []:
        raise InvalidArgumentError("No version number provided")
    if not isinstance(raw, list):
        raise InvalidArgumentError("field 'versions' must be a list of version numbers")
    if len(raw) > limits.KV2_MAX_VERSIONS:
        raise InvalidArgumentError(
            f"field 'versions' names more than {limits.KV2_MAX_VERSIONS} versions"
        )
    numbers = {get_int({"versions": item}, "versions", required=True) for item in raw}
    return sorted(n for n in numbers if n is not None)


def read_max_versions(body: dict[str, Any]) -> int | None:
    """``max_versions`` (0 = unset), bounded by ``KV2_MAX_VERSIONS``."""
    return get_int(body, "max_versions", min=0, max=limits.KV2_MAX_VERSIONS)


def read_signed_duration(body: dict[str, Any], name: str, *, signed: bool) -> int | None:
    """A duration field in seconds; with ``signed`` a leading ``-`` is allowed (Vault's
    mount ``delete_version_after``: negative disables it). Its size is bounded by
    ``SECRETS_MAX_MOUNT_TTL_SECONDS`` (a deletion time must stay a valid date)."""
    value = body.get(name)
    if value is None:
        return None
    if signed and isinstance(value, str) and value.strip().startswith("-"):
        seconds = -parse_duration(value.strip()[1:], name)
    elif signed and isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        seconds = -parse_duration(-value, name)
    else:
        seconds = get_duration(body, name) or 0
    if abs(seconds) > limits.SECRETS_MAX_MOUNT_TTL_SECONDS:
        raise InvalidArgumentError(
            f"field {name!r} is over SECRETS_MAX_MOUNT_TTL_SECONDS "
            f"({limits.SECRETS_MAX_MOUNT_TTL_SECONDS} seconds)"
        )
    return seconds


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    raise InvalidArgumentError(f"{CUSTOM_METADATA_ERROR}: value for key {key!r} is not a string")


def read_custom_metadata(
    body: dict[str, Any], *, allow_null: bool = False
) -> dict[str, str | None] | None:
    """``custom_metadata`` as a string→string map (numbers and booleans become text, as
    Vault's weak decoding does); ``None`` values are kept only with ``allow_null`` (patch).
    The map is checked with :func:`check_custom_metadata` (nulls left out)."""
    raw = body.get("custom_metadata")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidArgumentError(f"{CUSTOM_METADATA_ERROR}: custom_metadata must be an object")
    if len(raw) > limits.KV2_MAX_CUSTOM_METADATA_KEYS:
        check_custom_metadata(raw)
    parsed: dict[str, str | None] = {}
    for key, value in raw.items():
        if value is None and allow_null:
            parsed[key] = None
        else:
            parsed[key] = "" if value is None else _as_text(key, value)
    check_custom_metadata({k: v for k, v in parsed.items() if v is not None})
    return parsed


def check_custom_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Vault's bounds: at most 64 keys; keys 1 to 128 bytes, values 1 to 512 bytes, printable."""
    if len(meta) > limits.KV2_MAX_CUSTOM_METADATA_KEYS:
        raise InvalidArgumentError(
            f"{CUSTOM_METADATA_ERROR}: payload must contain at most "
            f"{limits.KV2_MAX_CUSTOM_METADATA_KEYS} keys, provided {len(meta)}"
        )
    problems = []
    for key, value in meta.items():
        key_len = _utf8_len(key, f"{CUSTOM_METADATA_ERROR}: a key")
        value_len = _utf8_len(value, f"{CUSTOM_METADATA_ERROR}: the value of {key!r}")
        if not 0 < key_len <= limits.KV2_MAX_CUSTOM_METADATA_KEY_BYTES:
            problems.append(
                f"length of key {key!r} is {key_len} but must be "
                f"0 < len(key) <= {limits.KV2_MAX_CUSTOM_METADATA_KEY_BYTES}"
            )
        if not 0 < value_len <= limits.KV2_MAX_CUSTOM_METADATA_VALUE_BYTES:
            problems.append(
                f"length of value for key {key!r} is {value_len} but must be "
                f"0 < len(value) <= {limits.KV2_MAX_CUSTOM_METADATA_VALUE_BYTES}"
            )
        if not key.isprintable():
            problems.append(f"key {key!r} contains unprintable characters")
        if not value.isprintable():
            problems.append(f"value for key {key!r} contains unprintable characters")
    if problems:
        raise InvalidArgumentError("; ".join(f"{CUSTOM_METADATA_ERROR}: {p}" for p in problems))
    return meta
