"""aspen.testing: the pm / node / cli fixtures with in-process plugins, wait_for and
async_wait_for."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pytest

import aspen
from aspen.cli import pass_client
from aspen.events import KvPut
from aspen.plugins.types import ConfigOption, ConfigSection, RpcHandler
from aspen.rpc.params import require_str
from aspen.testing import (
    async_wait_for,
    free_base_port,
    free_node_port,
    free_port,
    wait_for,
    waiting,
)
from aspen.testing.pytest_plugin import pm_from_marker
from aspen.testing.waiting import ephemeral_low
from aspen.transport.ports import PEER_PORT_OFFSET


class Echo:
    """An in-process plugin using every kind of hook."""

    def __init__(self) -> None:
        self.started = []
        self.seen: list[bytes] = []

    @aspen.hookimpl
    def aspen_rpc_handlers(self):
        async def shout(ctx, params):
            word = require_str(params, "word", max_len=50)
            return {"echo": word.upper() + ctx.node.config("echo")["suffix"]}

        return [RpcHandler("echo.shout", shout)]

    @aspen.hookimpl
    def aspen_config_sections(self):
        return [ConfigSection("echo", (ConfigOption("suffix", str, "!"),))]

    @aspen.hookimpl
    def aspen_cli_commands(self):
        @click.group("echo")
        def group():
            """Echo things."""

        @group.command()
        @click.argument("word")
        @pass_client
        def shout(client, word):
            click.echo(client.call("echo.shout", {"word": word})["echo"])

        return [group]

    @aspen.hookimpl
    async def aspen_startup(self, node):
        self.started.append(node.endpoint)

    @aspen.hookimpl
    def aspen_on_kv_event(self, event):
        if isinstance(event, KvPut):
            self.seen.append(event.kv.key)


ECHO = Echo()


@pytest.mark.aspen_plugins(echo=ECHO)
def test_pm_fixture_with_marker(pm):
    assert pm.loaded_names() == ["echo"]


@pytest.mark.aspen_plugins()
def test_empty_marker_loads_nothing(pm):
    assert pm.loaded_names() == []


@pytest.mark.aspen_plugins(echo=ECHO)
def test_node_serves_plugin_rpc_cli_config_and_events(node, cli, monkeypatch):
    assert node.endpoint in ECHO.started
    with node.client() as c:
        assert c.call("echo.shout", {"word": "hi"}) == {"echo": "HI!"}
        c.kv.put(b"probe", b"x")
        wait_for(lambda: b"probe" in ECHO.seen, timeout=5, message="subscriber saw probe")
    result = cli("echo", "shout", "bob")
    assert (result.exit_code, result.stdout) == (0, "BOB!\n")
    assert cli("kv", "get", "probe").stdout == "x"


def test_marker_names_must_be_strings():
    with pytest.raises(TypeError, match="installed plugin names"):
        pm_from_marker(pytest.mark.aspen_plugins(Echo()).mark)


def test_no_marker_loads_the_installed_plugins(monkeypatch):
    monkeypatch.setenv("ASPEN_LOAD_PLUGINS", "")
    assert pm_from_marker(None).loaded_names() == []


def test_wait_for_returns_the_value():
    values = iter([0, None, "ready"])
    assert wait_for(lambda: next(values), timeout=1, interval=0.001) == "ready"


def test_wait_for_times_out_with_a_message_and_the_last_error():
    def flaky():
        raise KeyError("not yet")

    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"within 0\.05s: the thing") as info:
        wait_for(flaky, timeout=0.05, interval=0.01, message="the thing", ignore=(KeyError,))
    assert time.monotonic() - start < 1
    assert isinstance(info.value.__cause__, KeyError)


def test_wait_for_propagates_unexpected_errors():
    with pytest.raises(ZeroDivisionError):
        wait_for(lambda: 1 / 0, timeout=1)


@pytest.mark.anyio
async def test_async_wait_for_polls_plain_and_awaitable_predicates():
    values = iter([0, None, "ready"])
    assert await async_wait_for(lambda: next(values), timeout=1, interval=0.001) == "ready"
    calls = []

    async def probe() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert await async_wait_for(probe, timeout=1, interval=0.001) == 3


@pytest.mark.anyio
async def test_async_wait_for_times_out_with_a_message_and_the_last_error():
    async def flaky() -> None:
        raise KeyError("not yet")

    with pytest.raises(AssertionError, match=r"within 0\.05s: the thing") as info:
        await async_wait_for(flaky, timeout=0.05, message="the thing", ignore=(KeyError,))
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(ZeroDivisionError):
        await async_wait_for(lambda: 1 / 0, timeout=1)


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_picked_ports_lie_below_the_ephemeral_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_base_port and free_node_port never hand out a port the kernel may give an
    outgoing connection, even asked for a range that overlaps it."""
    real = Path(waiting.EPHEMERAL_RANGE_FILE).read_text().split()[0]
    assert ephemeral_low() == int(real)
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("21000\t60999\n")
    monkeypatch.setattr(waiting, "EPHEMERAL_RANGE_FILE", str(ranges))
    assert ephemeral_low() == 21000
    for _ in range(20):
        base = free_base_port(3, high=60000)
        assert base >= 20000 and base + PEER_PORT_OFFSET + 3 < 21000
        port = free_node_port(high=60000)
        assert port >= 20000 and port + 1 < 21000
    ranges.write_text("1024\t60999\n")
    with pytest.raises(RuntimeError, match="below the ephemeral range"):
        free_base_port(3)
