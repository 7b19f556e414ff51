"""The plugin boundary on a real node: a plugin that fails at start-up is unloaded (its
methods answer ``unavailable``, it gets no events, its tasks stop, its shutdown hook is not
called), pluggy options aspen cannot honour are refused, and ``aspen plugins`` shows what
the nodes loaded."""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import pluggy
import pytest

import aspen
from aspen.errors import UnavailableError
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.plugins.types import RpcHandler
from aspen.testing import CliInvoker, free_port, wait_for


class Recorder:
    """A plugin that serves ``<name>.ping`` and ``<name>.feed``, records its events, and
    starts a background task in ``aspen_startup``; ``fail`` makes that start-up raise."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.events: list[Any] = []
        self.sync_events: list[Any] = []
        self.task_started = threading.Event()
        self.task_cancelled = threading.Event()
        self.shutdown_called = False

    @aspen.hookimpl
    def aspen_rpc_handlers(self) -> list[RpcHandler]:
        async def ping(ctx: Any, params: dict[str, Any]) -> Any:
            return {"pong": self.name}

        async def feed(ctx: Any, params: dict[str, Any]) -> Any:
            yield {"item": 1}

        return [
            RpcHandler(f"{self.name}.ping", ping),
            RpcHandler(f"{self.name}.feed", feed, streaming=True),
        ]

    @aspen.hookimpl
    async def aspen_startup(self, node: Any) -> None:
        running = anyio.Event()
        node.spawn(self._background, running, name=f"{self.name}-background")
        await running.wait()
        if self.fail:
            raise RuntimeError("cannot open its database")

    async def _background(self, running: anyio.Event) -> None:
        self.task_started.set()
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.task_cancelled.set()

    @aspen.hookimpl
    def aspen_shutdown(self, node: Any) -> None:
        self.shutdown_called = True

    @aspen.hookimpl
    async def aspen_on_kv_event(self, event: Any) -> None:
        self.events.append(event)

    @aspen.hookimpl
    def aspen_on_raft_event(self, event: Any) -> None:
        self.sync_events.append(event)


def _start(tmp_path: Any, **plugins: Any) -> tuple[NodeThread, Any]:
    pm = make_plugin_manager(load=[], disable=(), plugins=plugins)
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    return NodeThread(config, pm).start(), pm


def test_a_plugin_whose_startup_raises_is_unloaded(tmp_path) -> None:
    """issue 9: it was shown as failed but kept serving its methods and receiving events."""
    broken, steady = Recorder("broken", fail=True), Recorder("steady")
    running, pm = _start(tmp_path, broken=broken, steady=steady)
    try:
        status = {i.name: i for i in pm.infos()}
        assert status["broken"].status == "failed"
        assert status["broken"].error == (
            "aspen_startup raised RuntimeError: cannot open its database"
        )
        assert status["steady"].status == "loaded"
        with running.client() as c:
            with pytest.raises(UnavailableError) as unary:
                c.call("broken.ping")
            assert "plugin 'broken' failed on this node and is unloaded" in unary.value.message
            assert "RuntimeError: cannot open its database" in unary.value.message
            assert unary.value.details["plugin"] == "broken"
            with pytest.raises(UnavailableError, match="plugin 'broken' failed"):
                list(c.stream("broken.feed"))
            assert c.call("steady.ping") == {"pong": "steady"}
            assert list(c.stream("steady.feed")) == [{"item": 1}]

            for i in range(5):
                c.kv.put(f"/k/{i}".encode(), b"v")
            wait_for(lambda: len(steady.events) >= 5, timeout=10, message="steady's events")
            bus = {(s["plugin"], s["hook"]) for s in c.status()["bus"]}
            answer = c.call("node.plugins")
        assert broken.events == []  # (it may have seen the election before it started)
        assert not {("broken", "aspen_on_kv_event"), ("broken", "aspen_on_raft_event")} & bus
        assert ("steady", "aspen_on_kv_event") in bus
        # the task it started before failing is cancelled; the healthy one's keeps running
        wait_for(broken.task_cancelled.is_set, timeout=10, message="broken's task cancelled")
        assert steady.task_started.is_set() and not steady.task_cancelled.is_set()
        plugins = {p["name"]: p for p in answer["plugins"]}
        assert answer["node_id"] == running.node.id
        assert plugins["broken"]["status"] == "failed"
        assert "cannot open its database" in plugins["broken"]["error"]
    finally:
        running.stop()
    # failed means unloaded: its shutdown hook is not called, the healthy one's is
    assert not broken.shutdown_called and steady.shutdown_called


def test_a_plugin_failing_after_its_task_was_scheduled_never_runs_it(tmp_path) -> None:
    """A task spawned in a failing ``aspen_startup`` does not start after the failure."""

    class SpawnsThenFails:
        def __init__(self) -> None:
            self.ran = threading.Event()

        @aspen.hookimpl
        async def aspen_startup(self, node: Any) -> None:
            async def work() -> None:
                self.ran.set()

            node.spawn(work)
            raise ValueError("bad config")

    plugin = SpawnsThenFails()
    running, pm = _start(tmp_path, spawner=plugin)
    try:
        assert {i.name: i.status for i in pm.infos()}["spawner"] == "failed"
        with running.client() as c:
            c.kv.put(b"k", b"v")  # the loop has run well past the spawn
    finally:
        running.stop()
    assert not plugin.ran.is_set()


hookimpl = aspen.hookimpl


class _Ordered:
    @hookimpl(tryfirst=True)
    def aspen_rpc_handlers(self) -> list[RpcHandler]:
        return []


class _Last:
    @hookimpl(trylast=True)
    def aspen_on_kv_event(self, event: Any) -> None:
        pass


class _Wrapper:
    @hookimpl(wrapper=True)
    def aspen_on_kv_event(self, event: Any) -> Any:
        return (yield)


class _HookWrapper:
    @hookimpl(hookwrapper=True)
    def aspen_startup(self, node: Any) -> Any:
        yield


class _FirstResult:
    @pluggy.HookspecMarker("aspen")(firstresult=True)
    def aspen_on_kv_event(self, event: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (_Ordered(), "aspen_rpc_handlers uses hookimpl option(s) tryfirst, which aspen does not"),
        (_Last(), "aspen_on_kv_event uses hookimpl option(s) trylast"),
        (_Wrapper(), "aspen_on_kv_event uses hookimpl option(s) wrapper"),
        (_HookWrapper(), "aspen_startup uses hookimpl option(s) hookwrapper"),
        (_FirstResult(), "aspen_on_kv_event is marked as a hookspec (firstresult/historic)"),
    ],
)
def test_hookimpl_options_aspen_cannot_honour_are_refused(plugin, message) -> None:
    pm = make_plugin_manager(load=[], disable=(), plugins={"opts": plugin})
    [info] = [i for i in pm.infos() if i.name == "opts"]
    assert info.status == "failed"
    assert info.error.startswith("invalid hook implementation: PluginValidationError: ")
    assert message in info.error
    assert pm.loaded_names() == [] and not pm.has_plugin("opts")


def test_plain_hookimpl_options_still_load() -> None:
    class Fine:
        @hookimpl(optionalhook=True)
        def aspen_on_kv_event(self, event: Any) -> None:
            pass

    pm = make_plugin_manager(load=[], disable=(), plugins={"fine": Fine()})
    assert pm.loaded_names() == ["fine"]


def test_aspen_plugins_shows_what_the_nodes_loaded(tmp_path) -> None:
    """``aspen plugins`` asks the nodes; the local CLI would list ``broken`` as loaded."""
    running, _ = _start(tmp_path, broken=Recorder("broken", fail=True))
    local_pm = make_plugin_manager(load=[], disable=(), plugins={"broken": Recorder("broken")})
    env = {"ASPEN_ENDPOINT": running.endpoint, "ASPEN_TOKEN": running.token}
    cli = CliInvoker(local_pm, env)
    try:
        result = cli("plugins", "--json")
        assert result.exit_code == 0, result.output
        [row] = [r for r in json.loads(result.stdout) if r["status"] != "disabled"]
        assert (row["view"], row["node"], row["endpoint"]) == (
            "node",
            running.node.id,
            running.endpoint,
        )
        assert (row["name"], row["status"]) == ("broken", "failed")
        text = cli("plugins").stdout.splitlines()
        assert text[0].startswith(
            f"Plugins of the nodes (1 member asked through {running.endpoint}"
        )
        assert text[1].split()[:2] == ["NODE", "ENDPOINT"]
        [line] = [line for line in text if " broken " in line]
        assert "failed" in line and "cannot open its database" in line
        rows = json.loads(cli("plugins", "--local", "--json").stdout)
        [local] = [r for r in rows if r["name"] == "broken"]
        assert (local["view"], local["status"]) == ("local", "loaded")
    finally:
        running.stop()


def test_aspen_plugins_falls_back_to_the_local_view(tmp_path) -> None:
    pm = make_plugin_manager(load=[], disable=(), plugins={"steady": Recorder("steady")})
    nobody = f"127.0.0.1:{free_port()}"
    cli = CliInvoker(pm, {"ASPEN_ENDPOINT": nobody, "ASPEN_TOKEN": "aspen1.x.y"})
    result = cli("plugins")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"Plugins of this installation (local view: no node answered at {nobody}"
    )
    assert "steady" in result.stdout and "loaded" in result.stdout
    no_token = CliInvoker(pm, {"ASPEN_ENDPOINT": nobody, "ASPEN_DATA_DIR": str(tmp_path)})
    rows = json.loads(no_token("plugins", "--json").stdout)
    [row] = [r for r in rows if r["status"] != "disabled"]
    assert (row["view"], row["name"]) == ("local", "steady")
