"""Three clusters (real node processes) find each other on a private Mainline DHT on
loopback (libtorrent sessions with no routers), by key alone; trust and shares decide what
a remote cluster may be granted."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import aspen
from aspen.errors import UnauthorizedError
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, LocalCluster, local_cluster, wait_for

pytest.importorskip(
    "libtorrent", reason="the libtorrent wheel (pip install libtorrent) is not installed"
)

from federation_support import synced_kv

from aspen_federation.dht import DhtDiscovery

#: Standalone DHT nodes in the test process, besides one per cluster node.
HELPERS = 4
ENV = {
    "ASPEN_FEDERATION_DHT_LISTEN": "127.0.0.1:0",
    "ASPEN_FEDERATION_DHT_PRIVATE": "true",
    "ASPEN_FEDERATION_REPUBLISH_SECONDS": "1",
    "ASPEN_FORGE_HTTP_LISTEN": "127.0.0.1:0",
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

    # C, now trusted by B, gossips to B with the federation:gossip token B gave it; the
    # message lands in B's event journal; from A (not trusted by B) it is refused
    with b.client() as cb:
        gossip_token = cb.call("token.create", {"capabilities": ["federation:gossip"]})["token"]
    b_endpoint = b.endpoints.split(",")[0]
    told = _cli(c)(
        "federation", "tell", b_endpoint, "ref.updated", "acme/w", "--token", gossip_token
    )
    assert told.exit_code == 0, told.output
    with b.client() as cb:
        events = cb.events.read(0, match="federation.gossip")["events"]
    assert [e["subject"] for e in events] == [joined["c"]["key_id"]]
    # B's status shows when it last heard from C (the gossip)
    seen = {p["cluster_key"]: p["last_seen"] for p in _json(b, "federation", "status")["peers"]}
    assert seen[joined["c"]["cluster_key"]] > 0
    untrusted = _cli(clusters["a"])(
        "federation", "tell", b_endpoint, "ref.updated", "acme/w", "--token", gossip_token
    )
    assert untrusted.exit_code != 0 and "not trusted" in untrusted.output


def _git(home: Path, *args: str, token: str | None = None, cwd: Path | None = None) -> str:
    """``git ARGS`` with no user config, never prompting; its stdout."""
    env = {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    extra = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
    done = subprocess.run(
        ["git", *extra, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"git {args}: {done.stdout}{done.stderr}"
    return done.stdout


def _commit(home: Path, work: Path, text: str) -> None:
    (work / "file.txt").write_text(text)
    _git(home, "add", "file.txt", cwd=work)
    _git(home, "commit", "-q", "-m", text, cwd=work)


def _refs(cluster: LocalCluster, repo: str) -> dict[str, str]:
    with cluster.client() as c:
        return dict(c.call("forge.repo_show", {"repo": repo})["refs"])


def _objects(home: Path, repo: Path) -> set[str]:
    return set(_git(home, "rev-list", "--objects", "--all", cwd=repo).split())


def test_b_syncs_a_shared_repository_verified(
    clusters: dict[str, LocalCluster], joined: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    a, b = clusters["a"], clusters["b"]
    a_key, b_key, c_key = (joined[n]["cluster_key"] for n in "abc")
    a_id = joined["a"]["key_id"]
    home, work = tmp_path / "home", tmp_path / "work"
    with a.client() as c:
        c.call("forge.repo_create", {"repo": "acme/synced", "private": True})
        a_url = c.call("forge.repo_show", {"repo": "acme/synced"})["clone_url"]
    _git(home, "init", "-q", "-b", "main", str(work))
    _commit(home, work, "one")
    _git(home, "push", "-q", a_url, "main", token=a.token, cwd=work)
    assert _json(a, "federation", "share", "forge", "acme/synced", "--mode", "public")
    token = _json(a, "federation", "grant", b_key, "forge", "acme/synced")["token"]

    def sync(key: str = a_key, **extra: str) -> Any:
        args = ["federation", "sync", key, "forge", "acme/synced", "--token", token]
        for option, value in extra.items():
            args += [f"--{option}", value]
        return _cli(b)(*args, "--json")

    # a ref list verified against another cluster's key is refused; nothing is written
    wrong = sync(c_key, endpoint=a.endpoints.split(",")[0])
    assert wrong.exit_code != 0 and "bad signature" in wrong.output
    first = sync()
    assert first.exit_code == 0, first.output
    mirrored = {k: v for k, v in _refs(b, "acme/synced").items() if k.startswith("refs/remotes/")}
    origin = _refs(a, "acme/synced")
    assert mirrored == {f"refs/remotes/{a_id}/{k[5:]}": v for k, v in origin.items()}

    # B's own branch in the same repository is never touched by a sync
    with b.client() as c:
        b_url = c.call("forge.repo_show", {"repo": "acme/synced"})["clone_url"]
    local = tmp_path / "local"
    _git(home, "init", "-q", "-b", "main", str(local))
    _commit(home, local, "b's own")
    _git(home, "push", "-q", b_url, "main", token=b.token, cwd=local)
    b_main = _refs(b, "acme/synced")["refs/heads/main"]

    # A moves on; B re-syncs (incrementally: the staging store has the old objects)
    _commit(home, work, "two")
    _git(home, "push", "-q", a_url, "main", token=a.token, cwd=work)
    assert sync().exit_code == 0
    assert sync().exit_code == 0  # idempotent
    after = _refs(b, "acme/synced")
    assert after[f"refs/remotes/{a_id}/heads/main"] == _refs(a, "acme/synced")["refs/heads/main"]
    assert after["refs/heads/main"] == b_main

    # a clone from B holds A's objects under the remote namespace, and fsck is clean
    clone = tmp_path / "clone"
    _git(home, "init", "-q", "--bare", str(clone))
    _git(
        home,
        "fetch",
        "-q",
        b_url,
        f"+refs/remotes/{a_id}/*:refs/remotes/{a_id}/*",
        token=b.token,
        cwd=clone,
    )
    _git(home, "fsck", "--strict", cwd=clone)
    origin_clone = tmp_path / "origin"
    _git(home, "clone", "-q", "--bare", a_url, str(origin_clone), token=a.token)
    assert _objects(home, origin_clone) == _objects(home, clone)

    # A moves on again; objects fetched through a proxy that flips one bit on the wire
    # are refused and nothing changes on B; then a clean sync lands
    _commit(home, work, "three")
    _git(home, "push", "-q", a_url, "main", token=a.token, cwd=work)
    with _TamperingProxy(a_url) as proxy:
        bad = sync(**{"git-url": proxy.url})
        assert bad.exit_code != 0 and "internal error" not in bad.output, bad.output
        assert proxy.flipped
    assert _refs(b, "acme/synced") == after
    assert sync().exit_code == 0
    after = _refs(b, "acme/synced")
    assert after[f"refs/remotes/{a_id}/heads/main"] == _refs(a, "acme/synced")["refs/heads/main"]

    # A blocks B: the tokens it granted B are revoked, B's next sync gets nothing, and
    # what B already synced stays as it was
    assert _cli(a)("federation", "trust", b_key, "--level", "blocked").exit_code == 0
    refused = sync()
    assert refused.exit_code != 0 and "revoked" in refused.output.lower(), refused.output
    assert _refs(b, "acme/synced") == after


class _TamperingProxy:
    """An HTTP proxy to one git URL that flips a bit in the middle of every pack it relays."""

    def __init__(self, target_url: str) -> None:
        import http.server
        import threading
        import urllib.parse

        import httpx

        parts = urllib.parse.urlsplit(target_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        proxy = self
        self.flipped = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                keep = ("authorization", "content-type", "content-encoding", "git-protocol")
                headers = {k: v for k, v in self.headers.items() if k.lower() in keep}
                got = httpx.request(method, origin + self.path, content=body, headers=headers)
                data = got.content
                if method == "POST" and "upload-pack" in self.path and len(data) > 200:
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]
                    proxy.flipped += 1
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{parts.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _TamperingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_b_syncs_a_kv_prefix_found_through_the_dht(
    clusters: dict[str, LocalCluster], joined: dict[str, dict[str, Any]]
) -> None:
    """A KV prefix synced with A's endpoint taken from its DHT announcement; C (blocked by
    A) is granted nothing, and C's allow-list prefix is refused to B (not trusted by C)."""
    a, b, c = clusters["a"], clusters["b"], clusters["c"]
    a_key, b_key = joined["a"]["cluster_key"], joined["b"]["cluster_key"]
    with a.client() as ca:
        ca.kv.put("/shared/x", b"1")
    assert _cli(a)("federation", "trust", b_key, "--level", "trusted").exit_code == 0
    assert _cli(a)("federation", "share", "kv", "/shared/", "--mode", "public").exit_code == 0
    token = _json(a, "federation", "grant", b_key, "kv", "/shared/")["token"]
    got = _json(b, "federation", "sync", a_key, "kv", "/shared/", "--token", token)
    assert (got["keys"], got["generation"]) == (1, 1)
    assert synced_kv(b, a_key, "/shared/") == {b"/shared/x": b"1"}
    blocked = _cli(a)("federation", "grant", joined["c"]["cluster_key"], "kv", "/shared/")
    assert blocked.exit_code != 0
    share = _cli(c)("federation", "share", "kv", "/c/", "--mode", "allow-list", "--allow", b_key)
    assert share.exit_code == 0, share.output
    assert _cli(c)("federation", "grant", b_key, "kv", "/c/").exit_code != 0
