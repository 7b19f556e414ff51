"""Aspen: a strongly consistent key-value store with a plugin bus.

Start here: ``aspen.connect(endpoint, token=...)`` (sync) or ``aspen.aconnect(...)`` (async).
Plugins decorate hook implementations with :data:`aspen.hookimpl` and are handed an
:class:`aspen.NodeAPI` as ``node``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aspen.api import NodeAPI
from aspen.errors import AspenError
from aspen.hookspecs import hookimpl

try:
    __version__ = version("aspen-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["AspenError", "NodeAPI", "__version__", "aconnect", "connect", "hookimpl"]


def connect(endpoints: str, token: str | None = None, **kwargs):
    """Open a synchronous client; use as ``with aspen.connect(ep, token=t) as c:``."""
    from aspen.client import connect as _connect

    return _connect(endpoints, token=token, **kwargs)


def aconnect(endpoints: str, token: str | None = None, **kwargs):
    """Open an async client; use as ``async with aspen.aconnect(ep, token=t) as c:``."""
    from aspen.client import aconnect as _aconnect

    return _aconnect(endpoints, token=token, **kwargs)
