"""The client's KV, lease and watch API against a real node (LMDB + TCP on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import aspen
from aspen import errors
from aspen.client import (
    Compare,
    DeleteResult,
    KeyValue,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    WatchResponse,
    prefix_end,
)
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread

BACKENDS = ["asyncio"] + (["trio"] if importlib.util.find_spec("trio") else [])


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The client's event loop (the node runs on asyncio in its own thread)."""
    return request.param


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """One real node shared by this module's tests (each test uses its own key prefix)."""
    config = NodeConfig(data_dir=tmp_path_factory.mktemp("node"), listen="127.0.0.1:0")
    with NodeThread(config) as running:
        yield running


def test_prefix_end() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


@pytest.mark.anyio
async def test_put_get_range_delete(node: NodeThread, anyio_backend: str) -> None:
    p = f"pgrd-{anyio_backend}/"
    async with aspen.aconnect(node.endpoint, token=node.token) as c:
        first = await c.kv.put(p + "a", "1")
        assert isinstance(first, PutResult) and first.prev_kv is None
        second = await c.kv.put((p + "a").encode(), b"2", prev_kv=True)
        assert second.revision == first.revision + 1
        assert second.prev_kv == KeyValue(
            (p + "a").encode(), b"1", first.revision, first.revision, 1, 0
        )
        kv = await c.kv.get(p + "a")
        assert kv is not None and (kv.value, kv.version) == (b"2", 2)
        old = await c.kv.get(p + "a", revision=first.revision)
        assert old is not None and old.value == b"1"
        assert await c.kv.get(p + "missing") is None
        for i in range(7):
            await c.kv.put(f"{p}k{i}", str(i))
        page = await c.kv.range(p + "k", limit=3)
        assert isinstance(page, RangeResult)
        assert len(page) == 3 and page.more and page.count is None  # not asked for
        counted = await c.kv.range(p + "k", limit=3, count=True)
        assert counted.kvs == page.kvs and counted.count == 7
        assert [kv.key for kv in page] == [f"{p}k{i}".encode() for i in range(3)]
        keys = await c.kv.range(p + "k", keys_only=True)
        assert all(kv.value == b"" for kv in keys) and len(keys) == 7
        assert (await c.kv.range(p + "k", count_only=True)).count == 7
        interval = await c.kv.range(p + "k1", end=p + "k3")
        assert [kv.value for kv in interval] == [b"1", b"2"]
        scanned = [kv.value async for kv in c.kv.scan(p + "k", page_size=2)]
        assert scanned == [str(i).encode() for i in range(7)]
        deleted = await c.kv.delete(p + "k", prefix=True, prev_kv=True)
        assert isinstance(deleted, DeleteResult) and deleted.deleted == 7
        assert len(deleted.prev_kvs) == 7
        assert (await c.kv.delete(p + "a", end=p + "b")).deleted == 1
        assert (await c.kv.range(p, count=True)).count == 0


@pytest.mark.anyio
async def test_txn_branches_and_responses(node: NodeThread, anyio_backend: str) -> None:
    p = f"txn-{anyio_backend}/"
    async with aspen.aconnect(node.endpoint, token=node.token) as c:
        created = await c.kv.txn(
            compare=[Compare.version(p + "lock") == 0],
            success=[Op.put(p + "lock", b"me"), Op.get(p + "lock")],
            failure=[Op.get(p + "lock")],
        )
        assert isinstance(created, TxnResult) and created.succeeded
        put, got = created.responses
        assert isinstance(put, PutResult) and isinstance(got, RangeResult)
        assert got.kvs[0].value == b"me" and put.revision == created.revision
        again = await c.kv.txn(
            compare=[Compare.version(p + "lock") == 0],
            success=[Op.put(p + "lock", b"other")],
            failure=[
                Op.range(p),
                Op.txn([Compare.value(p + "lock") == b"me"], [Op.delete(p + "lock")]),
            ],
        )
        assert not again.succeeded
        listed, nested = again.responses
        assert [kv.key for kv in listed] == [(p + "lock").encode()]
        assert isinstance(nested, TxnResult) and nested.succeeded
        assert isinstance(nested.responses[0], DeleteResult)
        assert await c.kv.get(p + "lock") is None
        with pytest.raises(TypeError):
            Compare.version(p + "x") == b"not an int"  # noqa: B015 - builds a compare


@pytest.mark.anyio
async def test_compact_then_old_revisions_are_gone(node: NodeThread, anyio_backend: str) -> None:
    p = f"compact-{anyio_backend}/"
    async with aspen.aconnect(node.endpoint, token=node.token) as c:
        first = await c.kv.put(p + "a", b"1")
        await c.kv.put(p + "a", b"2")
        await c.kv.compact(first.revision + 1)
        with pytest.raises(errors.CompactedError):
            await c.kv.get(p + "a", revision=first.revision)


@pytest.mark.anyio
async def test_leases(node: NodeThread, anyio_backend: str) -> None:
    p = f"lease-{anyio_backend}/"
    async with aspen.aconnect(node.endpoint, token=node.token) as c:
        lease = await c.lease.grant(60)
        assert lease.id > 0 and lease.ttl == 60
        await c.kv.put(p + "k", b"v", lease=lease.id)
        info = await c.lease.ttl(lease.id, keys=True)
        assert info.id == lease.id and info.granted_ttl == 60 and 0 < info.ttl <= 60
        assert info.keys == [(p + "k").encode()]
        assert await c.lease.keepalive(lease.id) == 60
        assert lease.id in await c.lease.list()
        await c.lease.revoke(lease.id)
        assert await c.kv.get(p + "k") is None
        with pytest.raises(errors.NotFoundError):
            await c.lease.ttl(lease.id)


@pytest.mark.anyio
async def test_watch_sees_changes_after_it_is_created(node: NodeThread, anyio_backend: str) -> None:
    p = f"watch-{anyio_backend}/"
    async with aspen.aconnect(node.endpoint, token=node.token) as c:
        before = await c.kv.put(p + "old", b"0")
        async with c.watch(p, prefix=True, prev_kv=True) as w:
            assert w.revision >= before.revision
            await c.kv.put(p + "a", b"1")
            await c.kv.put(p + "a", b"2")
            await c.kv.delete(p + "a")
            await c.kv.put("elsewhere-" + p, b"x")
            events: list[Any] = []
            with anyio.fail_after(10):
                async for resp in w:
                    assert isinstance(resp, WatchResponse)
                    events.extend(resp.events)
                    if len(events) >= 3:
                        break
        assert [(e.type, e.kv.value) for e in events] == [
            ("put", b"1"),
            ("put", b"2"),
            ("delete", b""),
        ]
        assert events[1].prev_kv is not None and events[1].prev_kv.value == b"1"
        replay = c.watch(p + "old", start_revision=before.revision)
        with anyio.fail_after(10):
            resp = await replay.__anext__()
        await replay.aclose()
        assert resp.events[0].kv.value == b"0"


def test_sync_client_mirrors_the_async_api(node: NodeThread) -> None:
    p = "sync/"
    with aspen.connect(node.endpoint, token=node.token) as c:
        assert list(inspect.signature(c.kv.put).parameters) == ["key", "value", "lease", "prev_kv"]
        put = c.kv.put(p + "a", b"1")
        assert c.kv.get(p + "a").mod_revision == put.revision
        c.kv.put(p + "b", b"2")
        assert [kv.key for kv in c.kv.scan(p, page_size=1)] == [b"sync/a", b"sync/b"]
        assert c.status()["revision"] >= put.revision
        lease = c.lease.grant(30)
        assert lease.id in c.lease.list()
        watch = c.watch(p, prefix=True)
        c.kv.put(p + "c", b"3")
        resp = next(watch)
        assert resp.events[0].kv.key == b"sync/c"
        watch.cancel()
        assert list(watch) == []
        with c.watch(p + "c") as w2:
            c.kv.delete(p + "c")
            assert next(w2).events[0].type == "delete"
