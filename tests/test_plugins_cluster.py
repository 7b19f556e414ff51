"""``aspen plugins`` on a real 2-node cluster of node processes: it shows what every node
loaded (``node.plugins`` on each member), not the CLI's own view, and a member that does
not answer as ``unreachable``."""

from __future__ import annotations

import json

import pytest

from aspen.node.devcluster import DevCluster
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, free_base_port

pytestmark = pytest.mark.slow


def test_aspen_plugins_asks_every_member(tmp_path) -> None:
    c = DevCluster(tmp_path / "c", 2, free_base_port(2), env={"ASPEN_LOAD_PLUGINS": "hooks"})
    try:
        c.up()
        # the CLI itself loads no plugin: what it prints comes from the nodes
        cli = CliInvoker(
            make_plugin_manager(load=[]),
            {"ASPEN_ENDPOINT": c.client_endpoint(1), "ASPEN_TOKEN": c.token},
        )
        result = cli("plugins", "--json")
        assert result.exit_code == 0, result.output
        hooks = [r for r in json.loads(result.stdout) if r["name"] == "hooks"]
        assert sorted(r["endpoint"] for r in hooks) == [c.client_endpoint(1), c.client_endpoint(2)]
        assert {(r["view"], r["status"]) for r in hooks} == {("node", "loaded")}
        assert len({r["node"] for r in hooks}) == 2

        c.kill(2)
        rows = json.loads(cli("plugins", "--json").stdout)
        [down] = [r for r in rows if r["status"] == "unreachable"]
        assert down["endpoint"] == c.client_endpoint(2) and down["error"]
        assert [r["endpoint"] for r in rows if r["name"] == "hooks"] == [c.client_endpoint(1)]
    finally:
        c.down()
