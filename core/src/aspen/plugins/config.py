"""Plugin configuration: typed values from the TOML file and the environment.

Each plugin declares one :class:`~aspen.plugins.types.ConfigSection` named after it.
A value comes, in rising precedence, from the option's default, the ``[<plugin>]``
table of the node's TOML config file, then the environment variable
``ASPEN_<PLUGIN>_<OPTION>`` (upper-cased, ``-`` turned into ``_``).
Tables for plugins that are not installed are ignored, so one file can serve nodes
with different plugin sets; an unknown option inside a known table is an error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen.plugins.types import ConfigOption, ConfigSection

__all__ = ["env_var_name", "load_config_file", "resolve_config"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def env_var_name(section: str, option: str) -> str:
    """Return the environment variable that sets ``option`` of ``section``."""
    return f"ASPEN_{section}_{option}".upper().replace("-", "_")


def load_config_file(path: Path | str | None) -> dict[str, Any]:
    """Read a TOML config file (``None`` = no file = empty config)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"config file {path} is not valid TOML: {exc}") from None


def resolve_config(
    sections: Iterable[ConfigSection],
    file_data: Mapping[str, Any],
    environ: Mapping[str, str],
) -> dict[str, dict[str, Any]]:
    """Return ``{section: {option: value}}`` for every section, typed and validated."""
    resolved: dict[str, dict[str, Any]] = {}
    for section in sections:
        table = file_data.get(section.name, {})
        if not isinstance(table, Mapping):
            raise InvalidArgumentError(
                f"config file: [{section.name}] must be a table, got {type(table).__name__}"
            )
        known = {opt.name: opt for opt in section.options}
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise InvalidArgumentError(
                f"config file: unknown option(s) {', '.join(unknown)} in [{section.name}]; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        values: dict[str, Any] = {}
        for opt in section.options:
            var = env_var_name(section.name, opt.name)
            if var in environ:
                values[opt.name] = _from_env(opt, environ[var], var)
            elif opt.name in table:
                where = f"config file [{section.name}] {opt.name}"
                values[opt.name] = _from_file(opt, table[opt.name], where)
            else:
                values[opt.name] = opt.default
        resolved[section.name] = values
    return resolved


def _from_env(opt: ConfigOption, text: str, where: str) -> Any:
    """Parse an environment string into the option's type."""
    kind = opt.type
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(text)
        if kind in (list, tuple):
            return kind(part.strip() for part in text.split(",") if part.strip())
        return kind(text)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{where}={text!r} is not a valid {kind.__name__}"
            + (" (use true/false, 1/0, yes/no, on/off)" if kind is bool else "")
        ) from None


def _from_file(opt: ConfigOption, value: Any, where: str) -> Any:
    """Check a TOML value against the option's type (ints widen to floats, strs to paths)."""
    kind = opt.type
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if issubclass(kind, Path) and isinstance(value, str):
        return kind(value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise InvalidArgumentError(
        f"{where} must be {kind.__name__}, got {type(value).__name__} {value!r}"
    )
