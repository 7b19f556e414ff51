"""The cluster store (:class:`KvStore` on a real node) behaves exactly like
:class:`MemoryStore`, and what it writes to the KV is sealed and bound to its path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aspen import limits as core_limits
from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.kvstore import KvStore
from aspen_secrets.logical import SealedError
from aspen_secrets.plugin import service_for
from aspen_secrets.store import ABSENT, MemoryStore, ScopedStore, Store, Write

Check = Callable[[Store], Awaitable[None]]


async def _puts_and_gets(store: Store) -> None:
    assert await store.get("a/x") is None
    assert await store.commit([Write("a/x", {"v": 1, "b": b"\x00\xff"})])
    entry = await store.get("a/x")
    assert entry is not None and entry.value == {"v": 1, "b": b"\x00\xff"}
    assert entry.revision > 0
    assert await store.commit([Write("a/x", [1, "two", None])])
    again = await store.get("a/x")
    assert again is not None and again.value == [1, "two", None]
    assert again.revision > entry.revision


async def _expectations(store: Store) -> None:
    assert await store.commit([Write("e/k", "one", expect_revision=ABSENT)])
    first = await store.get("e/k")
    assert first is not None
    assert not await store.commit([Write("e/k", "dup", expect_revision=ABSENT)])
    assert await store.commit([Write("e/k", "two", expect_revision=first.revision)])
    assert not await store.commit([Write("e/k", "stale", expect_revision=first.revision)])
    current = await store.get("e/k")
    assert current is not None and current.value == "two"


async def _atomic(store: Store) -> None:
    assert await store.commit([Write("t/held", 1)])
    # one failing expectation: nothing of the commit is written
    ok = await store.commit(
        [Write("t/new", 1), Write("t/held", 2, expect_revision=ABSENT), Write("t/other", 3)]
    )
    assert not ok
    assert await store.get("t/new") is None and await store.get("t/other") is None
    held = await store.get("t/held")
    assert held is not None and held.value == 1
    assert await store.commit([Write("t/held", delete=True), Write("t/new", 5)])
    assert await store.get("t/held") is None
    assert await store.commit([Write("t/absent", delete=True)])  # deleting nothing is fine


async def _scans(store: Store) -> None:
    for name in ("s/b", "s/a", "s/c/d", "sx", "r/z"):
        assert await store.commit([Write(name, name.upper())])
    assert await store.keys("s/") == ["s/a", "s/b", "s/c/d"]
    assert [(p, e.value) for p, e in await store.scan("s/")] == [
        ("s/a", "S/A"),
        ("s/b", "S/B"),
        ("s/c/d", "S/C/D"),
    ]
    assert await store.keys("s/", limit=2) == ["s/a", "s/b"]
    assert await store.keys("nothing/") == []
    assert await store.children("s/") == (["a", "b", "c/"], False)
    assert await store.children("s/", limit=2) == (["a", "b"], True)
    assert await store.children("nothing/") == ([], False)
    scoped = ScopedStore(store, "s/")
    assert await scoped.keys("") == ["a", "b", "c/d"]
    assert await scoped.children("") == (["a", "b", "c/"], False)
    assert await scoped.commit([Write("e", 1, expect_revision=ABSENT)])
    assert await store.keys("s/e") == ["s/e"]


CHECKS: list[Check] = [_puts_and_gets, _expectations, _atomic, _scans]


@pytest.mark.anyio
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.strip("_"))
async def test_memory_store(check: Check) -> None:
    await check(MemoryStore())


def _run(secrets_node: Any, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return secrets_node.call(fn, *args)


def _kvstore(secrets_node: Any) -> KvStore:
    service = service_for(secrets_node.node)
    assert service is not None
    return service.store


def test_kv_store_has_memory_store_semantics(secrets_node: Any) -> None:
    store = ScopedStore(_kvstore(secrets_node), "test-store/")
    for check in CHECKS:
        _run(secrets_node, check, store)


def test_kv_store_pages_scans(secrets_node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SECRETS_STORE_PAGE_SIZE", 3)
    store = ScopedStore(_kvstore(secrets_node), "paging/")

    async def check() -> None:
        writes = [Write(f"k{i:02}", i) for i in range(10)]
        assert await store.commit(writes)
        assert await store.keys("") == [f"k{i:02}" for i in range(10)]
        assert [e.value for _, e in await store.scan("")] == list(range(10))
        assert await store.keys("", limit=7) == [f"k{i:02}" for i in range(7)]

    _run(secrets_node, check)


def test_kv_store_seals_values_bound_to_their_path(secrets_node: Any) -> None:
    store = _kvstore(secrets_node)
    secret = "plaintext-marker-7f3a"

    async def check() -> None:
        assert await store.commit([Write("sealing/a", {"secret": secret})])
        raw = (await secrets_node.node.call("kv.range", {"key": store.kv_key("sealing/a")}))["kvs"][
            0
        ]["value"]
        assert secret.encode() not in raw
        # the same sealed bytes under another key do not open (AAD = the key)
        await secrets_node.node.call("kv.put", {"key": store.kv_key("sealing/b"), "value": raw})
        with pytest.raises(SealedError, match="failed authentication"):
            await store.get("sealing/b")

    _run(secrets_node, check)


def test_kv_store_refuses_oversize_commits(secrets_node: Any) -> None:
    store = _kvstore(secrets_node)

    async def check() -> None:
        with pytest.raises(InvalidArgumentError, match="MAX_TXN_OPS"):
            await store.commit([Write(f"big/{i}", i) for i in range(core_limits.MAX_TXN_OPS + 1)])
        with pytest.raises(InvalidArgumentError, match="MAX_VALUE_BYTES"):
            await store.commit([Write("big/value", b"x" * core_limits.MAX_VALUE_BYTES)])
        assert await store.keys("big/") == []

    _run(secrets_node, check)


def test_kv_store_lists_children_reading_what_it_answers(secrets_node: Any) -> None:
    """Issue 18: a LIST reads the names it answers, not every path below them."""
    store = ScopedStore(_kvstore(secrets_node), "listing/")
    reader = secrets_node.node.parts.state_machine.reader

    async def check() -> tuple[list[str], bool]:
        for folder in ("a", "b", "c"):
            assert await store.commit([Write(f"{folder}/{i:03}", i) for i in range(300)])
        assert await store.commit([Write("leaf", 1)])
        before = reader.rows_read
        listed = await store.children("")
        assert reader.rows_read - before < 300  # not the 901 paths
        return listed

    assert _run(secrets_node, check) == (["a/", "b/", "c/", "leaf"], False)
