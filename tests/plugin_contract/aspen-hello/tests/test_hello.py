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


@pytest.mark.aspen_plugins("hello")
def test_on_a_cluster_only_the_leader_records_and_no_node_fails(cluster):
    """The subscriber runs on all three nodes; one record is written, and no follower's
    hook fails (writing on a follower raises NotLeaderError)."""
    with cluster.client() as c:
        revision = c.kv.put(b"k", b"v").revision
        seen = wait_for(lambda: c.kv.get(b"/_aspen/hello/seen/k"), timeout=10)
        assert seen.value == str(revision).encode()
    for i in range(1, cluster.nodes + 1):
        with cluster.client(i) as one:
            stats = wait_for(
                lambda one=one: _subscriber_after_both_puts(one.status()),
                timeout=10,
                message=f"node {i}'s subscriber handled both puts",
            )
            assert (stats["failed"], stats["last_error"]) == (0, "")
            record = one.kv.get(b"/_aspen/hello/seen/k", serializable=True)
            assert record is not None and record.version == 1, "recorded once, by the leader"
        assert "Traceback" not in cluster.log(i).read_text()


def _subscriber_after_both_puts(status: dict) -> dict | None:
    """The bus counters of hello's KV subscriber, once it was given both puts (the user's
    key and the record); ``None`` before."""
    for stats in status["bus"]:
        if (stats["plugin"], stats["hook"]) == ("hello", "aspen_on_kv_event"):
            handled = stats["delivered"] + stats["failed"] + stats["dropped"]
            return stats if handled >= 2 else None
    return None


def test_without_a_marker_every_installed_plugin_is_tried(pm):
    status = {info.name: info.status for info in pm.infos()}
    assert status == {"broken": "failed", "hello": "loaded"}
