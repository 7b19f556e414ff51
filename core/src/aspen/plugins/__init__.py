"""Plugin loading, isolation and status; the typed results of registration hooks."""

from __future__ import annotations

from aspen.plugins.config import env_var_name, load_config_file, resolve_config
from aspen.plugins.manager import AspenPluginManager, Subscriber, make_plugin_manager
from aspen.plugins.types import ConfigOption, ConfigSection, PluginInfo, RpcHandler

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
