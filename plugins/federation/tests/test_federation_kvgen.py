"""KV prefixes larger than one transaction: staged page by page into a generation, made
visible in one step. Origin A (one node) and puller B (three nodes), real processes: a
5,000-key prefix syncs through a kill -9 of B's leader with nothing partial ever visible,
a new snapshot replaces the old generation (deleted after), overlapping prefixes keep
apart, and a page altered after the origin signed its snapshot is refused (B in process,
the page altered on its way into B's puller) with nothing visible."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgpack
import pytest
from federation_support import sync_in_thread, synced_kv

import aspen
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import LocalCluster, local_cluster, wait_for
from aspen_federation.identity import key_id
from aspen_federation.kvsync import NAMESPACE, generation_prefix, pull_kv, sync_record_key
from aspen_federation.signedstate import SignedStateError

PLUGINS = ["federation"]
KEYS = 5000


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A (1 node, the origin) and B (3 nodes, the puller) and their cluster keys."""
    with ExitStack() as stack:
        found: dict[str, Any] = {}
        for name, size in (("a", 1), ("b", 3)):
            cluster = stack.enter_context(
                local_cluster(tmp_path_factory.mktemp(name), size, plugins=PLUGINS)
            )
            cluster.leader_index()
            with cluster.client() as c:
                found[f"{name}_key"] = c.call("federation.status", {})["cluster_key"]
            found[name] = cluster
        yield found


def _put_many(cluster: LocalCluster, prefix: str, count: int, value: bytes) -> None:
    with cluster.client() as c:
        for start in range(0, count, 500):
            puts = [
                {"put": {"key": f"{prefix}{i:05d}", "value": value}}
                for i in range(start, min(count, start + 500))
            ]
            c.call("kv.txn", {"compare": [], "success": puts, "failure": []})


def _grant(clusters: dict[str, Any], prefix: str) -> str:
    with clusters["a"].client() as a:
        a.call("federation.share", {"kind": "kv", "name": prefix, "mode": "public"})
        grant = {"key": clusters["b_key"], "kind": "kv", "name": prefix}
        return str(a.call("federation.grant", grant)["token"])


def _params(clusters: dict[str, Any], prefix: str, token: str) -> dict[str, Any]:
    return {
        "key": clusters["a_key"],
        "kind": "kv",
        "name": prefix,
        "token": token,
        "endpoint": clusters["a"].endpoints.split(",")[0],
    }


def _record(cluster: LocalCluster, origin: str, prefix: str) -> dict[str, Any]:
    key = sync_record_key(key_id(bytes.fromhex(origin)), prefix)
    with cluster.client() as c:
        got = c.kv.get(key)
    return {} if got is None else dict(msgpack.unpackb(got.value, raw=False))


def _count(cluster: Any, prefix: bytes) -> int:
    with cluster.client() as c:
        got = c.call("kv.range", {"key": prefix, "end": prefix[:-1] + b"0", "count_only": True})
    return int(got["count"])


def test_a_large_prefix_syncs_through_a_leader_kill_and_is_never_partial(
    clusters: dict[str, Any],
) -> None:
    a, b, origin = clusters["a"], clusters["b"], clusters["a_key"]
    expected = {f"/big/{i:05d}".encode(): b"v" * 100 for i in range(KEYS)}
    _put_many(a, "/big/", KEYS, b"v" * 100)
    params = _params(clusters, "/big/", _grant(clusters, "/big/"))
    leader = b.leader_index()
    thread, outcome = sync_in_thread(b, leader, params)
    # a page or more is staged: kill the leader mid-sync; nothing is visible meanwhile
    wait_for(
        lambda: (_record(b, origin, "/big/").get("staging") or {}).get("last"),
        timeout=60,
        message="the sync staged a page",
    )
    assert synced_kv(b, origin, "/big/") in (None, expected)
    b.kill(leader)
    thread.join(timeout=120)
    assert outcome, "the first sync never returned"
    assert synced_kv(b, origin, "/big/") in (None, expected)
    # run again (the new leader): it resumes where the staging stands, and completes
    with b.client(timeout=120) as cb:
        done = cb.call("federation.sync", params)
    assert done["keys"] == KEYS and done["written"] < KEYS and done["generation"] == 1
    assert synced_kv(b, origin, "/big/") == expected

    # a new snapshot is a new generation; the old one is deleted once it is replaced
    with a.client() as c:
        c.kv.put("/big/00042", b"changed")
        c.kv.delete("/big/04999")
    with b.client(timeout=120) as cb:
        again = cb.call("federation.sync", params)
    assert (again["generation"], again["keys"], again["replaced"]) == (2, KEYS - 1, KEYS)
    expected[b"/big/00042"] = b"changed"
    del expected[b"/big/04999"]
    assert synced_kv(b, origin, "/big/") == expected
    cid = key_id(bytes.fromhex(origin))
    assert _count(b, generation_prefix(cid, "/big/", 1)) == 0
    assert _count(b, generation_prefix(cid, "/big/", 2)) == KEYS - 1


def test_overlapping_prefixes_keep_apart(clusters: dict[str, Any]) -> None:
    a, b, origin = clusters["a"], clusters["b"], clusters["a_key"]
    with a.client() as c:
        c.kv.put("/ov/x", b"1")
        c.kv.put("/ovx", b"2")
    wide = _params(clusters, "/ov", _grant(clusters, "/ov"))
    narrow = _params(clusters, "/ov/", _grant(clusters, "/ov/"))
    with b.client(timeout=60) as cb:
        cb.call("federation.sync", wide)
        cb.call("federation.sync", narrow)
    assert synced_kv(b, origin, "/ov") == {b"/ov/x": b"1", b"/ovx": b"2"}
    assert synced_kv(b, origin, "/ov/") == {b"/ov/x": b"1"}
    # re-syncing the wider prefix after a change leaves the narrower one's snapshot alone
    with a.client() as c:
        c.kv.put("/ov/x", b"one")
        c.kv.delete("/ovx")
    with b.client(timeout=60) as cb:
        cb.call("federation.sync", wide)
    assert synced_kv(b, origin, "/ov") == {b"/ov/x": b"one"}
    assert synced_kv(b, origin, "/ov/") == {b"/ov/x": b"1"}


class _Tampering:
    """A client to the origin whose second ``kv.range`` page comes back altered (as a
    compromised origin node, or anything between TLS and the puller, would hand it)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pages = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        got = await self.client.call(method, params)
        if method == "kv.range":
            self.pages += 1
            if self.pages == 2:
                got["kvs"][0]["value"] = b"evil"
        return got


def test_a_tampered_page_is_refused_and_nothing_is_visible(
    clusters: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = clusters["a"]
    _put_many(a, "/tam/", 1200, b"t" * 50)
    config = NodeConfig(data_dir=tmp_path / "p", listen="127.0.0.1:0")
    with NodeThread(config, make_plugin_manager(load=PLUGINS)) as puller:
        with puller.client() as c:
            puller_key = c.call("federation.status", {})["cluster_key"]
        with a.client() as c:
            c.call("federation.share", {"kind": "kv", "name": "/tam/", "mode": "public"})
            grant = {"key": puller_key, "kind": "kv", "name": "/tam/"}
            token = str(c.call("federation.grant", grant)["token"])
        service = puller.node.plugin_state("federation")["service"]
        remote = bytes.fromhex(clusters["a_key"])
        endpoint = a.endpoints.split(",")[0]
        real = aspen.aconnect

        @contextlib.asynccontextmanager
        async def tampering(*args: Any, **kwargs: Any) -> AsyncIterator[_Tampering]:
            async with real(*args, **kwargs) as client:
                yield _Tampering(client)

        monkeypatch.setattr(aspen, "aconnect", tampering)
        with pytest.raises(SignedStateError, match="do not match the signed snapshot"):
            puller.call(pull_kv, service, remote, "kv:/tam/", token, endpoint)
        monkeypatch.setattr(aspen, "aconnect", real)
        origin = clusters["a_key"]
        assert synced_kv(puller, origin, "/tam/") is None
        cid = key_id(remote)
        assert _count(puller, NAMESPACE + cid.encode() + b"/") == 0  # the staging is gone
        done = puller.call(pull_kv, service, remote, "kv:/tam/", token, endpoint)
        assert (done["keys"], done["generation"]) == (1200, 2)
        got = synced_kv(puller, origin, "/tam/")
        assert got is not None and len(got) == 1200 and set(got.values()) == {b"t" * 50}
