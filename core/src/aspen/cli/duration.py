"""A click option type for durations: ``--ttl 10m``, ``--max-age 1h30m``, ``--wait 500ms``."""

from __future__ import annotations

import re
from typing import Any

import click

__all__ = ["Duration"]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|[smhd])")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(click.ParamType):
    """Seconds (a float) from ``90``, ``90s``, ``500ms``, ``10m``, ``1h30m`` or ``7d``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` into seconds (a float)."""
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            self.fail(f"{value!r} is not a duration like 90s, 500ms, 10m, 1h30m or 7d", param, ctx)
        return total
