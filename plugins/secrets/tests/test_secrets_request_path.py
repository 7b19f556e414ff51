"""The request fast path: one linearizable read per request, the opened-value cache, and
inline (thread-free) transit work for cheap keys."""

from __future__ import annotations

from typing import Any

from aspen_secrets.consistency import in_scope, read_scope
from aspen_secrets.engines.transit.batch import _small, run
from aspen_secrets.kvstore import KvStore
from aspen_secrets.opencache import OpenedCache
from aspen_secrets.store import Write


class _RecordingNode:
    """The real node, with the ``kv.range`` params it is called with recorded."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self.ranges: list[dict[str, Any]] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "kv.range":
            self.ranges.append(dict(params))
        return await self._node.call(method, params)


def _service(secrets_node: Any) -> Any:
    return secrets_node.node.plugin_state("secrets")["service"]


def test_a_request_scope_pays_for_one_linearizable_read(secrets_node: Any) -> None:
    service = _service(secrets_node)
    spy = _RecordingNode(secrets_node.node)
    store = KvStore(spy, service.keyring)

    async def scenario() -> list[Any]:
        assert await store.commit([Write("perf/a", {"n": 1}), Write("perf/b", {"n": 2})])
        outside = [await store.get("perf/a"), await store.get("perf/b")]
        with read_scope():
            assert in_scope()
            inside = [await store.get("perf/a"), await store.get("perf/b")]
            inside.append(await store.keys("perf/"))
        return [outside, inside]

    outside, inside = secrets_node.call(scenario)
    assert [e.value for e in outside] == [{"n": 1}, {"n": 2}]
    assert [e.value for e in inside[:2]] == [{"n": 1}, {"n": 2}]
    assert inside[2] == ["perf/a", "perf/b"]
    serializable = [bool(p.get("serializable")) for p in spy.ranges]
    # outside a scope every read is linearizable; inside, only the first one
    assert serializable == [False, False, False, True, True]
    assert not in_scope()


def test_the_opened_cache_serves_only_the_revision_it_holds(secrets_node: Any) -> None:
    service = _service(secrets_node)
    store = KvStore(secrets_node.node, service.keyring)

    async def scenario() -> tuple[Any, Any, Any]:
        assert await store.commit([Write("perf/c", {"v": "old"})])
        first = await store.get("perf/c")
        first.value["v"] = "changed by the caller"  # must not leak into the cache
        again = await store.get("perf/c")
        assert await store.commit([Write("perf/c", {"v": "new"})])
        return first, again, await store.get("perf/c")

    first, again, newer = secrets_node.call(scenario)
    assert again.value == {"v": "old"} and again.revision == first.revision
    assert newer.value == {"v": "new"} and newer.revision > first.revision


def test_opened_cache_bounds() -> None:
    cache = OpenedCache(budget=90, max_value=40)  # sizes count key + value
    cache.put(b"k1", 5, b"x" * 30)
    assert cache.get(b"k1", 5) == b"x" * 30
    assert cache.get(b"k1", 6) is None  # another revision is another value
    cache.put(b"k2", 1, b"y" * 41)  # over the per-value bound: not kept
    assert cache.get(b"k2", 1) is None
    cache.put(b"k3", 1, b"z" * 30)
    cache.put(b"k4", 1, b"w" * 30)  # over the budget: the least recently used goes
    assert cache.get(b"k1", 5) is None
    assert len(cache) == 2
    cache.put(b"k3", 2, b"q")
    assert cache.get(b"k3", 1) is None and cache.get(b"k3", 2) == b"q"


def test_small_transit_requests_run_inline() -> None:
    assert _small({"plaintext": "aGVsbG8="})
    assert _small({"batch_input": [{"plaintext": "aGk="}] * 16})
    assert not _small({"batch_input": [{"plaintext": "aGk="}] * 17})
    assert not _small({"plaintext": "A" * (64 * 1024 + 4)})


async def _thread_of(cheap: bool, data: dict[str, Any]) -> bool:
    import threading

    loop_thread = threading.get_ident()
    response = await run(
        data, lambda item: {"same": threading.get_ident() == loop_thread}, cheap=cheap
    )
    return response.data["same"]


def test_cheap_work_stays_on_the_event_loop() -> None:
    import asyncio

    assert asyncio.run(_thread_of(True, {"plaintext": "aGk="})) is True
    assert asyncio.run(_thread_of(False, {"plaintext": "aGk="})) is False
    assert asyncio.run(_thread_of(True, {"plaintext": "A" * 70_000})) is False
