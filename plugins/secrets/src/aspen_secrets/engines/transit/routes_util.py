"""Key-less utility routes: ``random`` and ``hash``."""

from __future__ import annotations

import os
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.base import route
from aspen_secrets.engines.transit import hashes as transit_hashes
from aspen_secrets.engines.transit import params
from aspen_secrets.fields import get_int, get_str
from aspen_secrets.logical import Operation, Request

__all__ = ["UtilityRoutes"]

_SOURCES = ("platform", "seal", "all")


def _random_args(first: str | None, second: str | None) -> tuple[str, str | None]:
    """``(source, bytes from the path)`` of ``random``, ``random/<bytes>``,
    ``random/<source>``, ``random/<source>/<bytes>``."""
    if second is not None:
        return first or "platform", second
    if first is not None and first.isdigit():
        return "platform", first
    return first or "platform", None


class UtilityRoutes:
    """Random bytes and hashes."""

    @route(r"random(?:/(?P<first>[^/]+))?(?:/(?P<second>[^/]+))?", Operation.WRITE)
    async def random(
        self, request: Request, first: str | None, second: str | None
    ) -> dict[str, Any]:
        """``bytes`` (default 32) random bytes in ``format`` (default base64). Every
        source (``platform``, ``seal``, ``all``) is the operating system's generator."""
        source, path_bytes = _random_args(first, second)
        if source not in _SOURCES:
            raise InvalidArgumentError(
                f"unsupported random source {source!r}; valid: {', '.join(_SOURCES)}"
            )
        data = dict(request.data)
        if path_bytes is not None:
            data["bytes"] = path_bytes
        count = get_int(data, "bytes", 32, min=1, max=limits.TRANSIT_MAX_RANDOM_BYTES)
        assert count is not None
        fmt = params.output_format(request.data, "base64")
        return {"random_bytes": params.encode_output(os.urandom(count), fmt)}

    @route(r"hash(?:/(?P<algorithm>[^/]+))?", Operation.WRITE)
    async def hash(self, request: Request, algorithm: str | None) -> dict[str, Any]:
        """The ``algorithm`` (default sha2-256) digest of ``input`` in ``format`` (hex)."""
        name = algorithm or get_str(request.data, "algorithm", "sha2-256") or "sha2-256"
        fmt = params.output_format(request.data, "hex")
        digest = transit_hashes.digest(name, params.input_bytes(request.data))
        return {"sum": params.encode_output(digest, fmt)}
