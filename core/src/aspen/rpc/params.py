"""Parameter validators shared by every RPC handler (core and plugins).

Each raises :class:`~aspen.errors.InvalidArgumentError` naming the field, the type it
expected and the bound it broke, with ``details`` ``{"field": name}`` so clients can
point at it. ``str`` is accepted where bytes are expected and encoded as UTF-8.
"""

from __future__ import annotations

from typing import Any

from aspen.errors import InvalidArgumentError

__all__ = [
    "optional_bool",
    "optional_bytes",
    "optional_int",
    "optional_list",
    "optional_str",
    "require_bytes",
    "require_int",
    "require_str",
]

_MISSING: Any = object()


def _type_name(value: object) -> str:
    """Return a short name of ``value``'s type for error messages."""
    return "nil" if value is None else type(value).__name__


def _to_bytes(name: str, value: object, max_len: int | None, allow_empty: bool) -> bytes:
    """Coerce ``value`` to bytes and check its length bounds."""
    if type(value) is bytes:
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise InvalidArgumentError(
            f"{name!r} must be bytes (or a UTF-8 str), not {_type_name(value)}", field=name
        )
    if not data and not allow_empty:
        raise InvalidArgumentError(f"{name!r} must not be empty", field=name)
    if max_len is not None and len(data) > max_len:
        raise InvalidArgumentError(
            f"{name!r} is {len(data)} bytes, over the limit of {max_len}",
            field=name,
            limit=max_len,
        )
    return data


def require_bytes(
    params: dict[str, Any], name: str, *, max_len: int | None = None, allow_empty: bool = False
) -> bytes:
    """Return ``params[name]`` as bytes; it must be present (str is encoded as UTF-8)."""
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        raise InvalidArgumentError(f"missing required field {name!r} (bytes)", field=name)
    return _to_bytes(name, value, max_len, allow_empty)


def optional_bytes(
    params: dict[str, Any],
    name: str,
    default: bytes | None = None,
    *,
    max_len: int | None = None,
    allow_empty: bool = True,
) -> bytes | None:
    """Return ``params[name]`` as bytes, or ``default`` when absent or nil."""
    value = params.get(name)
    if value is None:
        return default
    return _to_bytes(name, value, max_len, allow_empty)


def _check_int(name: str, value: object, min: int | None, max: int | None) -> int:
    """Check that ``value`` is an int (not a bool) within [min, max]."""
    if type(value) is not int:
        raise InvalidArgumentError(f"{name!r} must be an int, not {_type_name(value)}", field=name)
    if min is not None and value < min:
        raise InvalidArgumentError(
            f"{name!r} is {value}, below the minimum of {min}", field=name, limit=min
        )
    if max is not None and value > max:
        raise InvalidArgumentError(
            f"{name!r} is {value}, over the maximum of {max}", field=name, limit=max
        )
    return value


def require_int(
    params: dict[str, Any], name: str, *, min: int | None = None, max: int | None = None
) -> int:
    """Return ``params[name]``, which must be an int within [min, max]."""
    value = params.get(name)
    if value is None:
        raise InvalidArgumentError(f"missing required field {name!r} (int)", field=name)
    return _check_int(name, value, min, max)


def optional_int(
    params: dict[str, Any],
    name: str,
    default: int = 0,
    *,
    min: int | None = None,
    max: int | None = None,
) -> int:
    """Return ``params[name]`` (an int within [min, max]), or ``default`` when absent."""
    value = params.get(name)
    if value is None:
        return default
    return _check_int(name, value, min, max)


def optional_bool(params: dict[str, Any], name: str, default: bool = False) -> bool:
    """Return ``params[name]`` (a bool), or ``default`` when absent or nil."""
    value = params.get(name)
    if value is None:
        return default
    if type(value) is not bool:
        raise InvalidArgumentError(f"{name!r} must be a bool, not {_type_name(value)}", field=name)
    return value


def _check_str(name: str, value: object, max_len: int | None, choices: Any) -> str:
    """Check that ``value`` is a str, within ``max_len`` characters, one of ``choices``."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name!r} must be a str, not {_type_name(value)}", field=name)
    if max_len is not None and len(value) > max_len:
        raise InvalidArgumentError(
            f"{name!r} is {len(value)} characters, over the limit of {max_len}",
            field=name,
            limit=max_len,
        )
    if choices is not None and value not in choices:
        raise InvalidArgumentError(
            f"{name!r} is {value!r}, not one of {sorted(choices)}", field=name
        )
    return value


def require_str(
    params: dict[str, Any], name: str, *, max_len: int | None = None, choices: Any = None
) -> str:
    """Return ``params[name]``, which must be a str (optionally one of ``choices``)."""
    value = params.get(name)
    if value is None:
        raise InvalidArgumentError(f"missing required field {name!r} (str)", field=name)
    return _check_str(name, value, max_len, choices)


def optional_str(
    params: dict[str, Any],
    name: str,
    default: str | None = None,
    *,
    max_len: int | None = None,
    choices: Any = None,
) -> str | None:
    """Return ``params[name]`` (a str), or ``default`` when absent or nil."""
    value = params.get(name)
    if value is None:
        return default
    return _check_str(name, value, max_len, choices)


def optional_list(params: dict[str, Any], name: str, *, max_len: int | None = None) -> list[Any]:
    """Return ``params[name]`` (a list of at most ``max_len`` items), or ``[]`` when absent."""
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidArgumentError(f"{name!r} must be a list, not {_type_name(value)}", field=name)
    if max_len is not None and len(value) > max_len:
        raise InvalidArgumentError(
            f"{name!r} has {len(value)} items, over the limit of {max_len}",
            field=name,
            limit=max_len,
        )
    return list(value)
