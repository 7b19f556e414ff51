"""End to end: the Python client against a real node (LMDB + TCP), etcd's KV semantics."""

from __future__ import annotations

import time

import pytest

import aspen
from aspen import errors, limits
from aspen.client.txn import Compare, Op


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def test_put_get_delete_and_revisions(running_node) -> None:
    with running_node.client() as c:
        first = c.kv.put(b"a", b"1")
        second = c.kv.put("a", "2", prev_kv=True)
        assert second.revision == first.revision + 1
        assert second.prev_kv.value == b"1"
        kv = c.kv.get("a")
        assert (kv.value, kv.version) == (b"2", 2)
        assert kv.create_revision == first.revision
        assert kv.mod_revision == second.revision
        deleted = c.kv.delete("a", prev_kv=True)
        assert deleted.deleted == 1 and deleted.prev_kvs[0].value == b"2"
        assert c.kv.get("a") is None
        assert c.kv.delete("a").deleted == 0


def test_range_prefix_pagination(running_node) -> None:
    with running_node.client() as c:
        for i in range(25):
            c.kv.put(f"p/{i:02d}", str(i))
        c.kv.put("q", "other")
        page = c.kv.range("p/", limit=10)
        assert [kv.key for kv in page] == [f"p/{i:02d}".encode() for i in range(10)]
        assert page.more and page.count is None  # counted only when asked for
        assert c.kv.range("p/", limit=10, count=True).count == 25
        rest = c.kv.range(page.kvs[-1].key + b"\0", end=b"p0", limit=100)
        assert len(rest) == 15 and not rest.more
        assert c.kv.range("p/", count_only=True).count == 25
        assert c.kv.delete("p/", prefix=True).deleted == 25
        assert c.kv.range("p/", count=True).count == 0


def test_old_revision_reads(running_node) -> None:
    with running_node.client() as c:
        r1 = c.kv.put("k", "v1").revision
        c.kv.put("k", "v2")
        assert c.kv.get("k", revision=r1).value == b"v1"
        c.kv.compact(r1 + 1)
        with pytest.raises(errors.CompactedError):
            c.kv.get("k", revision=r1)


def test_txn_compare_and_swap(running_node) -> None:
    with running_node.client() as c:
        c.kv.put("lock", "free")
        won = c.kv.txn(
            compare=[Compare.value("lock") == b"free"],
            success=[Op.put("lock", "taken"), Op.get("lock")],
            failure=[Op.get("lock")],
        )
        assert won.succeeded
        lost = c.kv.txn(
            compare=[Compare.value("lock") == b"free"],
            success=[Op.put("lock", "taken")],
            failure=[Op.get("lock")],
        )
        assert not lost.succeeded
        assert c.kv.txn(compare=[Compare.version("absent") == 0], success=[], failure=[]).succeeded


def test_leases_expire_and_delete_keys(running_node) -> None:
    with running_node.client() as c:
        lease = c.lease.grant(limits.MIN_LEASE_TTL_SECONDS)
        c.kv.put("ephemeral", "x", lease=lease.id)
        info = c.lease.ttl(lease.id, keys=True)
        assert info.keys == [b"ephemeral"] and info.granted_ttl == limits.MIN_LEASE_TTL_SECONDS
        assert lease.id in c.lease.list()
        wait_for(lambda: c.kv.get("ephemeral") is None, timeout=limits.MIN_LEASE_TTL_SECONDS + 5)
        with pytest.raises(errors.NotFoundError):
            c.lease.ttl(lease.id)
        with pytest.raises(errors.NotFoundError):
            c.kv.put("late", "x", lease=lease.id)


def test_lease_revoke_and_keepalive(running_node) -> None:
    with running_node.client() as c:
        lease = c.lease.grant(30)
        c.kv.put("a", "1", lease=lease.id)
        c.kv.put("b", "2", lease=lease.id)
        assert c.lease.keepalive(lease.id) == 30
        c.lease.revoke(lease.id)
        assert c.kv.get("a") is None and c.kv.get("b") is None
        with pytest.raises(errors.NotFoundError):
            c.lease.keepalive(lease.id)


def test_watch_streams_changes_from_a_revision(running_node) -> None:
    with running_node.client() as c:
        start = c.kv.put("w/a", "1").revision
        c.kv.put("w/b", "2")
        c.kv.delete("w/a")
        c.kv.put("other", "x")
        watch = c.watch("w/", prefix=True, start_revision=start, prev_kv=True)
        got = []
        for resp in watch:
            got.extend(resp.events)
            if len(got) >= 3:
                break
        watch.cancel()
        assert [(e.type, e.kv.key) for e in got] == [
            ("put", b"w/a"),
            ("put", b"w/b"),
            ("delete", b"w/a"),
        ]
        assert got[2].prev_kv.value == b"1"


def test_watch_sees_live_writes_and_compaction_is_an_error(running_node) -> None:
    with running_node.client() as c, running_node.client() as writer:
        watch = c.watch("live")
        writer.kv.put("live", "1")
        first = next(r for r in watch if r.events)
        assert first.events[0].kv.value == b"1"
        watch.cancel()
        rev = writer.kv.put("live", "2").revision
        writer.kv.put("live", "3")
        writer.kv.compact(rev + 1)
        with pytest.raises(errors.CompactedError) as info:
            for _ in c.watch("live", start_revision=rev):
                pass
        assert info.value.details["compact_revision"] == rev + 1


def test_bad_input_gets_clear_errors_and_node_keeps_serving(running_node) -> None:
    with running_node.client() as c:
        with pytest.raises(errors.InvalidArgumentError, match="key"):
            c.kv.put(b"k" * (limits.MAX_KEY_BYTES + 1), b"v")
        with pytest.raises(errors.InvalidArgumentError, match="value"):
            c.kv.put(b"k", b"v" * (limits.MAX_VALUE_BYTES + 1))
        too_many = [Op.put(f"k{i}", "v") for i in range(limits.MAX_TXN_OPS + 1)]
        with pytest.raises(errors.InvalidArgumentError):
            c.kv.txn(compare=[], success=too_many, failure=[])
        with pytest.raises(errors.InvalidArgumentError):
            c.call("kv.put", {"key": 5, "value": b"x"})
        with pytest.raises(errors.UnavailableError) as unknown:
            c.call("forge.create_repo", {})
        assert unknown.value.details["plugin"] == "forge"
        with pytest.raises(errors.InvalidArgumentError):
            c.kv.range("a", limit=limits.MAX_RANGE_LIMIT + 1)
        c.kv.put(b"k" * limits.MAX_KEY_BYTES, b"v" * limits.MAX_VALUE_BYTES)
        assert c.kv.get(b"k" * limits.MAX_KEY_BYTES).value == b"v" * limits.MAX_VALUE_BYTES


def test_wrong_token_is_refused(running_node) -> None:
    prefix, _, secret = running_node.token.rpartition(".")
    wrong = f"{prefix}.{'A' * len(secret)}"
    with (
        pytest.raises(errors.UnauthorizedError),
        aspen.connect(running_node.endpoint, token=wrong) as c,
    ):
        c.kv.get("a")


def test_plain_tcp_client_cannot_reach_a_node(running_node) -> None:
    """No unencrypted path: a legacy plain-TCP token does not get through."""
    with (
        pytest.raises(errors.UnavailableError),
        aspen.connect(running_node.endpoint, token="aspen_x") as c,
    ):
        c.kv.get("a")


def test_data_survives_restart(tmp_path) -> None:
    from aspen.node.config import NodeConfig
    from aspen.node.runner import NodeThread

    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    with NodeThread(config) as node, node.client() as c:
        rev = c.kv.put("durable", "yes").revision
    with NodeThread(config) as node, node.client() as c:
        kv = c.kv.get("durable")
        assert kv.value == b"yes" and kv.mod_revision == rev
        assert c.kv.put("after", "restart").revision == rev + 1
