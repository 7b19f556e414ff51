"""Central enforcement on a real node with every installed plugin: each registered RPC
method (core and plugins) is denied to a token without its capability, before its handler
runs; per-token rate limits keep a flooding token from starving a normal one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aspen
from aspen.auth.access import ANY_TOKEN
from aspen.errors import AspenError, ResourceExhaustedError, UnauthorizedError
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import wait_for

#: The methods any valid token may call, each with params that need a capability anyway
#: (``None``: the method answers only about the caller's own token). A new entry here is a
#: deliberate decision.
OPEN_METHODS: dict[str, dict[str, Any] | None] = {
    "token.create": {"capabilities": ["kv:read:/"]},
    "token.revoke": {"id": "0123456789abcdef"},
    "token.self": None,
}


@pytest.fixture
def plugin_node(tmp_path: Path) -> Iterator[NodeThread]:
    """A node with every installed plugin (aspen-hooks, aspen-secrets…), in a thread."""
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config, make_plugin_manager(load=None, disable=())) as node:
        yield node


def _create(node: NodeThread, *caps: str, **extra: Any) -> str:
    with node.client() as c:
        return str(c.call("token.create", {"capabilities": list(caps), **extra})["token"])


def _call(client: Any, method: str, params: dict[str, Any], streaming: bool) -> None:
    """Call ``method`` (a stream's first item for a streaming one)."""
    if streaming:
        for _ in client.stream(method, params):
            break
    else:
        client.call(method, params)


@pytest.mark.with_installed_plugins
def test_every_method_is_denied_without_its_capability(plugin_node: NodeThread) -> None:
    registry = plugin_node.node.parts.registry
    handlers = [registry.get(n) for n in registry.names()]
    plugins = {h.plugin for h in handlers if h is not None}
    # the walk covers the installed plugins
    assert {
        "core",
        "hooks",
        "secrets",
        "pubsub",
        "coord",
        "forge",
        "jobs",
        "pijul",
        "federation",
    } <= plugins
    open_methods = {h.name for h in handlers if h is not None and h.capability == ANY_TOKEN}
    assert open_methods == set(OPEN_METHODS)
    outsider = _create(plugin_node, "nothing:read")
    with aspen.connect(plugin_node.endpoint, token=outsider) as c:
        for handler in handlers:
            assert handler is not None
            params = OPEN_METHODS.get(handler.name, {})
            if params is None:
                continue
            with pytest.raises(UnauthorizedError) as info:
                _call(c, handler.name, params, handler.streaming)
            wanted = handler.capability if handler.capability != ANY_TOKEN else ""
            needed = info.value.details.get("capability", "")
            assert needed, f"{handler.name}: {info.value.message}"
            if wanted:
                assert needed == wanted, f"{handler.name}: {info.value.message}"
            elif handler.capability is None:
                assert needed.startswith("root"), f"{handler.name}: {info.value.message}"
    # and a token holding a method's capability passes the check (it may fail otherwise)
    for handler in handlers:
        assert handler is not None
        if handler.capability in (None, ANY_TOKEN) or handler.scope is not None:
            continue
        holder = _create(plugin_node, handler.capability)
        with aspen.connect(plugin_node.endpoint, token=holder) as c:
            try:
                _call(c, handler.name, {}, handler.streaming)
            except AspenError as exc:
                assert exc.code != "unauthorized", f"{handler.name}: {exc.message}"


def test_a_kv_txn_touching_one_forbidden_key_fails_whole(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node:
        token = _create(node, "kv:read:/app/", "kv:write:/app/")
        txn = {
            "success": [
                {"put": {"key": "/app/a", "value": b"1"}},
                {"put": {"key": "/apple", "value": b"1"}},
            ]
        }
        with aspen.connect(node.endpoint, token=token) as c:
            with pytest.raises(UnauthorizedError, match="kv:write:/apple"):
                c.call("kv.txn", txn)
            with pytest.raises(UnauthorizedError, match="kv:read"):
                for _ in c.watch("/", end="\0"):
                    break
        with node.client() as c:
            assert c.kv.get("/app/a") is None


def test_a_flooding_token_does_not_starve_a_normal_one(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node:
        flood = _create(node, "kv:read:/", rate=20, burst=20)
        normal = _create(node, "kv:read:/", "kv:write:/n/")
        exhausted: list[ResourceExhaustedError] = []
        stop = threading.Event()

        def flooder() -> None:
            with aspen.connect(node.endpoint, token=flood, failover_timeout=0) as c:
                while not stop.is_set():
                    try:
                        c.kv.get("/x")
                    except ResourceExhaustedError as exc:
                        exhausted.append(exc)

        threads = [threading.Thread(target=flooder) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            with aspen.connect(node.endpoint, token=normal) as c:
                for i in range(200):
                    c.kv.put(f"/n/{i}", b"v")  # never refused: its own bucket
                    assert c.kv.get(f"/n/{i}") is not None
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert exhausted, "the flooding token was never limited"
        assert exhausted[0].details["retry_after"] > 0
        assert "retry in" in exhausted[0].message


def _watch_opens(client: Any) -> bool:
    """Whether a watch opens now (and close it)."""
    try:
        client.watch("/w/c").close()
    except ResourceExhaustedError:
        return False
    return True


def test_revocation_reaches_open_connections_and_stream_limits(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node:
        with node.client() as root:
            made = root.call(
                "token.create", {"capabilities": ["kv:read:/w/"], "streams": 1, "name": "w"}
            )
        with aspen.connect(node.endpoint, token=made["token"]) as c:
            first = c.watch("/w/a")  # the token's one stream
            with pytest.raises(ResourceExhaustedError, match="streams open"):
                c.watch("/w/b")
            first.close()
            wait_for(lambda: _watch_opens(c), timeout=10, message="the stream slot is freed")
            assert c.kv.get("/w/a") is None
            with node.client() as root:
                root.call("token.revoke", {"id": made["id"]})
            with pytest.raises(UnauthorizedError, match="revoked"):
                c.kv.get("/w/a")


def test_token_list_is_bounded_and_shows_no_secret(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node:
        texts = [_create(node, f"kv:read:/t{i}/") for i in range(3)]
        with node.client() as c:
            page = c.call("token.list", {"limit": 2})
            full = c.call("token.list")
        assert len(page["tokens"]) == 2 and page["more"] is True
        assert len(full["tokens"]) == 3 and full["more"] is False
        assert not any(t in repr(full) for t in texts)


def test_events_capabilities_scope_by_name_prefix(tmp_path: Path) -> None:
    """``events:read:<prefix>`` reads the events whose ``match`` names lie under it;
    ``events:write:<prefix>`` publishes those names, also from inside a ``kv.txn``."""
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node:
        with node.client() as c:
            c.events.publish("forge.push", "acme/w")
            c.events.publish("deploy.requested", "web")
        reader = _create(node, "events:read:forge.")
        with aspen.connect(node.endpoint, token=reader) as c:
            names = {e["name"] for e in c.events.read(0, match="forge.*")["events"]}
            assert names == {"forge.push"}
            assert c.events.read(0, match="forge.push:acme/*")["events"]
            for match in (None, "*", "deploy.*", "f*"):
                with pytest.raises(UnauthorizedError, match="events:read"):
                    c.events.read(0, match=match)
            with pytest.raises(UnauthorizedError, match=r"events:read:deploy\."):
                for _ in c.events.tail(0, match="deploy.requested"):
                    break
            with pytest.raises(UnauthorizedError, match=r"events:write:forge\.push"):
                c.events.publish("forge.push", "acme/w")
        writer = _create(node, "events:write:deploy.", "kv:read:/app/", "kv:write:/app/")
        with aspen.connect(node.endpoint, token=writer) as c:
            assert c.events.publish("deploy.requested", "web")["position"] == 3
            with pytest.raises(UnauthorizedError, match=r"events:write:forge\.push"):
                c.events.publish("forge.push", "acme/w")
            publish = {"publish": {"name": "forge.push", "subject": "acme/w"}}
            with pytest.raises(UnauthorizedError, match=r"events:write:forge\.push"):
                c.call("kv.txn", {"success": [{"put": {"key": "/app/x", "value": b"1"}}, publish]})
            ok = {"publish": {"name": "deploy.done", "subject": "web"}}
            c.call("kv.txn", {"success": [{"put": {"key": "/app/x", "value": b"1"}}, ok]})
        with node.client() as c:
            assert [e["name"] for e in c.events.read(3)["events"]] == [
                "deploy.requested",
                "deploy.done",
            ]


@pytest.mark.with_installed_plugins
def test_coord_methods_need_their_name_and_kv_write_for_a_fenced_write(
    plugin_node: NodeThread,
) -> None:
    """``coord:<kind>:<name>`` admits that primitive only; a fenced write also needs
    ``kv:write`` on each key it writes (the plugin writes as the node)."""
    token = _create(plugin_node, "coord:lock:orders", "coord:counter:*", "kv:write:/app/")
    with aspen.connect(plugin_node.endpoint, token=token) as c:
        held = c.call("coord.lock.acquire", {"name": "orders", "ttl": 10})
        with pytest.raises(UnauthorizedError, match="coord:lock:other"):
            c.call("coord.lock.acquire", {"name": "other", "ttl": 10})
        with pytest.raises(UnauthorizedError, match="coord:semaphore"):
            c.call("coord.semaphore.acquire", {"name": "orders", "permits": 1})
        assert c.call("coord.counter.add", {"name": "any", "by": 2})["value"] == 2
        fenced = {"name": "orders", "lease": held["lease"], "fence": held["fence"]}
        put = {"put": {"key": b"/app/x", "value": b"1"}}
        assert c.call("coord.lock.write", {**fenced, "ops": [put]})["revision"] > 0
        outside = {"put": {"key": b"/other", "value": b"1"}}
        with pytest.raises(UnauthorizedError, match="kv:write:/other"):
            c.call("coord.lock.write", {**fenced, "ops": [put, outside]})
        with pytest.raises(UnauthorizedError):
            c.kv.get(b"/_aspen/coord/lock/orders/")  # its state is not readable as kv


@pytest.mark.with_installed_plugins
def test_pubsub_capabilities_are_scoped_by_topic(plugin_node: NodeThread) -> None:
    with plugin_node.client() as root:
        for topic in ("orders.eu", "billing"):
            root.call("pubsub.topic_create", {"topic": topic})
    token = _create(plugin_node, "pubsub:publish:orders*", "pubsub:consume:orders.eu")
    with aspen.connect(plugin_node.endpoint, token=token) as c:
        c.call("pubsub.publish", {"topic": "orders.eu", "data": b"x"})
        assert c.call("pubsub.stats", {"topic": "orders.eu"})["messages"] == 1
        with pytest.raises(UnauthorizedError, match="pubsub:publish:billing"):
            c.call("pubsub.publish", {"topic": "billing", "data": b"x"})
        with pytest.raises(UnauthorizedError, match="pubsub:admin"):
            c.call("pubsub.topic_delete", {"topic": "orders.eu"})


@pytest.mark.with_installed_plugins
def test_jobs_methods_need_their_queue(plugin_node: NodeThread) -> None:
    """``jobs:submit|work|admin:<queue>`` admit that queue only; a job named by id is
    checked against its queue inside the handler."""
    with plugin_node.client() as root:
        foreign = root.call("jobs.submit", {"queue": "other", "command": "date"})["id"]
    token = _create(plugin_node, "jobs:submit:builds", "jobs:work:builds")
    with aspen.connect(plugin_node.endpoint, token=token) as c:
        mine = c.call("jobs.submit", {"queue": "builds", "command": "date"})["id"]
        assert c.call("jobs.get", {"id": mine})["queue"] == "builds"
        with pytest.raises(UnauthorizedError, match="jobs:submit:other"):
            c.call("jobs.submit", {"queue": "other", "command": "date"})
        with pytest.raises(UnauthorizedError, match="jobs:submit:other"):
            c.call("jobs.get", {"id": foreign})
        with pytest.raises(UnauthorizedError, match="jobs:submit:other"):
            c.call("jobs.cancel", {"id": foreign})
        assert [j["id"] for j in c.call("jobs.list", {})["jobs"]] == [mine]
        lease = c.call("jobs.worker.register", {"ttl": 10})["lease"]
        got = c.call("jobs.worker.lease", {"queues": ["builds"], "lease": lease})
        assert got["job"]["id"] == mine
        with pytest.raises(UnauthorizedError, match="jobs:work:other"):
            c.call("jobs.worker.lease", {"queues": ["builds", "other"], "lease": lease})
        with pytest.raises(UnauthorizedError, match="jobs:admin"):
            c.call(
                "jobs.schedule.add",
                {"name": "s", "interval": 60, "queue": "builds", "command": "date"},
            )
    admin = _create(plugin_node, "jobs:admin:builds")
    with aspen.connect(plugin_node.endpoint, token=admin) as c:
        c.call(
            "jobs.schedule.add", {"name": "s", "interval": 60, "queue": "builds", "command": "date"}
        )
        assert [s["name"] for s in c.call("jobs.schedule.list", {})["schedules"]] == ["s"]
        with pytest.raises(UnauthorizedError, match="jobs:admin:other"):
            c.call(
                "jobs.schedule.add",
                {"name": "t", "interval": 60, "queue": "other", "command": "date"},
            )


@pytest.mark.with_installed_plugins
def test_pijul_capabilities_scope_by_repository(plugin_node: NodeThread) -> None:
    """``pijul:read:<repo>`` reads that repository only and writes nothing."""
    reader = _create(plugin_node, "pijul:read:poems")
    with aspen.connect(plugin_node.endpoint, token=reader) as c:
        assert c.call("pijul.log", {"repo": "poems", "channel": "main"})["length"] == 0
        with pytest.raises(UnauthorizedError, match="pijul:read:other"):
            c.call("pijul.log", {"repo": "other", "channel": "main"})
        with pytest.raises(UnauthorizedError, match="pijul:write"):
            c.call("pijul.append", {"repo": "poems", "channel": "main", "expected": 0})
    writer = _create(plugin_node, "pijul:write:poems", "pijul:read:poems")
    with aspen.connect(plugin_node.endpoint, token=writer) as c:
        c.call("pijul.append", {"repo": "poems", "channel": "main", "expected": 0, "hashes": []})
        with pytest.raises(UnauthorizedError, match="pijul:write:other"):
            c.call("pijul.put_changes", {"repo": "other", "changes": []})


@pytest.mark.with_installed_plugins
def test_pijul_put_changes_naming_blobs_needs_blob_read(plugin_node: NodeThread) -> None:
    """``pijul.put_changes {blobs}`` reads and pins the blobs it names, so a token with only
    ``pijul:write`` may not pin a blob it could not read; with ``blob:read`` the request
    passes the check (and the handler refuses these bytes as not a change)."""
    with plugin_node.client() as root:
        digest = root.blobs.put(b"someone else's secret blob").hash
    writer = _create(plugin_node, "pijul:write:poems", "pijul:read:poems")
    with aspen.connect(plugin_node.endpoint, token=writer) as c:
        with pytest.raises(UnauthorizedError, match="blob:read"):
            c.call("pijul.put_changes", {"repo": "poems", "blobs": [digest]})
        c.call("pijul.put_changes", {"repo": "poems", "changes": []})  # no blobs: no blob:read
    reader = _create(plugin_node, "pijul:write:poems", "blob:read")
    with aspen.connect(plugin_node.endpoint, token=reader) as c:
        with pytest.raises(AspenError) as info:
            c.call("pijul.put_changes", {"repo": "poems", "blobs": [digest]})
        assert info.value.code != "unauthorized"
    with plugin_node.client() as root:
        assert not root.blobs.stat(digest)["pins"]


def test_a_blob_read_scoped_to_pin_names_reads_only_what_those_pins_keep(
    tmp_path: Path,
) -> None:
    """``blob:read:releases/*`` reads (get, stat) the blobs a ``releases/…`` pin keeps and
    lists those pins; a blob kept only by other pins, or by none, is refused alike, and so
    are listing every blob, the pins elsewhere and the store's status."""
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node, node.client() as root:
        shared = root.blobs.put(b"release notes", pin="releases/1.0")
        private = root.blobs.put(b"private", pin="private/x")
        loose = root.blobs.put(b"kept by nothing")
        token = _create(node, "blob:read:releases/*")
        with aspen.connect(node.endpoint, token=token) as c:
            assert c.blobs.get_bytes(shared.hash) == b"release notes"
            assert c.blobs.stat(shared.hash)["pins"] == ["releases/1.0"]
            assert [e["name"] for e in c.blobs.pins("releases/")] == ["releases/1.0"]
            for digest in (private.hash, loose.hash, "0" * 64):
                with pytest.raises(UnauthorizedError, match="no pin the token's blob:read"):
                    c.blobs.stat(digest)
                with pytest.raises(UnauthorizedError, match="blob:read"):
                    c.blobs.get_bytes(digest)
            for method, params in (
                ("blob.pins", {"prefix": "private/"}),
                ("blob.pins", {}),
                ("blob.list", {}),
                ("blob.status", {}),
            ):
                with pytest.raises(UnauthorizedError, match="blob:read"):
                    c.call(method, params)
            root.blobs.pin("releases/also-private", private.hash)  # now a covered pin keeps it
            assert c.blobs.get_bytes(private.hash) == b"private"
        writer = _create(node, "blob:write")
        with (
            aspen.connect(node.endpoint, token=writer) as c,
            pytest.raises(UnauthorizedError, match="blob:read"),
        ):
            c.blobs.stat(shared.hash)
