"""The plugin manager: finds plugins, loads each in isolation and reports their status.

A plugin is whatever the entry point ``<name> = <module or object>`` in the group
``aspen`` points at; ``<name>`` is the plugin's one name everywhere (RPC prefix, CLI
group, config section, KV prefix ``/_aspen/<name>/``). Loading is one plugin at a time:
a plugin that fails to import, implements a hook that does not exist, breaks a
registration contract or raises from a hook is recorded as *failed* with its error and
unregistered. Nothing a plugin does can crash the CLI or the node.

Failed means unloaded: a node listens with :meth:`AspenPluginManager.add_failure_listener`
and, when a plugin fails after the node was built (its ``aspen_startup`` raised), answers its
RPC methods with ``unavailable``, stops its events and cancels the tasks it spawned; its
``aspen_shutdown`` is not called.

Aspen calls each plugin's hook implementation on its own (the event bus, lifecycle hooks in
load order), never through pluggy's hook caller, so pluggy's ordering and wrapping options
(``tryfirst``, ``trylast``, ``wrapper``, ``hookwrapper``) and hookspecs declared by a plugin
(``firstresult``) would have no effect: a plugin using them is refused at registration.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import anyio
import pluggy

from aspen import hookspecs
from aspen.errors import InvalidArgumentError
from aspen.hookspecs import PROJECT_NAME
from aspen.limits import LIFECYCLE_HOOK_TIMEOUT_SECONDS
from aspen.plugins.types import ConfigSection, PluginInfo, PluginStatus
from aspen.rpc.handler import RpcHandler
from aspen.rpc.registry import check_method_name

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "LIFECYCLE_HOOKS",
    "LOAD_ENV",
    "NOTIFICATION_HOOKS",
    "REGISTRATION_HOOKS",
    "RESERVED_NAMES",
    "UNSUPPORTED_HOOKIMPL_OPTIONS",
    "AspenPluginManager",
    "FailureListener",
    "Subscriber",
    "current_plugin",
    "make_plugin_manager",
    "split_names",
]

log = logging.getLogger(__name__)

#: The entry-point group plugins register under.
ENTRY_POINT_GROUP = PROJECT_NAME
#: Comma list of plugin names to load (set but empty: load none).
LOAD_ENV = "ASPEN_LOAD_PLUGINS"
#: Comma list of plugin names not to load.
DISABLE_ENV = "ASPEN_DISABLE_PLUGINS"
#: Names owned by the core (its RPC namespaces); no plugin may take them.
RESERVED_NAMES = frozenset({"aspen", "cluster", "core", "dev", "kv", "lease", "node"})
#: Hooks called once at start-up to collect what a plugin contributes.
REGISTRATION_HOOKS = ("aspen_rpc_handlers", "aspen_cli_commands", "aspen_config_sections")
#: Hooks run when a node starts and stops.
LIFECYCLE_HOOKS = ("aspen_startup", "aspen_shutdown")
#: Hooks only the event bus calls.
NOTIFICATION_HOOKS = ("aspen_on_kv_event", "aspen_on_raft_event", "aspen_on_cluster_event")

#: pluggy hookimpl options that mean nothing here (each implementation is called on its own)
#: and are refused rather than silently ignored.
UNSUPPORTED_HOOKIMPL_OPTIONS = ("tryfirst", "trylast", "wrapper", "hookwrapper")

#: The plugin whose lifecycle hook is running; tasks it starts (``node.spawn``) inherit it,
#: which is how a node finds the tasks of a plugin that fails.
current_plugin: ContextVar[str | None] = ContextVar("aspen_current_plugin", default=None)

#: Called as ``listener(plugin_name, error)`` each time a plugin is marked failed.
FailureListener = Callable[[str, str], None]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_IN_PROCESS = "(in-process)"


def split_names(text: str | None) -> list[str] | None:
    """Parse a comma list of plugin names (``None`` stays ``None``; blanks are dropped)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One plugin's implementation of a hook, to be called on its own (by the event bus)."""

    plugin: str
    hook: str
    function: Callable[..., Any]
    argnames: tuple[str, ...] = ()

    def __call__(self, **kwargs: Any) -> Any:
        """Call the implementation with the hook arguments it declares; may return an awaitable."""
        return self.function(**{name: kwargs[name] for name in self.argnames})


@dataclass(slots=True)
class _Record:
    """Mutable bookkeeping for one plugin (the public view is :class:`PluginInfo`)."""

    name: str
    distribution: str
    version: str
    entry_point: str
    status: PluginStatus
    error: str = ""
    hooks: tuple[str, ...] = ()


class _ContractError(Exception):
    """A plugin broke a registration contract (the message says which)."""


class AspenPluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``aspen`` hooks that isolates and records every plugin."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._records: dict[str, _Record] = {}
        # plugins refused because another one already has their name
        self._rejected: list[_Record] = []
        # hook name -> plugin name -> the validated items that plugin contributed
        self._collected: dict[str, dict[str, list[Any]]] = {}
        self._failure_listeners: list[FailureListener] = []

    # ------------------------------------------------------------------------- loading
    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        """Treat every ``aspen_*`` function as a hook implementation, marked or not.

        This way a misspelt hook is reported as unknown instead of being silently ignored.
        Options Aspen cannot honour (:data:`UNSUPPORTED_HOOKIMPL_OPTIONS`, a hookspec marker
        such as ``firstresult``) refuse the plugin with a message saying so.
        """
        opts = super().parse_hookimpl_opts(plugin, name)
        function = getattr(plugin, name, None)
        if name.startswith("aspen_") and hasattr(function, f"{PROJECT_NAME}_spec"):
            raise pluggy.PluginValidationError(
                plugin,
                f"{name} is marked as a hookspec (firstresult/historic): plugins implement "
                "aspen's hooks with @aspen.hookimpl, they do not declare them",
            )
        unsupported = sorted(k for k in UNSUPPORTED_HOOKIMPL_OPTIONS if opts and opts.get(k))
        if unsupported:
            raise pluggy.PluginValidationError(
                plugin,
                f"{name} uses hookimpl option(s) {', '.join(unsupported)}, which aspen does not "
                "support: each plugin's hook is called on its own (notification hooks by the "
                "event bus, lifecycle hooks in load order), never in a chain; drop the option",
            )
        if opts is None and name.startswith("aspen_") and inspect.isroutine(function):
            return {}
        return opts

    def add_plugin(
        self,
        name: str,
        plugin: Any,
        *,
        distribution: str = _IN_PROCESS,
        version: str = "",
        entry_point: str = "",
    ) -> bool:
        """Register ``plugin`` as ``name``; on any problem record it as failed. True if loaded."""
        if name in self._records:
            return self._reject_duplicate(name, distribution, version, entry_point)
        self._set_record(name, distribution, version, entry_point, "loaded")
        if not _NAME_RE.match(name):
            return self._fail(
                name, f"invalid plugin name {name!r}: use lower-case letters, digits, '_' or '-'"
            )
        if name in RESERVED_NAMES:
            return self._fail(name, f"plugin name {name!r} is reserved by aspen-core")
        try:
            self.register(plugin, name=name)
        except Exception as exc:
            return self._fail(name, f"invalid hook implementation: {_describe(exc)}")
        callers = self.get_hookcallers(plugin) or []
        unknown = sorted(
            caller.name
            for caller in callers
            if not caller.has_spec()
            and any(i.plugin_name == name and not i.optionalhook for i in caller.get_hookimpls())
        )
        if unknown:
            return self._fail(name, f"unknown hook(s) {', '.join(unknown)}")
        self._records[name].hooks = tuple(sorted(caller.name for caller in callers))
        return True

    def load_entry_points(
        self, *, load: Iterable[str] | None = None, disable: Iterable[str] = ()
    ) -> None:
        """Load every installed ``aspen`` entry point allowed by ``load`` / ``disable``."""
        wanted = None if load is None else set(load)
        blocked = set(disable)
        seen: dict[str, str] = {}
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist, version = _dist_name(ep), _dist_version(ep)
            if seen.setdefault(ep.name, dist) == dist and ep.name in self._records:
                continue  # same distribution seen twice on sys.path, or overridden in-process
            if ep.name in blocked:
                error = f"disabled by {DISABLE_ENV}"
                self._set_record(ep.name, dist, version, ep.value, "disabled", error)
            elif wanted is not None and ep.name not in wanted:
                error = f"not listed in {LOAD_ENV}"
                self._set_record(ep.name, dist, version, ep.value, "disabled", error)
            else:
                self._load_entry_point(ep, dist, version)
        for name in sorted((wanted or set()) - set(self._records) - blocked):
            error = f"no installed plugin named {name!r} (see {LOAD_ENV})"
            self._set_record(name, "", "", "", "failed", error)

    def _load_entry_point(self, ep: EntryPoint, dist: str, version: str) -> None:
        try:
            plugin = ep.load()
        except BaseException as exc:  # a plugin may even raise SystemExit at import
            if isinstance(exc, KeyboardInterrupt):
                raise
            if ep.name in self._records:  # another distribution already has this name
                self._reject_duplicate(ep.name, dist, version, ep.value)
                return
            self._set_record(ep.name, dist, version, ep.value, "failed")
            self._fail(ep.name, f"import failed: {_describe(exc)}", exc)
            return
        self.add_plugin(ep.name, plugin, distribution=dist, version=version, entry_point=ep.value)

    def add_failure_listener(self, listener: FailureListener) -> None:
        """Call ``listener(name, error)`` whenever a plugin is marked failed from now on."""
        self._failure_listeners.append(listener)

    def remove_failure_listener(self, listener: FailureListener) -> None:
        """Stop calling ``listener`` (a node that stopped)."""
        if listener in self._failure_listeners:
            self._failure_listeners.remove(listener)

    def mark_failed(self, name: str, error: str) -> None:
        """Record plugin ``name`` as failed with ``error``, log it and unregister it."""
        if name not in self._records:
            self._set_record(name, "", "", "", "failed", error)
        self._fail(name, error)

    # ------------------------------------------------------------------------- status
    def infos(self) -> list[PluginInfo]:
        """Return what is known about every plugin seen, in load order."""
        return [
            PluginInfo(
                name=r.name,
                distribution=r.distribution,
                version=r.version,
                status=r.status,
                hooks=r.hooks,
                error=r.error,
                entry_point=r.entry_point,
            )
            for r in [*self._records.values(), *self._rejected]
        ]

    def loaded_names(self) -> list[str]:
        """Names of the plugins currently loaded, in load order."""
        return [r.name for r in self._records.values() if r.status == "loaded"]

    # ------------------------------------------------------------------------- registration
    def rpc_handlers(self) -> list[RpcHandler]:
        """Every loaded plugin's RPC handlers, tagged with the plugin's name."""
        return self._collect("aspen_rpc_handlers", _check_rpc_handlers)

    def cli_commands(self) -> dict[str, Any]:
        """Every loaded plugin's click command, keyed by the plugin name (= the command name)."""
        commands = self._collect("aspen_cli_commands", _check_cli_commands)
        return {cmd.name: cmd for cmd in commands}

    def config_sections(self) -> list[ConfigSection]:
        """Every loaded plugin's configuration section."""
        return self._collect("aspen_config_sections", _check_config_sections)

    def collect_registrations(self) -> None:
        """Run every registration hook now, so contract errors show up in :meth:`infos`."""
        self.rpc_handlers()
        self.cli_commands()
        self.config_sections()

    def _collect(self, hook: str, check: Callable[[str, list[Any]], list[Any]]) -> list[Any]:
        done = self._collected.setdefault(hook, {})
        for sub in self.subscribers(hook):
            if sub.plugin in done:
                continue
            try:
                done[sub.plugin] = check(sub.plugin, _as_list(hook, sub()))
            except Exception as exc:
                if isinstance(exc, _ContractError):
                    self._fail(sub.plugin, f"{hook}: {exc}")
                else:
                    self._fail(sub.plugin, f"{hook} raised {_describe(exc)}", exc)
        loaded = self.loaded_names()
        return [item for name in loaded for item in done.get(name, ())]

    # ------------------------------------------------------------------------- calling
    def subscribers(self, hook_name: str) -> list[Subscriber]:
        """Each loaded plugin's implementation of ``hook_name``, in load order."""
        caller = getattr(self.hook, hook_name, None)
        if caller is None:
            raise ValueError(f"no such hook: {hook_name}")
        impls = {impl.plugin_name: impl for impl in caller.get_hookimpls()}
        return [
            Subscriber(name, hook_name, impls[name].function, tuple(impls[name].argnames))
            for name in self.loaded_names()
            if name in impls
        ]

    async def run_lifecycle(self, hook_name: str, node: Any) -> None:
        """Run ``aspen_startup`` (load order) or ``aspen_shutdown`` (reverse) for every plugin.

        Coroutines are awaited, each under ``LIFECYCLE_HOOK_TIMEOUT_SECONDS``; a plugin whose
        hook raises or times out is logged and marked failed, and the others still run.
        """
        if hook_name not in LIFECYCLE_HOOKS:
            raise ValueError(f"not a lifecycle hook: {hook_name}")
        subs = self.subscribers(hook_name)
        if hook_name == "aspen_shutdown":
            subs.reverse()
        for sub in subs:
            if sub.plugin not in self.loaded_names():
                continue  # failed while an earlier plugin's hook ran
            running = current_plugin.set(sub.plugin)
            try:
                with anyio.fail_after(LIFECYCLE_HOOK_TIMEOUT_SECONDS):
                    result = sub(node=node)
                    if inspect.isawaitable(result):
                        await result
            except TimeoutError:
                self._fail(
                    sub.plugin,
                    f"{hook_name} did not finish within {LIFECYCLE_HOOK_TIMEOUT_SECONDS:g}s",
                )
            except Exception as exc:
                self._fail(sub.plugin, f"{hook_name} raised {_describe(exc)}", exc)
            finally:
                current_plugin.reset(running)

    # ------------------------------------------------------------------------- internals
    def _set_record(
        self,
        name: str,
        dist: str,
        version: str,
        entry_point: str,
        status: PluginStatus,
        error: str = "",
    ) -> None:
        self._records[name] = _Record(name, dist, version, entry_point, status, error)

    def _reject_duplicate(self, name: str, dist: str, version: str, entry_point: str) -> bool:
        owner = self._records[name].distribution or _IN_PROCESS
        error = f"plugin name {name!r} is already taken by {owner}"
        self._rejected.append(_Record(name, dist, version, entry_point, "failed", error))
        log.warning("plugin %r from %s refused: %s", name, dist, error)
        return False

    def _fail(self, name: str, error: str, exc: BaseException | None = None) -> bool:
        record = self._records[name]
        record.status = "failed"
        record.error = error
        log.warning("plugin %r failed: %s", name, error)
        if exc is not None:
            log.debug("plugin %r traceback", name, exc_info=exc)
        if self.has_plugin(name):
            self.unregister(name=name)
        for done in self._collected.values():
            done.pop(name, None)
        for listener in list(self._failure_listeners):
            try:
                listener(name, error)
            except Exception:
                log.exception("unloading failed plugin %r", name)
        return False


# ----------------------------------------------------------------------------- contracts
def _as_list(hook: str, result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, list | tuple):
        return list(result)
    if inspect.iscoroutine(result):
        result.close()
        raise _ContractError("is a registration hook: it must not be async")
    raise _ContractError(f"must return a list, got {type(result).__name__}")


def _check_rpc_handlers(plugin: str, items: list[Any]) -> list[RpcHandler]:
    out = []
    for item in items:
        if not isinstance(item, RpcHandler):
            raise _ContractError(f"expected RpcHandler, got {type(item).__name__}")
        try:
            check_method_name(item.name)
        except InvalidArgumentError as exc:
            raise _ContractError(exc.message) from None
        if not item.name.startswith(f"{plugin}."):
            raise _ContractError(
                f"RPC method {item.name!r} must be named '{plugin}.<verb>' "
                f"(the plugin's entry-point name, then a dot)"
            )
        out.append(replace(item, plugin=plugin))
    names = [h.name for h in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _ContractError(f"RPC method(s) registered twice: {', '.join(dupes)}")
    return out


def _check_cli_commands(plugin: str, items: list[Any]) -> list[Any]:
    import click

    for item in items:
        if not isinstance(item, click.Command):
            raise _ContractError(f"expected a click.Command, got {type(item).__name__}")
        if item.name != plugin:
            raise _ContractError(
                f"CLI command {item.name!r} must be named {plugin!r} (return one click group "
                f"named after the plugin)"
            )
    if len(items) > 1:
        raise _ContractError("return one click group named after the plugin, not several")
    return items


def _check_config_sections(plugin: str, items: list[Any]) -> list[ConfigSection]:
    for item in items:
        if not isinstance(item, ConfigSection):
            raise _ContractError(f"expected ConfigSection, got {type(item).__name__}")
        if item.name != plugin:
            raise _ContractError(f"config section {item.name!r} must be named {plugin!r}")
        names = [opt.name for opt in item.options]
        if len(set(names)) != len(names):
            raise _ContractError(f"config section {plugin!r} declares an option twice")
    if len(items) > 1:
        raise _ContractError("declare one config section named after the plugin")
    return items


# ----------------------------------------------------------------------------- helpers
def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else ""


def _dist_version(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else ""


def make_plugin_manager(
    *,
    load: Iterable[str] | None = None,
    disable: Iterable[str] | None = None,
    plugins: Mapping[str, Any] | None = None,
) -> AspenPluginManager:
    """Build a plugin manager with the installed plugins (and ``plugins``, name -> object).

    ``load`` (default: ``$ASPEN_LOAD_PLUGINS``; unset = all, set but empty = none) selects
    which entry points load; ``disable`` (default: ``$ASPEN_DISABLE_PLUGINS``) excludes some.
    In-process ``plugins`` are always registered.
    """
    if load is None:
        load = split_names(os.environ.get(LOAD_ENV))
    if disable is None:
        disable = split_names(os.environ.get(DISABLE_ENV)) or ()
    pm = AspenPluginManager()
    for name, plugin in (plugins or {}).items():
        pm.add_plugin(name, plugin)
    pm.load_entry_points(load=load, disable=disable)
    return pm
