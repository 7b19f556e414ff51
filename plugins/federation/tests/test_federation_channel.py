"""Two clusters (real node processes) on a private loopback DHT, each serving a federation
inbox: trust requests travel between them, a push to a shared repository is gossiped to
the trusting peer (and a mirror of it syncs early), a blob pinned under a shared prefix is
gossiped, and unsharing a resource revokes the tokens granted for it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import aspen
from aspen.errors import AspenError, ResourceExhaustedError, UnauthorizedError
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, LocalCluster, local_cluster, wait_for

pytest.importorskip(
    "libtorrent", reason="the libtorrent wheel (pip install libtorrent) is not installed"
)

from aspen_federation import limits
from aspen_federation.dht import DhtDiscovery
from aspen_federation.identity import ClusterKey, IdentityDocument, key_id
from aspen_federation.inbox import TRUST_PATH, inbox_url, post
from aspen_federation.trustreq import TrustRequest

#: Standalone DHT nodes in the test process, besides one per cluster node.
HELPERS = 3
ENV = {
    "ASPEN_FEDERATION_DHT_LISTEN": "127.0.0.1:0",
    "ASPEN_FEDERATION_DHT_PRIVATE": "true",
    "ASPEN_FEDERATION_REPUBLISH_SECONDS": "1",
    "ASPEN_FEDERATION_INBOX_LISTEN": "127.0.0.1:0",
    "ASPEN_FORGE_HTTP_LISTEN": "127.0.0.1:0",
}
PLUGINS = ["federation", "forge"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Clusters A and B (one node each) joined to a few helper DHT nodes; their statuses."""
    helpers = [DhtDiscovery("127.0.0.1:0", private=True) for _ in range(HELPERS)]
    for node in helpers:
        for other in helpers:
            if other is not node:
                node.add_contact("127.0.0.1", other.listen_port())
    with ExitStack() as stack:
        stack.callback(lambda: [h.close() for h in helpers])
        clusters: dict[str, LocalCluster] = {}
        for name in "ab":
            env = {**ENV, "ASPEN_FEDERATION_NAME": f"cluster-{name}"}
            cluster = local_cluster(tmp_path_factory.mktemp(name), 1, plugins=PLUGINS, env=env)
            clusters[name] = stack.enter_context(cluster)
            clusters[name].leader_index()
        for cluster in clusters.values():
            for helper in helpers:
                with cluster.client() as c:
                    c.call(
                        "federation.dht_bootstrap",
                        {"host": "127.0.0.1", "port": helper.listen_port()},
                    )
        status = {}
        for name, cluster in clusters.items():
            wait_for(lambda c=cluster: _call(c, "federation.status")["dht_nodes"] >= HELPERS, 30)
            status[name] = _call(cluster, "federation.status")
        # each finds the other's announcement, with its inbox, through the DHT
        for name, other in (("a", "b"), ("b", "a")):
            key = status[other]["cluster_key"]
            wait_for(lambda n=name, k=key: _inbox_of(clusters[n], k), timeout=60)
        yield {**clusters, "status": status}


def _call(cluster: LocalCluster, method: str, params: dict[str, Any] | None = None) -> Any:
    with cluster.client() as c:
        return c.call(method, params or {})


def _inbox_of(cluster: LocalCluster, key: str) -> str | None:
    try:
        found = _call(cluster, "federation.discover", {"key": key})
    except AspenError:
        return None
    return inbox_url(found["endpoints"])


def _cli(cluster: LocalCluster, *args: str) -> Any:
    pm = make_plugin_manager(load=PLUGINS)
    invoke = CliInvoker(pm, {"ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token})
    return invoke(*args)


def _gossip(cluster: LocalCluster, kind: str, subject: str) -> list[dict[str, Any]]:
    with cluster.client() as c:
        events = c.events.read(0, match="federation.gossip")["events"]
    return [
        e["payload"]
        for e in events
        if e["payload"]["kind"] == kind and e["payload"]["subject"] == subject
    ]


def test_request_trust_lands_in_the_remote_queue(net: dict[str, Any]) -> None:
    a, b, status = net["a"], net["b"], net["status"]
    a_key, b_key = status["a"]["cluster_key"], status["b"]["cluster_key"]
    sent = _cli(b, "federation", "request-trust", a_key, "--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)["queued"] is True
    pending = _call(a, "federation.requests")["requests"]
    assert [(r["cluster_key"], r["name"]) for r in pending] == [(b_key, "cluster-b")]

    # a request addressed to another cluster, or signed by another key, is refused
    url = _inbox_of(b, a_key)
    assert url is not None
    stranger = ClusterKey.generate()
    doc = IdentityDocument.create(stranger, "stranger")
    misaddressed = TrustRequest.create(stranger, doc, bytes.fromhex(b_key)).encode()
    with pytest.raises(AspenError, match="another cluster"):
        post(url, TRUST_PATH, misaddressed)
    forged = TrustRequest.create(ClusterKey.generate(), doc, bytes.fromhex(a_key)).encode()
    with pytest.raises(UnauthorizedError, match="bad signature"):
        post(url, TRUST_PATH, forged)

    # a blocked sender is answered as any other, and dropped
    _call(a, "federation.trust", {"key": stranger.public.hex(), "level": "blocked"})
    blocked = TrustRequest.create(stranger, doc, bytes.fromhex(a_key)).encode()
    assert post(url, TRUST_PATH, blocked) == {"queued": True}
    queued = [r["cluster_key"] for r in _call(a, "federation.requests")["requests"]]
    assert stranger.public.hex() not in queued

    # one sender's requests are rate-limited (its burst, then resource_exhausted)
    eager = ClusterKey.generate()
    eager_doc = IdentityDocument.create(eager, "eager")
    burst = int(limits.TRUST_REQUEST_SENDER_BURST)
    for _ in range(burst):
        post(url, TRUST_PATH, TrustRequest.create(eager, eager_doc, bytes.fromhex(a_key)).encode())
    with pytest.raises(ResourceExhaustedError, match="TRUST_REQUEST_SENDER_RATE"):
        post(url, TRUST_PATH, TrustRequest.create(eager, eager_doc, bytes.fromhex(a_key)).encode())
    assert _cli(a, "federation", "reject", eager.public.hex()).exit_code == 0

    # A's operator accepts B
    assert _cli(a, "federation", "accept", b_key).exit_code == 0
    peers = {p["cluster_key"]: p["level"] for p in _call(a, "federation.status")["peers"]}
    assert peers[b_key] == "trusted"
    assert [r["cluster_key"] for r in _call(a, "federation.requests")["requests"]] == []


def _push(url: str, token: str, work: Path, text: str) -> None:
    """Commit ``text`` in ``work`` (a fresh repository the first time) and push it."""
    env = {
        **os.environ,
        "HOME": str(work.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    auth = ["-c", f"http.extraHeader=Authorization: Bearer {token}"]
    steps = [] if work.exists() else [["init", "-q", "-b", "main", str(work)]]
    (work.mkdir(parents=True, exist_ok=True))
    (work / "file.txt").write_text(text)
    steps += [["add", "file.txt"], ["commit", "-q", "-m", text], [*auth, "push", "-q", url, "main"]]
    for step in steps:
        done = subprocess.run(
            ["git", *step], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"git {step}: {done.stdout}{done.stderr}"


def test_a_push_to_a_shared_repo_is_gossiped_to_a_trusting_peer(
    net: dict[str, Any], tmp_path: Path
) -> None:
    a, b, status = net["a"], net["b"], net["status"]
    a_key, b_key = status["a"]["cluster_key"], status["b"]["cluster_key"]
    _call(a, "federation.trust", {"key": b_key, "level": "trusted"})  # A sends to B
    _call(b, "federation.trust", {"key": a_key, "level": "trusted"})  # B admits A's gossip
    _call(a, "forge.repo_create", {"repo": "acme/gossip", "private": True})
    url = _call(a, "forge.repo_show", {"repo": "acme/gossip"})["clone_url"]
    _call(a, "federation.share", {"kind": "forge", "name": "acme/gossip", "mode": "public"})
    created = wait_for(lambda: _gossip(b, "repo.created", "acme/gossip"), timeout=60)
    assert created[0]["sender"] == a_key and created[0]["resource"] == "forge:acme/gossip"

    _push(url, a.token, tmp_path / "work", "one")
    updated = wait_for(lambda: _gossip(b, "ref.updated", "acme/gossip"), timeout=60)
    assert updated[0]["resource"] == "forge:acme/gossip"
    # a push to a repository that is not shared says nothing
    _call(a, "forge.repo_create", {"repo": "acme/quiet", "private": True})
    quiet = _call(a, "forge.repo_show", {"repo": "acme/quiet"})["clone_url"]
    _push(quiet, a.token, tmp_path / "quiet", "one")
    _push(url, a.token, tmp_path / "work", "two")
    wait_for(lambda: len(_gossip(b, "ref.updated", "acme/gossip")) >= 2, timeout=60)
    assert _gossip(b, "ref.updated", "acme/quiet") == []

    # B's status shows when it last heard from A; `events` lists the gossip
    seen = {p["cluster_key"]: p["last_seen"] for p in _call(b, "federation.status")["peers"]}
    assert seen[a_key] > 0
    listed = _cli(b, "federation", "events", "--from", "0", "--no-follow")
    assert listed.exit_code == 0 and "ref.updated acme/gossip" in listed.output


def test_unsharing_revokes_the_tokens_granted_for_it(net: dict[str, Any]) -> None:
    a, b, status = net["a"], net["b"], net["status"]
    a_key, b_key = status["a"]["cluster_key"], status["b"]["cluster_key"]
    _call(a, "federation.trust", {"key": b_key, "level": "trusted"})
    _call(b, "federation.trust", {"key": a_key, "level": "trusted"})
    endpoint = a.endpoints.split(",")[0]
    refs = {"kind": "forge", "name": "acme/revoked"}
    _call(a, "forge.repo_create", {"repo": "acme/revoked", "private": True})

    def grant() -> tuple[str, str]:
        granted = _call(a, "federation.grant", {"key": b_key, **refs})
        return str(granted["token"]), str(granted["id"])

    def read(token: str) -> Any:
        with aspen.connect(endpoint, token=token) as remote:
            return remote.call("federation.refs", refs)

    # unshared: the granted token is refused at once
    _call(a, "federation.share", {**refs, "mode": "public"})
    token, token_id = grant()
    assert read(token)["resource"] == "forge:acme/revoked"
    unshared = _call(a, "federation.share", {**refs, "mode": "disabled"})
    assert unshared["revoked"] == 1
    with pytest.raises(UnauthorizedError, match="revoked"):
        read(token)

    # B, which held it, is told (token.revoked gossip, subject the token id)
    wait_for(lambda: _gossip(b, "token.revoked", token_id), timeout=60)

    # an allow-list narrowed to leave B out revokes B's grant; one still allowed keeps it
    _call(a, "federation.share", {**refs, "mode": "allow-list", "allow": [b_key]})
    token, _ = grant()
    assert read(token)["resource"] == "forge:acme/revoked"
    same = _call(a, "federation.share", {**refs, "mode": "allow-list", "allow": [b_key]})
    assert same["revoked"] == 0
    assert read(token)["resource"] == "forge:acme/revoked"
    narrowed = _call(a, "federation.share", {**refs, "mode": "allow-list", "allow": []})
    assert narrowed["revoked"] == 1
    with pytest.raises(UnauthorizedError, match="revoked"):
        read(token)


def _refs(cluster: LocalCluster, repo: str) -> dict[str, str]:
    return dict(_call(cluster, "forge.repo_show", {"repo": repo})["refs"])


def test_a_mirror_syncs_early_on_gossip_from_its_origin(
    net: dict[str, Any], tmp_path: Path
) -> None:
    a, b, status = net["a"], net["b"], net["status"]
    a_key, b_key = status["a"]["cluster_key"], status["b"]["cluster_key"]
    a_id = key_id(bytes.fromhex(a_key))
    _call(a, "federation.trust", {"key": b_key, "level": "trusted"})
    _call(b, "federation.trust", {"key": a_key, "level": "trusted"})
    _call(a, "forge.repo_create", {"repo": "acme/mirrored", "private": True})
    url = _call(a, "forge.repo_show", {"repo": "acme/mirrored"})["clone_url"]
    _push(url, a.token, tmp_path / "work", "one")
    _call(a, "federation.share", {"kind": "forge", "name": "acme/mirrored", "mode": "public"})
    token = _call(a, "federation.grant", {"key": b_key, "kind": "forge", "name": "acme/mirrored"})
    mirror = {"key": a_key, "kind": "forge", "name": "acme/mirrored", "every": 3600.0}
    _call(b, "federation.mirror_add", {**mirror, "token": token["token"]})
    remote_main = f"refs/remotes/{a_id}/heads/main"

    def mirrored() -> str | None:
        try:
            return _refs(b, "acme/mirrored").get(remote_main)
        except AspenError:
            return None

    # the first run is at once; the next would be an hour later
    wait_for(lambda: mirrored() == _refs(a, "acme/mirrored")["refs/heads/main"], timeout=60)
    _push(url, a.token, tmp_path / "work", "two")
    head = _refs(a, "acme/mirrored")["refs/heads/main"]
    # A gossips ref.updated; B's leader runs the mirror on it, long before its interval
    wait_for(lambda: mirrored() == head, timeout=60)
    (listed,) = [m for m in _call(b, "federation.mirror_list")["mirrors"] if m["kind"] == "forge"]
    assert listed["failures"] == 0 and listed["next_run"] > time.time() + 3000


def test_a_blob_pinned_under_a_shared_prefix_is_gossiped(net: dict[str, Any]) -> None:
    a, b, status = net["a"], net["b"], net["status"]
    a_key, b_key = status["a"]["cluster_key"], status["b"]["cluster_key"]
    _call(a, "federation.trust", {"key": b_key, "level": "trusted"})
    _call(b, "federation.trust", {"key": a_key, "level": "trusted"})
    _call(a, "federation.share", {"kind": "blob", "name": "releases/", "mode": "public"})
    with a.client() as c:
        c.blobs.put(b"not shared", pin="private/x")
        ref = c.blobs.put(b"release one", pin="releases/v1.tar")
        c.blobs.pin("releases/latest", ref.hash)  # an existing blob pinned again: also said
    got = wait_for(lambda: _gossip(b, "blob.available", "releases/v1.tar"), timeout=60)
    assert got[0]["sender"] == a_key and got[0]["resource"] == "blob:releases/v1.tar"
    wait_for(lambda: _gossip(b, "blob.available", "releases/latest"), timeout=60)
    assert _gossip(b, "blob.available", "private/x") == []
