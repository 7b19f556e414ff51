"""The node API plugins build on beyond unary calls: in-process streams, the cluster id,
and plugin options offered as ``aspen node start`` flags."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import aspen
from aspen.plugins.manager import make_plugin_manager
from aspen.plugins.types import ConfigOption, ConfigSection
from aspen.testing import CliInvoker


class KeyFilePlugin:
    """Declares one option offered as a start flag and one that is not."""

    @aspen.hookimpl
    def aspen_config_sections(self):
        return [
            ConfigSection(
                "keys",
                (
                    ConfigOption("key_file", Path, None, "Where the key is.", start_flag=True),
                    ConfigOption("strict", bool, False, "Refuse weak keys.", start_flag=True),
                    ConfigOption("hidden", str, ""),
                ),
            )
        ]


def test_start_flags_come_from_plugin_options() -> None:
    pm = make_plugin_manager(load=[], disable=(), plugins={"keys": KeyFilePlugin()})
    result = CliInvoker(pm, {})("node", "start", "--help")
    assert result.exit_code == 0, result.output
    assert "--key-file" in result.stdout and "ASPEN_KEYS_KEY_FILE" in result.stdout
    assert "--strict / --no-strict" in result.stdout
    assert "--hidden" not in result.stdout


def test_node_stream_yields_watch_items(node) -> None:
    api = node.node

    async def watch_one() -> dict:
        with anyio.fail_after(10):
            return await _watch_one()

    async def _watch_one() -> dict:
        items = api.stream("kv.watch", {"key": b"/s/", "end": b"/s0"})
        first = await items.__anext__()
        assert first["created"] is True
        await api.call("kv.put", {"key": b"/s/a", "value": b"1"})
        second = await items.__anext__()
        await items.aclose()
        return second

    got = node.call(watch_one)
    assert got["events"][0]["kv"]["key"] == b"/s/a"
    assert len(api.cluster_id) > 8
    assert api.is_leader and api.leader_id == api.id
    api.plugin_state("demo")["service"] = "x"
    assert api.plugin_state("demo") == {"service": "x"} and api.plugin_state("other") == {}


def test_a_running_node_is_the_documented_node_api(node) -> None:
    from aspen.node import NodeAPI

    assert NodeAPI is aspen.NodeAPI
    assert isinstance(node.node, aspen.NodeAPI)
    assert node.node.data_dir == node.data_dir and node.node.token == node.token


def test_node_stream_refuses_unary_methods(node) -> None:
    async def try_unary() -> None:
        async for _ in node.node.stream("kv.put", {}):
            pass

    with pytest.raises(aspen.errors.UnavailableError):
        node.call(try_unary)
