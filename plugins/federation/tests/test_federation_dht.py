"""Three clusters (real node processes) find each other on a private Mainline DHT on
loopback (libtorrent sessions with no routers), by key alone; trust and shares decide what
a remote cluster may be granted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

import aspen
from aspen.errors import UnauthorizedError
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, LocalCluster, local_cluster, wait_for

pytest.importorskip(
    "libtorrent", reason="the libtorrent wheel (pip install libtorrent) is not installed"
)

from aspen_federation.dht import DhtDiscovery

#: Standalone DHT nodes in the test process, besides one per cluster node.
HELPERS = 4
ENV = {
    "ASPEN_FEDERATION_DHT_LISTEN": "127.0.0.1:0",
    "ASPEN_FEDERATION_DHT_PRIVATE": "true",
    "ASPEN_FEDERATION_REPUBLISH_SECONDS": "1",
}


@pytest.fixture(scope="module")
def helpers() -> Iterator[list[DhtDiscovery]]:
    """A few plain DHT nodes, joined to each other."""
    nodes = [DhtDiscovery("127.0.0.1:0", private=True) for _ in range(HELPERS)]
    for node in nodes:
        for other in nodes:
            if other is not node:
                node.add_contact("127.0.0.1", other.listen_port())
    yield nodes
    for node in nodes:
        node.close()


@pytest.fixture(scope="module")
def clusters(
    tmp_path_factory: pytest.TempPathFactory, helpers: list[DhtDiscovery]
) -> Iterator[dict[str, LocalCluster]]:
    """Clusters A, B and C (one node each), each node on the private DHT."""
    with ExitStack() as stack:
        found = {}
        for name in "abc":
            env = {**ENV, "ASPEN_FEDERATION_NAME": f"cluster-{name}"}
            found[name] = stack.enter_context(
                local_cluster(
                    tmp_path_factory.mktemp(name), 1, plugins=["federation", "forge"], env=env
                )
            )
            found[name].leader_index()
        yield found


def _cli(cluster: LocalCluster) -> CliInvoker:
    pm = make_plugin_manager(load=["federation", "forge"])
    return CliInvoker(pm, {"ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token})


def _json(cluster: LocalCluster, *args: str) -> Any:
    result = _cli(cluster)(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def joined(
    clusters: dict[str, LocalCluster], helpers: list[DhtDiscovery]
) -> dict[str, dict[str, Any]]:
    """Every cluster joined to the helpers with ``dht-bootstrap``; their statuses."""
    for cluster in clusters.values():
        for helper in helpers:
            result = _cli(cluster)(
                "federation", "dht-bootstrap", f"127.0.0.1:{helper.listen_port()}"
            )
            assert result.exit_code == 0, result.output
    statuses = {}
    for name, cluster in clusters.items():
        wait_for(
            lambda c=cluster: _json(c, "federation", "status")["dht_nodes"] >= HELPERS, timeout=30
        )
        statuses[name] = _json(cluster, "federation", "status")
    return statuses


def _discover(cluster: LocalCluster, key: str) -> Any:
    result = _cli(cluster)("federation", "discover", key, "--json")
    return json.loads(result.output) if result.exit_code == 0 else None


def test_status_shows_the_cluster_identity(joined: dict[str, dict[str, Any]]) -> None:
    status = joined["a"]
    assert {"cluster_key", "name", "dht_nodes", "peers"} <= set(status)
    assert status["name"] == "cluster-a" and len(status["cluster_key"]) == 64
    assert len({s["cluster_key"] for s in joined.values()}) == 3


def test_clusters_discover_each_other_by_key_alone(
    clusters: dict[str, LocalCluster], joined: dict[str, dict[str, Any]]
) -> None:
    a_key = joined["a"]["cluster_key"]
    found = wait_for(lambda: _discover(clusters["b"], a_key), timeout=60)
    assert found["cluster_key"] == a_key and found["name"] == "cluster-a"
    assert found["endpoints"] == [clusters["a"].endpoints.split(",")[0]]
    # an unknown key: exit 1
    result = _cli(clusters["b"])("federation", "discover", "00" * 32, "--json")
    assert result.exit_code == 1


def test_a_dht_node_going_away_does_not_stop_discovery(
    clusters: dict[str, LocalCluster],
    joined: dict[str, dict[str, Any]],
    helpers: list[DhtDiscovery],
) -> None:
    helpers[0].close()
    helpers.pop(0)
    c_key = joined["c"]["cluster_key"]
    found = wait_for(lambda: _discover(clusters["a"], c_key), timeout=60)
    assert found["name"] == "cluster-c"


def test_a_shared_resource_announced_and_granted_by_trust(
    clusters: dict[str, LocalCluster], joined: dict[str, dict[str, Any]]
) -> None:
    a, b_key, c_key = clusters["a"], joined["b"]["cluster_key"], joined["c"]["cluster_key"]
    cli = _cli(a)
    # not shared: nobody is granted
    refused = cli("federation", "grant", b_key, "forge", "acme/widgets")
    assert refused.exit_code != 0 and "not shared" in refused.output
    assert cli("federation", "share", "forge", "acme/widgets", "--mode", "public").exit_code == 0
    assert cli("federation", "trust", c_key, "--level", "blocked").exit_code == 0
    granted = _json(a, "federation", "grant", b_key, "forge", "acme/widgets")
    assert granted["capabilities"] == ["forge:read:acme/widgets"]
    # blocked wins over public
    assert cli("federation", "grant", c_key, "forge", "acme/widgets").exit_code != 0
    # the grant reads that repository only
    with (
        aspen.connect(a.endpoints, token=granted["token"]) as remote,
        pytest.raises(UnauthorizedError),
    ):
        remote.kv.get("/anything")
    # an allow-list resource is refused to a cluster that is not trusted and listed
    share = cli(
        "federation", "share", "forge", "acme/private", "--mode", "allow-list", "--allow", b_key
    )
    assert share.exit_code == 0, share.output
    assert cli("federation", "grant", b_key, "forge", "acme/private").exit_code != 0
    assert cli("federation", "trust", b_key, "--level", "trusted").exit_code == 0
    assert cli("federation", "grant", b_key, "forge", "acme/private").exit_code == 0

    # the re-published announcement lists the public share, as B sees it through the DHT
    def shares() -> Any:
        found = _discover(clusters["b"], joined["a"]["cluster_key"])
        return found if found and "forge:acme/widgets" in found["shares"] else None

    assert "forge:acme/private" not in wait_for(shares, timeout=60)["shares"]
    peers = {p["cluster_key"]: p["level"] for p in _json(a, "federation", "status")["peers"]}
    assert peers == {b_key: "trusted", c_key: "blocked"}


def test_trust_requests_queue_for_an_operator(
    clusters: dict[str, LocalCluster], joined: dict[str, dict[str, Any]]
) -> None:
    b, c = clusters["b"], clusters["c"]
    document = _json(c, "federation", "identity")["document"]
    assert _cli(b)("federation", "request", document).exit_code == 0
    pending = _json(b, "federation", "requests")["requests"]
    assert [r["cluster_key"] for r in pending] == [joined["c"]["cluster_key"]]
    assert pending[0]["name"] == "cluster-c"
    # a tampered document is refused
    tampered = document[:-2] + ("00" if document[-2:] != "00" else "01")
    assert _cli(b)("federation", "request", tampered).exit_code != 0
    assert _cli(b)("federation", "accept", joined["c"]["cluster_key"]).exit_code == 0
    assert _json(b, "federation", "requests")["requests"] == []
    peers = {p["cluster_key"]: p["level"] for p in _json(b, "federation", "status")["peers"]}
    assert peers[joined["c"]["cluster_key"]] == "trusted"
