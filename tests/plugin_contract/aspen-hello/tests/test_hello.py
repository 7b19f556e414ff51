"""aspen-hello's own tests, using the fixtures aspen-core gives plugin authors.

They run in the fresh venv of the contract test, where only aspen-core, this plugin, the
broken plugin and pytest are installed.
"""

from __future__ import annotations

import pytest

from aspen.testing import wait_for


@pytest.mark.aspen_plugins("hello")
def test_greet_over_rpc_and_cli(node, cli):
    with node.client() as c:
        assert c.call("hello.greet", {"name": "Bob"}) == {"greeting": "Hello, Bob!"}
    result = cli("hello", "greet", "Ann")
    assert (result.exit_code, result.stdout) == (0, "Hello, Ann!\n")


@pytest.mark.aspen_plugins("hello")
def test_records_the_keys_it_sees(node):
    with node.client() as c:
        revision = c.kv.put(b"k", b"v").revision
        seen = wait_for(lambda: c.kv.get(b"/_aspen/hello/seen/k"), timeout=5)
        assert seen.value == str(revision).encode()


def test_without_a_marker_every_installed_plugin_is_tried(pm):
    status = {info.name: info.status for info in pm.infos()}
    assert status == {"broken": "failed", "hello": "loaded"}
