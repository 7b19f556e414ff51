"""Watches over a real node (LMDB + TCP, the real client): history pages bounded by bytes,
split by position, and the largest possible event fits one frame."""

from __future__ import annotations

from typing import Any

import pytest
from kvstore import Store

from aspen import limits
from aspen.client.txn import Op
from aspen.errors import CompactedError
from aspen.kv import compact_command, put_command
from aspen.kv.commands import WatchRequest
from aspen.node.watch import EVENT_FIELDS_BYTES, LARGEST_EVENT_BYTES, WatchHub, event_bytes
from aspen.transport.framing import encode_frame

#: Largest signed 64-bit integer: the widest revision, version or lease a kv map carries.
I64_MAX = 2**63 - 1


def _collect(watch: Any, count: int) -> list[Any]:
    """Read ``watch`` until it has delivered ``count`` events; return its messages."""
    messages, seen = [], 0
    for resp in watch:
        messages.append(resp)
        seen += len(resp.events)
        if seen >= count:
            break
    watch.cancel()
    return messages


def test_watch_largest_event_fits_a_frame() -> None:
    def kv(value: bytes) -> dict[str, Any]:
        return {
            "key": b"k" * limits.MAX_KEY_BYTES,
            "value": value,
            "create_revision": I64_MAX,
            "mod_revision": I64_MAX,
            "version": I64_MAX,
            "lease": I64_MAX,
        }

    biggest = b"v" * limits.MAX_VALUE_BYTES
    event = {"type": "delete", "kv": kv(biggest), "prev_kv": kv(biggest)}
    assert event_bytes(event) == LARGEST_EVENT_BYTES
    item = {"header": {"revision": I64_MAX}, "events": [event], "more": True}
    frame = encode_frame({"id": I64_MAX, "item": item}, max_frame=limits.MAX_FRAME_BYTES)
    fields = len(encode_frame(event)) - 2 * (limits.MAX_KEY_BYTES + limits.MAX_VALUE_BYTES)
    assert fields <= EVENT_FIELDS_BYTES  # the accounting never under-counts an event
    assert len(frame) <= LARGEST_EVENT_BYTES + 128 < limits.MAX_FRAME_BYTES
    assert limits.MAX_WATCH_MESSAGE_BYTES + LARGEST_EVENT_BYTES < limits.MAX_FRAME_BYTES


def test_watch_replays_megabyte_values_with_prev_kv(running_node) -> None:
    keys = [b"big/%02d/" % i + b"k" * (limits.MAX_KEY_BYTES - 8) for i in range(12)]
    first_values = [bytes([65 + i]) * limits.MAX_VALUE_BYTES for i in range(12)]
    second_values = [bytes([97 + i]) * limits.MAX_VALUE_BYTES for i in range(12)]
    with running_node.client(timeout=60) as c:
        start = c.kv.put(keys[0], first_values[0]).revision
        for key, value in zip(keys[1:], first_values[1:], strict=True):
            c.kv.put(key, value)
        for key, value in zip(keys, second_values, strict=True):
            c.kv.put(key, value)
        messages = _collect(c.watch(b"big/", prefix=True, start_revision=start, prev_kv=True), 24)
    events = [ev for m in messages for ev in m.events]
    assert [ev.kv.mod_revision for ev in events] == list(range(start, start + 24))
    assert [ev.kv.key for ev in events] == keys + keys
    assert [ev.kv.value for ev in events] == first_values + second_values
    assert [ev.prev_kv for ev in events[:12]] == [None] * 12
    assert [ev.prev_kv.value for ev in events[12:]] == first_values
    # a message holds one such event: two of them would pass MAX_WATCH_MESSAGE_BYTES
    assert all(len(m.events) == 1 for m in messages)
    assert [m.more for m in messages] == [True] * 23 + [False]


def test_watch_splits_a_big_revision_by_position(running_node, monkeypatch) -> None:
    """A revision of 300 changes read in tiny slices and messages: every wanted event once,
    in order, each message within its bounds."""
    monkeypatch.setattr(limits, "MAX_WATCH_EVENTS_PER_MESSAGE", 7)
    monkeypatch.setattr(limits, "WATCH_READ_SLICE_ENTRIES", 5)
    monkeypatch.setattr(limits, "MAX_WATCH_MESSAGE_BYTES", 3 * (EVENT_FIELDS_BYTES + 40))
    names = [f"{'w' if i % 3 else 'a'}/{i:03d}" for i in range(300)]
    with running_node.client() as c:
        for start in range(0, 300, 100):
            c.kv.txn(
                success=[Op.put(k, "v" * (i % 50)) for i, k in enumerate(names)][
                    start : start + 100
                ]
            )
        deleted_at = c.kv.delete("a/", end="x").revision
        watched = [k.encode() for k in names if k.startswith("w/")]
        watch = c.watch("w/", prefix=True, start_revision=deleted_at, prev_kv=True)
        messages = _collect(watch, len(watched))
    events = [ev for m in messages for ev in m.events]
    assert [(ev.type, ev.kv.key, ev.kv.mod_revision) for ev in events] == [
        ("delete", k, deleted_at) for k in watched
    ]
    assert [ev.prev_kv.key for ev in events] == watched
    for m in messages:
        assert len(m.events) <= 7
        sizes = [EVENT_FIELDS_BYTES + 2 * len(ev.kv.key) + len(ev.prev_kv.value) for ev in m.events]
        assert len(m.events) == 1 or sum(sizes) <= limits.MAX_WATCH_MESSAGE_BYTES
    assert all(m.more for m in messages[:-1]) and not messages[-1].more


def test_watch_from_a_future_revision_starts_there(running_node) -> None:
    with running_node.client() as c:
        now = c.kv.put("fut", "0").revision
        watch = c.watch("fut", start_revision=now + 2)
        c.kv.put("fut", "1")
        c.kv.put("fut", "2")
        (message,) = _collect(watch, 1)
    assert [(ev.kv.value, ev.kv.mod_revision) for ev in message.events] == [(b"2", now + 2)]


@pytest.mark.parametrize("filters", [["nodelete"], ["noput"]])
def test_watch_filters_skip_whole_slices(running_node, monkeypatch, filters) -> None:
    """Slices with nothing to send go on to the next one without a message."""
    monkeypatch.setattr(limits, "WATCH_READ_SLICE_ENTRIES", 3)
    with running_node.client() as c:
        start = c.kv.txn(success=[Op.put(f"f/{i:02d}", "v") for i in range(20)]).revision
        c.kv.delete("f/", prefix=True)
        c.kv.put("f/last", "v")
        wanted, count = ("put", 21) if filters == ["nodelete"] else ("delete", 20)
        watch = c.watch("f/", prefix=True, start_revision=start, filters=filters)
        messages = _collect(watch, count)
    events = [ev for m in messages for ev in m.events]
    assert [ev.type for ev in events] == [wanted] * count


@pytest.mark.anyio
async def test_watch_overtaken_by_compaction_is_told_compacted(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_WATCH_EVENTS_PER_MESSAGE", 2)
    store = Store(tmp_path / "db")
    try:
        first = store.put_rev("k", "0")
        for i in range(1, 6):
            last = store.put_rev("k", str(i))
        hub = WatchHub(store.storage, store.sm, last)
        stream = hub.stream(WatchRequest(key=b"k", start_revision=first))
        assert (await anext(stream))["created"]
        page = await anext(stream)
        assert [ev["kv"]["value"] for ev in page["events"]] == [b"0", b"1"] and page["more"]
        store.ok(compact_command({"revision": last}))
        with pytest.raises(CompactedError) as info:
            await anext(stream)
        assert info.value.details == {"compact_revision": last}
        await stream.aclose()
        assert hub.active == 0
    finally:
        store.storage.close()


def test_watch_skips_reads_of_changes_outside_its_range(running_node) -> None:
    """Writes to other keys do not make a waiting watcher read the history, and it still
    gets every change of its own key, in order, once."""
    with running_node.client() as c:
        watch = c.watch("mine/", prefix=True)
        c.kv.put("mine/0", "a")
        first = _collect_one(watch)
        for i in range(30):
            c.kv.put(f"other/{i}", "v")
        c.kv.txn(success=[Op.put("other/x", "v"), Op.put("mine/1", "b")])
        c.kv.delete("mine/0")
        messages = [first, *_collect(watch, 2)]
        skipped = c.call("node.status")["watch_reads_skipped"]
    events = [(ev.type, ev.kv.key, ev.kv.value) for m in messages for ev in m.events]
    assert events == [
        ("put", b"mine/0", b"a"),
        ("put", b"mine/1", b"b"),
        ("delete", b"mine/0", b""),
    ]
    assert skipped > 0


def _collect_one(watch: Any) -> Any:
    """The next message of ``watch`` that carries events."""
    for resp in watch:
        if resp.events:
            return resp
    raise AssertionError("watch ended")


def test_recent_keys_claim_only_revisions_they_saw_every_change_of(tmp_path) -> None:
    store = Store(tmp_path / "db")
    try:

        def put(key: str) -> None:
            result, events = store.apply(put_command({"key": key, "value": "v"}))
            hub.advance(result["header"]["revision"], events)

        base = 1  # a fresh store's revision
        hub = WatchHub(store.storage, store.sm, base)
        req = WatchRequest(key=b"a")
        put("b")
        put("c")
        assert hub.recent.untouched(req, base, base + 2)
        assert not hub.recent.untouched(WatchRequest(key=b"b"), base, base + 2)
        assert hub.recent.untouched(WatchRequest(key=b"b"), base + 1, base + 2)
        assert not hub.recent.untouched(req, base - 1, base + 2)  # before it started
        store.apply(put_command({"key": "a", "value": "v"}))
        hub.advance(base + 3)  # a revision without its events: nothing up to it is claimed
        assert not hub.recent.untouched(req, base + 2, base + 3)
        put("c")
        assert hub.recent.untouched(req, base + 3, base + 4)
        assert not hub.recent.untouched(req, base + 2, base + 4)
    finally:
        store.storage.close()
