"""Plugin loading, isolation and status; the typed results of registration hooks.

Names are imported on first use, so ``aspen.plugins.types`` stays cheap to import for
the modules the manager itself depends on (the RPC registry, the node).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AspenPluginManager",
    "ConfigOption",
    "ConfigSection",
    "PluginInfo",
    "RpcHandler",
    "Subscriber",
    "env_var_name",
    "load_config_file",
    "make_plugin_manager",
    "resolve_config",
]

_HOME = {
    "AspenPluginManager": "manager",
    "Subscriber": "manager",
    "make_plugin_manager": "manager",
    "env_var_name": "config",
    "load_config_file": "config",
    "resolve_config": "config",
    "ConfigOption": "types",
    "ConfigSection": "types",
    "PluginInfo": "types",
    "RpcHandler": "types",
}


def __getattr__(name: str) -> Any:
    """Import the public names lazily from their modules."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
