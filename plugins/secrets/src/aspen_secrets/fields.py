"""Reading request fields as Vault does: lenient about JSON types, strict about values.

Vault clients send numbers as numbers or strings, booleans as ``true`` or ``"true"``,
lists as JSON lists or comma-separated strings, and durations as seconds or Go-style
strings (``"768h"``, ``"1h30m"``, ``"10s"``). Every reader raises
:class:`~aspen.errors.InvalidArgumentError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits

__all__ = [
    "format_duration",
    "get_b64",
    "get_bool",
    "get_duration",
    "get_int",
    "get_list",
    "get_map",
    "get_status_code",
    "get_str",
    "parse_duration",
]

_MISSING = object()
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def _raw(data: dict[str, Any], name: str, default: Any, required: bool) -> Any:
    value = data.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise InvalidArgumentError(f"missing required field {name!r}")
        return _MISSING if default is _MISSING else default
    return value


def get_str(
    data: dict[str, Any],
    name: str,
    default: str | None = None,
    *,
    required: bool = False,
    choices: tuple[str, ...] | None = None,
    max_len: int | None = None,
) -> str | None:
    """A string field (numbers are accepted and turned into text)."""
    value = _raw(data, name, default, required)
    if value is _MISSING or value is default:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgumentError(f"field {name!r} must be a string")
    text = str(value)
    if max_len is not None and len(text) > max_len:
        raise InvalidArgumentError(f"field {name!r} is longer than {max_len} characters")
    if choices is not None and text not in choices:
        raise InvalidArgumentError(f"field {name!r} must be one of {', '.join(choices)}")
    return text


def get_int(
    data: dict[str, Any],
    name: str,
    default: int | None = None,
    *,
    required: bool = False,
    min: int | None = None,
    max: int | None = None,
) -> int | None:
    """An integer field (``"12"`` is accepted)."""
    value = _raw(data, name, default, required)
    if value is _MISSING or value is default:
        return default
    if isinstance(value, bool):
        raise InvalidArgumentError(f"field {name!r} must be an integer")
    try:
        number = int(value) if isinstance(value, int | str) else int(_whole(value, name))
    except ValueError:
        raise InvalidArgumentError(f"field {name!r} must be an integer, got {value!r}") from None
    if min is not None and number < min:
        raise InvalidArgumentError(f"field {name!r} must be at least {min}")
    if max is not None and number > max:
        raise InvalidArgumentError(f"field {name!r} must be at most {max}")
    return number


def _whole(value: Any, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidArgumentError(f"field {name!r} must be an integer, got {value!r}")


def get_bool(data: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean field (``"true"``/``"false"``/``"1"``/``"0"`` are accepted)."""
    value = _raw(data, name, default, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "1", "t", "false", "0", "f", ""):
        return value.lower() in ("true", "1", "t")
    raise InvalidArgumentError(f"field {name!r} must be a boolean, got {value!r}")


def get_list(data: dict[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    """A list of strings: a JSON list, or one comma-separated string."""
    value = _raw(data, name, default if default is not None else [], False)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgumentError(f"field {name!r} must be a list of strings")


def get_map(
    data: dict[str, Any], name: str, default: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON object field."""
    value = _raw(data, name, default if default is not None else {}, False)
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"field {name!r} must be an object")
    return value


def get_b64(
    data: dict[str, Any], name: str, *, required: bool = False, max_len: int | None = None
) -> bytes | None:
    """A base64 field, decoded (``None`` when absent and not required)."""
    value = _raw(data, name, None, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"field {name!r} must be base64 text")
    if max_len is not None and len(value) > (max_len * 4) // 3 + 4:
        raise InvalidArgumentError(f"field {name!r} is larger than {max_len} bytes")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"field {name!r} is not valid base64") from None
    if max_len is not None and len(decoded) > max_len:
        raise InvalidArgumentError(f"field {name!r} is larger than {max_len} bytes")
    return decoded


#: Status codes an answer with a body must not use (they cannot carry one).
_BODILESS_STATUS = frozenset({204, 304})


def get_status_code(data: dict[str, Any], name: str, default: int) -> int:
    """An HTTP status code a request asks its answer to have (``sys/health``'s
    ``activecode``, transit's ``partial_failure_response_code``): 200-599 and not a
    bodiless one (204, 304); ``default`` when absent or 0."""
    code = get_int(data, name, default) if data.get(name) != "" else default
    if not code:
        return default
    if not 200 <= code <= 599 or code in _BODILESS_STATUS:
        raise InvalidArgumentError(
            f"field {name!r} must be an HTTP status code in 200..599 other than 204 and 304"
        )
    return code


def parse_duration(value: Any, name: str = "duration") -> int:
    """Seconds from ``3600``, ``"3600"``, ``"1h"``, ``"1h30m"``, ``"90s"`` (whole seconds).

    Negative, non-finite and longer than ``SECRETS_MAX_DURATION_SECONDS`` durations are
    refused (``invalid_argument``)."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"field {name!r} must be a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise InvalidArgumentError(f"field {name!r} must not be negative")
        return _bounded_seconds(value, name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"field {name!r} must be a duration like 3600 or '1h'")
    text = value.strip()
    if text.isascii() and text.isdigit():
        return _bounded_seconds(float(text), name)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise InvalidArgumentError(f"field {name!r}: {value!r} is not a duration like '1h30m'")
    return _bounded_seconds(total, name)


def _bounded_seconds(seconds: float, name: str) -> int:
    """Whole seconds of a non-negative duration, within ``SECRETS_MAX_DURATION_SECONDS``."""
    bound = limits.SECRETS_MAX_DURATION_SECONDS
    if not math.isfinite(seconds) or seconds > bound:
        raise InvalidArgumentError(
            f"field {name!r} must be a finite duration of at most {bound} seconds "
            "(SECRETS_MAX_DURATION_SECONDS)"
        )
    return int(seconds)


def get_duration(
    data: dict[str, Any], name: str, default: int | None = None, *, required: bool = False
) -> int | None:
    """A duration field in whole seconds (see :func:`parse_duration`)."""
    value = _raw(data, name, default, required)
    if value is _MISSING or value is default:
        return default
    return parse_duration(value, name)


def format_duration(seconds: int) -> str:
    """Go-style text of a duration, as Vault shows it (``"768h0m0s"``, ``"0s"``)."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
