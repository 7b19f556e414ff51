"""Plugin loading, isolation and status; the typed results of registration hooks.

Names are imported on first use, so ``aspen.plugins.types`` stays cheap to import for
the modules the manager itself depends on (the RPC registry, the node).
"""

from __future__ import annotations

from aspen.lazy import lazy_getattr

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
    "AspenPluginManager": "aspen.plugins.manager",
    "Subscriber": "aspen.plugins.manager",
    "make_plugin_manager": "aspen.plugins.manager",
    "env_var_name": "aspen.plugins.config",
    "load_config_file": "aspen.plugins.config",
    "resolve_config": "aspen.plugins.config",
    "ConfigOption": "aspen.plugins.types",
    "ConfigSection": "aspen.plugins.types",
    "PluginInfo": "aspen.plugins.types",
    "RpcHandler": "aspen.plugins.types",
}


__getattr__ = lazy_getattr(__name__, _HOME)
