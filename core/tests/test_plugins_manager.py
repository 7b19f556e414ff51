"""The plugin manager: loading in isolation, selection by env, registration contracts."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import anyio
import click
import pytest

import aspen
from aspen.plugins.manager import AspenPluginManager, make_plugin_manager
from aspen.plugins.types import ConfigOption, ConfigSection, RpcHandler


async def _echo(ctx, params):
    return params


class Greeter:
    """A well-behaved in-process plugin."""

    def __init__(self, name: str = "greeter") -> None:
        self.name = name
        self.started: list[object] = []
        self.stopped: list[object] = []

    @aspen.hookimpl
    def aspen_rpc_handlers(self):
        return [RpcHandler(f"{self.name}.hello", _echo, doc="say hello")]

    @aspen.hookimpl
    def aspen_cli_commands(self):
        return [click.Group(self.name)]

    @aspen.hookimpl
    def aspen_config_sections(self):
        return [ConfigSection(self.name, (ConfigOption("greeting", str, "hi"),))]

    @aspen.hookimpl
    async def aspen_startup(self, node):
        self.started.append(node)

    @aspen.hookimpl
    def aspen_shutdown(self, node):
        self.stopped.append(node)


def _info(pm: AspenPluginManager, name: str):
    [info] = [i for i in pm.infos() if i.name == name]
    return info


@pytest.fixture
def no_env(monkeypatch):
    """No plugin selection from the environment."""
    monkeypatch.delenv("ASPEN_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("ASPEN_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def install(tmp_path, monkeypatch, no_env):
    """Install fake distributions (dist-info + module) on sys.path: install(name, source)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def _install(name: str, source: str, *, dist: str | None = None, ep: str | None = None):
        dist = dist or f"aspen-{name}"
        module = f"fake_{name}_{dist.replace('-', '_')}"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[aspen]\n{ep or name} = {module}\n")
        monkeypatch.delitem(sys.modules, module, raising=False)
        return module

    return _install


GOOD_SOURCE = """
    import aspen
    from aspen.plugins.types import RpcHandler

    async def _ping(ctx, params):
        return "pong"

    @aspen.hookimpl
    def aspen_rpc_handlers():
        return [RpcHandler("good.ping", _ping)]
"""


# ----------------------------------------------------------------------------- in-process
def test_in_process_plugin_loads_with_its_hooks(no_env):
    pm = make_plugin_manager(load=[], plugins={"greeter": Greeter()})
    info = _info(pm, "greeter")
    assert info.status == "loaded"
    assert info.error == ""
    assert info.distribution == "(in-process)"
    assert info.hooks == (
        "aspen_cli_commands",
        "aspen_config_sections",
        "aspen_rpc_handlers",
        "aspen_shutdown",
        "aspen_startup",
    )
    assert pm.loaded_names() == ["greeter"]


def test_rpc_handlers_are_tagged_with_the_plugin(no_env):
    pm = make_plugin_manager(load=[], plugins={"greeter": Greeter()})
    [handler] = pm.rpc_handlers()
    assert handler.name == "greeter.hello"
    assert handler.plugin == "greeter"
    assert handler.doc == "say hello"


def test_cli_commands_and_config_sections_are_collected(no_env):
    pm = make_plugin_manager(load=[], plugins={"a": Greeter("a"), "b": Greeter("b")})
    assert sorted(pm.cli_commands()) == ["a", "b"]
    assert [s.name for s in pm.config_sections()] == ["a", "b"]


def test_registration_hooks_run_once(no_env):
    calls = []

    class Counting:
        @aspen.hookimpl
        def aspen_rpc_handlers(self):
            calls.append(1)
            return []

    pm = make_plugin_manager(load=[], plugins={"counting": Counting()})
    pm.rpc_handlers()
    pm.rpc_handlers()
    assert calls == [1]


def test_handler_outside_the_plugin_namespace_fails_the_plugin(no_env):
    class Squatter:
        @aspen.hookimpl
        def aspen_rpc_handlers(self):
            return [RpcHandler("kv.put", _echo)]

    pm = make_plugin_manager(load=[], plugins={"squatter": Squatter(), "greeter": Greeter()})
    assert [h.name for h in pm.rpc_handlers()] == ["greeter.hello"]
    info = _info(pm, "squatter")
    assert info.status == "failed"
    assert "'kv.put' must be named 'squatter.<verb>'" in info.error
    assert not pm.has_plugin("squatter")


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (RpcHandler("bad.x", _echo), "must return a list, got RpcHandler"),
        (["bad.x"], "expected RpcHandler, got str"),
        ([RpcHandler("bad.", _echo)], "is not of the form"),
        ([RpcHandler("bad.x", _echo), RpcHandler("bad.x", _echo)], "registered twice: bad.x"),
    ],
)
def test_malformed_rpc_registrations_fail_the_plugin(no_env, result, error):
    class Bad:
        @aspen.hookimpl
        def aspen_rpc_handlers(self):
            return result

    pm = make_plugin_manager(load=[], plugins={"bad": Bad()})
    assert pm.rpc_handlers() == []
    assert _info(pm, "bad").status == "failed"
    assert error in _info(pm, "bad").error


def test_registration_hook_that_raises_fails_only_that_plugin(no_env):
    class Raising:
        @aspen.hookimpl
        def aspen_cli_commands(self):
            raise RuntimeError("boom")

    pm = make_plugin_manager(load=[], plugins={"raising": Raising(), "greeter": Greeter()})
    assert list(pm.cli_commands()) == ["greeter"]
    info = _info(pm, "raising")
    assert info.status == "failed"
    assert info.error == "aspen_cli_commands raised RuntimeError: boom"


def test_failure_in_one_hook_withdraws_the_plugins_other_contributions(no_env):
    class HalfBroken(Greeter):
        @aspen.hookimpl
        def aspen_config_sections(self):
            return [ConfigSection("someone-else")]

    pm = make_plugin_manager(load=[], plugins={"greeter": HalfBroken()})
    assert [h.name for h in pm.rpc_handlers()] == ["greeter.hello"]
    pm.config_sections()
    assert _info(pm, "greeter").status == "failed"
    assert "must be named 'greeter'" in _info(pm, "greeter").error
    assert pm.rpc_handlers() == []
    assert pm.subscribers("aspen_startup") == []


def test_cli_command_must_be_named_after_the_plugin(no_env):
    class Misnamed:
        @aspen.hookimpl
        def aspen_cli_commands(self):
            return [click.Command("other")]

    pm = make_plugin_manager(load=[], plugins={"misnamed": Misnamed()})
    assert pm.cli_commands() == {}
    assert "CLI command 'other' must be named 'misnamed'" in _info(pm, "misnamed").error


def test_async_registration_hook_is_refused(no_env):
    class Async:
        @aspen.hookimpl
        async def aspen_rpc_handlers(self):
            return []

    pm = make_plugin_manager(load=[], plugins={"async": Async()})
    assert pm.rpc_handlers() == []
    assert "must not be async" in _info(pm, "async").error


def test_unknown_hook_fails_the_plugin_marked_or_not(no_env):
    class Marked:
        @aspen.hookimpl
        def aspen_on_kv_events(self, event):  # typo: events
            pass

    class Unmarked:
        def aspen_startupp(self, node):  # typo, and no @hookimpl
            pass

    pm = make_plugin_manager(load=[], plugins={"marked": Marked(), "unmarked": Unmarked()})
    assert _info(pm, "marked").status == "failed"
    assert _info(pm, "marked").error == "unknown hook(s) aspen_on_kv_events"
    assert _info(pm, "unmarked").error == "unknown hook(s) aspen_startupp"
    assert pm.get_plugins() == set()


def test_unmarked_known_hook_is_used(no_env):
    class Plain:
        def aspen_rpc_handlers(self):
            return [RpcHandler("plain.x", _echo)]

    pm = make_plugin_manager(load=[], plugins={"plain": Plain()})
    assert [h.name for h in pm.rpc_handlers()] == ["plain.x"]


def test_hook_with_wrong_arguments_fails_the_plugin(no_env):
    class WrongArgs:
        @aspen.hookimpl
        def aspen_startup(self, node, extra):
            pass

    pm = make_plugin_manager(load=[], plugins={"wrong": WrongArgs()})
    info = _info(pm, "wrong")
    assert info.status == "failed"
    assert info.error.startswith("invalid hook implementation: PluginValidationError")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("kv", "reserved by aspen-core"),
        ("core", "reserved by aspen-core"),
        ("Bad Name", "invalid plugin name"),
    ],
)
def test_bad_or_reserved_names_are_refused(no_env, name, error):
    pm = make_plugin_manager(load=[], plugins={name: Greeter(name)})
    assert _info(pm, name).status == "failed"
    assert error in _info(pm, name).error


def test_mark_failed_unregisters(no_env):
    pm = make_plugin_manager(load=[], plugins={"greeter": Greeter()})
    pm.mark_failed("greeter", "refused by the CLI")
    assert _info(pm, "greeter").status == "failed"
    assert _info(pm, "greeter").error == "refused by the CLI"
    assert pm.rpc_handlers() == []


# ----------------------------------------------------------------------------- subscribers
def test_subscribers_call_each_plugin_with_its_own_arguments(no_env):
    seen = []

    class EventOnly:
        @aspen.hookimpl
        def aspen_on_kv_event(self, event):
            seen.append(("event-only", event))

    class Both:
        @aspen.hookimpl
        def aspen_on_kv_event(self, event, node):
            seen.append(("both", event, node))

    pm = make_plugin_manager(load=[], plugins={"one": EventOnly(), "two": Both()})
    subs = pm.subscribers("aspen_on_kv_event")
    assert [(s.plugin, s.hook) for s in subs] == [
        ("one", "aspen_on_kv_event"),
        ("two", "aspen_on_kv_event"),
    ]
    for sub in subs:
        sub(event="E", node="N")
    assert seen == [("event-only", "E"), ("both", "E", "N")]
    assert pm.subscribers("aspen_on_raft_event") == []
    with pytest.raises(ValueError, match="no such hook"):
        pm.subscribers("aspen_nope")


# ----------------------------------------------------------------------------- lifecycle
def test_lifecycle_runs_in_order_and_isolates_failures(no_env):
    order = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        @aspen.hookimpl
        async def aspen_startup(self, node):
            order.append(("start", self.name))

        @aspen.hookimpl
        def aspen_shutdown(self, node):
            order.append(("stop", self.name))

    class Crashing:
        @aspen.hookimpl
        async def aspen_startup(self, node):
            raise ValueError("no database")

    plugins = {"a": Recorder("a"), "crash": Crashing(), "b": Recorder("b")}
    pm = make_plugin_manager(load=[], plugins=plugins)

    async def main():
        await pm.run_lifecycle("aspen_startup", "node")
        await pm.run_lifecycle("aspen_shutdown", "node")

    anyio.run(main)
    assert order == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]
    assert _info(pm, "crash").status == "failed"
    assert _info(pm, "crash").error == "aspen_startup raised ValueError: no database"


def test_lifecycle_hook_timeout_fails_the_plugin(no_env, monkeypatch):
    monkeypatch.setattr("aspen.plugins.manager.LIFECYCLE_HOOK_TIMEOUT_SECONDS", 0.05)

    class Slow:
        @aspen.hookimpl
        async def aspen_startup(self, node):
            await anyio.sleep(10)

    pm = make_plugin_manager(load=[], plugins={"slow": Slow(), "greeter": Greeter()})
    anyio.run(pm.run_lifecycle, "aspen_startup", "node")
    assert _info(pm, "slow").error == "aspen_startup did not finish within 0.05s"
    assert _info(pm, "greeter").status == "loaded"


def test_run_lifecycle_rejects_other_hooks(no_env):
    pm = make_plugin_manager(load=[])
    with pytest.raises(ValueError, match="not a lifecycle hook"):
        anyio.run(pm.run_lifecycle, "aspen_on_kv_event", None)


# ----------------------------------------------------------------------------- entry points
def test_entry_point_plugin_loads_with_distribution_metadata(install):
    module = install("good", GOOD_SOURCE)
    pm = make_plugin_manager(load=["good"])
    info = _info(pm, "good")
    assert (info.status, info.distribution, info.version) == ("loaded", "aspen-good", "1.2.3")
    assert info.entry_point == module
    assert [h.name for h in pm.rpc_handlers()] == ["good.ping"]


def test_plugin_that_fails_to_import_is_recorded_not_raised(install):
    install("broken", "raise ImportError('needs libfoo')\n")
    install("good", GOOD_SOURCE)
    pm = make_plugin_manager(load=["broken", "good"])
    assert _info(pm, "broken").status == "failed"
    assert _info(pm, "broken").error == "import failed: ImportError: needs libfoo"
    assert _info(pm, "good").status == "loaded"


def test_plugin_that_exits_at_import_is_recorded(install):
    install("quitter", "import sys\nsys.exit(3)\n")
    pm = make_plugin_manager(load=["quitter"])
    assert _info(pm, "quitter").error == "import failed: SystemExit: 3"


def test_load_env_selects_plugins(install, monkeypatch):
    install("good", GOOD_SOURCE)
    install("other", "")
    monkeypatch.setenv("ASPEN_LOAD_PLUGINS", "good, missing")
    pm = make_plugin_manager()
    assert _info(pm, "good").status == "loaded"
    assert _info(pm, "other").status == "disabled"
    assert _info(pm, "other").error == "not listed in ASPEN_LOAD_PLUGINS"
    assert _info(pm, "missing").status == "failed"
    assert "no installed plugin named 'missing'" in _info(pm, "missing").error


def test_load_env_set_but_empty_loads_none(install, monkeypatch):
    install("good", GOOD_SOURCE)
    monkeypatch.setenv("ASPEN_LOAD_PLUGINS", "")
    pm = make_plugin_manager()
    assert _info(pm, "good").status == "disabled"
    assert pm.loaded_names() == []


def test_disable_env_and_keyword_override(install, monkeypatch):
    install("good", GOOD_SOURCE)
    monkeypatch.setenv("ASPEN_DISABLE_PLUGINS", "good")
    assert _info(make_plugin_manager(), "good").status == "disabled"
    assert _info(make_plugin_manager(), "good").error == "disabled by ASPEN_DISABLE_PLUGINS"
    assert _info(make_plugin_manager(disable=[]), "good").status == "loaded"
    monkeypatch.setenv("ASPEN_LOAD_PLUGINS", "")
    assert _info(make_plugin_manager(load=["good"], disable=[]), "good").status == "loaded"


def test_two_distributions_claiming_one_name(install):
    install("dup", GOOD_SOURCE.replace("good.", "dup."), dist="aspen-dup-a")
    install("dup", GOOD_SOURCE.replace("good.", "dup."), dist="aspen-dup-b")
    pm = make_plugin_manager(load=["dup"])
    infos = [i for i in pm.infos() if i.name == "dup"]
    assert [(i.distribution, i.status) for i in infos] == [
        ("aspen-dup-a", "loaded"),
        ("aspen-dup-b", "failed"),
    ]
    assert infos[1].error == "plugin name 'dup' is already taken by aspen-dup-a"


def test_in_process_plugin_overrides_an_installed_one(install):
    install("greeter", GOOD_SOURCE)
    pm = make_plugin_manager(load=["greeter"], plugins={"greeter": Greeter()})
    [info] = [i for i in pm.infos() if i.status != "disabled"]
    assert info.distribution == "(in-process)"
    assert [h.name for h in pm.rpc_handlers()] == ["greeter.hello"]


def test_plugin_info_json_shape(no_env):
    pm = make_plugin_manager(load=[], plugins={"greeter": Greeter()})
    data = _info(pm, "greeter").to_json()
    assert set(data) == {
        "name",
        "distribution",
        "version",
        "status",
        "hooks",
        "error",
        "entry_point",
    }
    assert isinstance(data["hooks"], list)


def test_module_plugin(tmp_path: Path, no_env):
    module = type(sys)("modplugin")
    exec(textwrap.dedent(GOOD_SOURCE).replace("good.", "mod."), module.__dict__)
    pm = make_plugin_manager(load=[], plugins={"mod": module})
    assert [h.name for h in pm.rpc_handlers()] == ["mod.ping"]
