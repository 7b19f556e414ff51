"""aspen.kv.paging on a real node: pages continue by key at one revision, children skip
folders, and what each helper reads is what it answers (rows counted by the node)."""

from __future__ import annotations

import pytest

import aspen
from aspen import limits
from aspen.client import Op
from aspen.kv import paging


def _rows(node) -> int:
    return node.node.parts.state_machine.reader.rows_read


@pytest.mark.anyio
async def test_scan_reads_every_key_at_the_first_pages_revision(running_node) -> None:
    async with aspen.aconnect(running_node.endpoint, token=running_node.token) as c:
        await c.kv.txn(success=[Op.put(f"s/{i:03d}", str(i)) for i in range(25)])
        await c.kv.put("t", "after the prefix")
        seen = []
        async for kv in paging.scan(c.call, b"s/", page_size=4):
            if not seen:
                await c.kv.put("s/999", "written after the first page")
            seen.append(kv["key"])
        assert seen == [f"s/{i:03d}".encode() for i in range(25)]  # one snapshot
        pages = [p async for p in paging.pages(c.call, b"s/", page_size=10, keys_only=True)]
        assert [len(p["kvs"]) for p in pages] == [10, 10, 6]
        assert all(kv["value"] == b"" for p in pages for kv in p["kvs"])


@pytest.mark.anyio
async def test_collect_reads_at_most_one_more_than_it_keeps(running_node) -> None:
    async with aspen.aconnect(running_node.endpoint, token=running_node.token) as c:
        await c.kv.txn(success=[Op.put(f"c/{i:04d}", "v") for i in range(500)])
        before = _rows(running_node)
        records, truncated, revision = await paging.collect(c.call, b"c/", most=20)
        assert _rows(running_node) - before <= 2 * 22  # each key: index row, history entry
        assert len(records) == 20 and truncated and revision > 0
        everything, truncated, _ = await paging.collect(c.call, b"c/", most=500)
        assert len(everything) == 500 and not truncated


@pytest.mark.anyio
async def test_children_skip_the_keys_below_each_folder(running_node) -> None:
    async with aspen.aconnect(running_node.endpoint, token=running_node.token) as c:
        await c.kv.put("v/", "the prefix itself")
        await c.kv.put("v/a", "leaf")
        for folder in ("b", "d"):
            for lo in range(0, 2000, limits.MAX_TXN_OPS):
                ops = [Op.put(f"v/{folder}/{i:05d}", "x") for i in range(lo, lo + 1000)]
                await c.kv.txn(success=ops)
        await c.kv.put("v/c", "leaf")
        await c.kv.put("v/e/deep/er", "leaf")
        await c.kv.put("w/x", "outside")
        before = _rows(running_node)
        names, truncated = await paging.children(c.call, b"v/", most=100)
        assert names == [b"a", b"b/", b"c", b"d/", b"e/"] and not truncated
        assert _rows(running_node) - before < 100  # not the 4000 keys below the folders
        assert await paging.children(c.call, b"v/", most=2) == ([b"a", b"b/"], True)
        assert await paging.children(c.call, b"nothing/", most=5) == ([], False)


@pytest.mark.anyio
async def test_pages_follow_the_byte_bound(running_node) -> None:
    big = b"x" * (limits.MAX_VALUE_BYTES // 2)
    async with aspen.aconnect(running_node.endpoint, token=running_node.token) as c:
        for i in range(9):
            await c.kv.put(f"b/{i}", big)
        pages = [p async for p in paging.pages(c.call, b"b/", page_size=100)]
        assert len(pages) > 1 and sum(len(p["kvs"]) for p in pages) == 9
        for page in pages:
            size = sum(len(kv["key"]) + len(kv["value"]) for kv in page["kvs"])
            assert size <= limits.MAX_RANGE_PAGE_BYTES


def test_client_scan_stays_at_the_first_pages_revision(running_node) -> None:
    """It used to pin the revision of the page before, which is the store's current one
    (a page's header): keys written during a scan showed up from its third page on."""
    with running_node.client() as c:
        c.kv.txn(success=[Op.put(f"r/{i}", "v") for i in range(9)])
        seen = []
        with c.kv.scan("r/", page_size=2) as records:
            for kv in records:
                c.kv.put(f"r/8{len(seen)}", "written during the scan, ahead of it")
                seen.append(kv.key)
        assert seen == [f"r/{i}".encode() for i in range(9)]
