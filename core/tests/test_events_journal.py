"""The event journal (aspen.journal) on a real node (real LMDB, real sockets): events
published in the same transaction as the KV change they report, dense positions, retention
by count, bytes and age applied in apply, typed errors below the retention and for bad
input, reads that cost what they return, live watches, and the journal in snapshots."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from kvstore import Store

import aspen
from aspen import limits
from aspen.client import Compare, Op
from aspen.errors import CompactedError, InvalidArgumentError, NotFoundError
from aspen.journal.commands import publish_op, retention_command
from aspen.journal.match import Match
from aspen.kv import snapshot as sm_snapshot
from aspen.kv import txn_command
from aspen.plugins.types import RpcHandler
from aspen.testing import wait_for

REF = b"/_aspen/shipper/ref"
#: A payload just over the bound once msgpack adds its header.
BIG = limits.EVENTS_MAX_PAYLOAD_BYTES


class Shipper:
    """A plugin that moves a ref and announces it with ``shipper.shipped``, atomically."""

    @aspen.hookimpl
    def aspen_rpc_handlers(self) -> list[RpcHandler]:
        return [RpcHandler("shipper.ship", self.ship)]

    async def ship(self, ctx: Any, params: dict[str, Any]) -> Any:
        node = ctx.node
        return await node.call(
            "kv.txn",
            {
                "compare": [
                    {"key": REF, "target": "version", "op": "==", "value": params["expected"]}
                ],
                "success": [
                    {"put": {"key": REF, "value": params["new"].encode()}},
                    node.events.op("shipper.shipped", "acme/widgets", {"new": params["new"]}),
                ],
            },
        )


pytestmark = pytest.mark.aspen_plugins(shipper=Shipper())


def _end(c: Any) -> int:
    return int(c.events.status()["next"])


def _publish_many(c: Any, n: int, *, name: str = "test.tick", size: int = 0) -> None:
    """Publish ``n`` events, up to MAX_TXN_OPS per transaction."""
    for lo in range(0, n, limits.MAX_TXN_OPS):
        ops = [
            {"publish": {"name": name, "subject": f"s/{i}", "payload": b"p" * size}}
            for i in range(lo, min(n, lo + limits.MAX_TXN_OPS))
        ]
        c.call("kv.txn", {"success": ops})


# ---------------------------------------------------------------------------- atomicity
def test_an_event_is_published_with_its_kv_change_or_not_at_all(node) -> None:
    with node.client() as c:
        shipped = c.call("shipper.ship", {"expected": 0, "new": "c1"})
        assert shipped["succeeded"]
        position = shipped["responses"][1]["publish"]["position"]
        (event,) = c.events.read(position)["events"]
        ref = c.kv.get(REF)
        assert event["revision"] == ref.mod_revision == shipped["header"]["revision"]
        assert event["name"] == "shipper.shipped" and event["payload"] == {"new": "c1"}
        end = _end(c)
        # a compare that fails: the branch with the publish does not run
        stale = c.call("shipper.ship", {"expected": 0, "new": "c2"})
        assert not stale["succeeded"] and _end(c) == end and c.kv.get(REF).value == b"c1"
        # a txn that fails in apply (unknown lease) rolls back its put and its event
        with pytest.raises(NotFoundError):
            c.call(
                "kv.txn",
                {
                    "success": [
                        {"publish": {"name": "test.lost", "subject": "x"}},
                        {"put": {"key": "lost", "value": b"v", "lease": 12345}},
                    ]
                },
            )
        assert _end(c) == end and c.kv.get("lost") is None
        assert c.events.read(0, match="test.lost")["events"] == []


def test_a_client_txn_publishes_with_its_put(node) -> None:
    with node.client() as c:
        result = c.kv.txn(
            compare=[Compare.version("/app/v") == 0],
            success=[Op.put("/app/v", "1"), Op.publish("app.released", "v1", {"n": 1})],
        )
        assert result.succeeded
        (event,) = c.events.read(0, match="app.*")["events"]
        assert event["revision"] == result.revision == c.kv.get("/app/v").mod_revision
        assert result.responses[1].position == event["position"]


def test_positions_are_dense_and_every_publish_takes_a_revision(node) -> None:
    with node.client() as c:
        revision = c.kv.put("a", "1").revision
        first = c.events.publish("test.one", "s")
        assert first["revision"] == revision + 1  # an event on its own is a write too
        txn = c.call(
            "kv.txn",
            {"success": [{"publish": {"name": "test.two", "subject": str(i)}} for i in range(3)]},
        )
        positions = [r["publish"]["position"] for r in txn["responses"]]
        assert positions == [first["position"] + 1 + i for i in range(3)]
        events = c.events.read(0)["events"]
        assert [e["position"] for e in events] == list(range(1, len(events) + 1))
        assert [e["revision"] for e in events] == [revision + 1] + [revision + 2] * 3


# ---------------------------------------------------------------------------- retention
def test_retention_by_count_trims_the_oldest_and_older_cursors_are_compacted(node) -> None:
    with node.client() as c:
        assert c.events.set_retention(max_events=10)["max_events"] == 10
        _publish_many(c, 25)
        status = c.events.status()
        assert (status["first"], status["next"], status["count"]) == (16, 26, 10)
        with pytest.raises(CompactedError) as info:
            c.events.read(3)
        assert info.value.details["oldest"] == 16 and "position 16" in info.value.message
        assert [e["position"] for e in c.events.read(0)["events"]] == list(range(16, 26))
        with pytest.raises(CompactedError):  # events after an early revision were trimmed
            c.events.read(after_revision=1)
        with pytest.raises(CompactedError):
            for _ in c.events.tail(5):
                break


def test_retention_by_bytes_keeps_the_journal_under_its_bound(node) -> None:
    with node.client() as c:
        c.events.set_retention(max_bytes=20_000)
        _publish_many(c, 100, size=1000)
        status = c.events.status()
        assert status["bytes"] <= 20_000 and 15 <= status["count"] <= 20
        assert status["first"] == 101 - status["count"]
        # lowering it trims at once (in the retention command's apply)
        c.events.set_retention(max_bytes=5_000)
        assert c.events.status()["bytes"] <= 5_000


def test_retention_by_age_follows_the_proposers_time(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ok(retention_command({"max_age": 60}))
    for now in (1000.0, 1030.0, 1070.0, 1100.0):
        op = publish_op({"name": "test.aged", "subject": "s"}, now=now)
        store.ok({"op": "txn", "compare": [], "success": [op], "failure": []})
    with store.storage.begin() as txn:
        state = store.sm.journal.state(txn)
    assert (state.first, state.next) == (3, 5)  # 1000 and 1030 are over 60 s older than 1100


# ---------------------------------------------------------------------------- reads
def test_a_page_costs_what_it_returns(node) -> None:
    journal = node.node.parts.state_machine.journal
    with node.client() as c:
        _publish_many(c, 20_000)
        c.events.publish("test.rare", "needle")
        for start in (1, 10_000, 19_990):
            before = journal.rows_read
            page = c.events.read(start, limit=10)
            assert journal.rows_read - before <= 11  # its events and the one after (more)
            assert [e["position"] for e in page["events"]] == list(range(start, start + 10))
            assert page["more"] and page["next"] == start + 10
        # a filtered read examines at most EVENTS_READ_SLICE_EVENTS, then says where to go on
        before = journal.rows_read
        page = c.events.read(1, match="test.rare")
        assert journal.rows_read - before <= limits.EVENTS_READ_SLICE_EVENTS + 1
        assert page["events"] == [] and page["more"]
        assert page["next"] == 1 + limits.EVENTS_READ_SLICE_EVENTS
        found = []
        while not found:
            page = c.events.read(page["next"], match="test.rare:need*")
            found = page["events"]
        assert found[0]["subject"] == "needle"
        # the first event after a revision: a binary search, not a scan
        revision = found[0]["revision"]
        before = journal.rows_read
        (after,) = c.events.read(after_revision=revision - 1)["events"]
        assert after["position"] == found[0]["position"]
        assert journal.rows_read - before <= 20 + 2


def test_a_watch_streams_from_a_cursor_then_live(node) -> None:
    with node.client() as c:
        c.events.publish("test.old", "a")
        c.events.publish("test.other", "b")
        stream = c.events.tail(1, match="test.old")
        try:
            assert next(stream)["subject"] == "a"
            c.events.publish("test.other", "c")
            c.events.publish("test.old", "d")
            event = next(stream)
            assert (event["name"], event["subject"], event["position"]) == ("test.old", "d", 4)
        finally:
            stream.close()
        assert wait_for(lambda: node.node.parts.journal_hub.active == 0, timeout=10) is not None


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("event", "bound"),
    [
        ({"name": "test.big", "payload": b"x" * BIG}, "EVENTS_MAX_PAYLOAD_BYTES"),
        ({"name": "test.big", "subject": "s" * 2000}, "EVENTS_MAX_SUBJECT_BYTES"),
        ({"name": "test." + "n" * 200}, "EVENTS_MAX_NAME_BYTES"),
        ({"name": "Forge.Push"}, "dotted lower-case"),
        ({"name": "single"}, "dotted lower-case"),
        ({"name": "kv.put"}, "belongs to the core"),
    ],
)  # fmt: skip
def test_bad_events_are_refused_naming_the_bound(node, event: dict, bound: str) -> None:
    with node.client() as c:
        end = _end(c)
        with pytest.raises(InvalidArgumentError, match=bound):
            c.call("events.publish", event)
        with pytest.raises(InvalidArgumentError, match=bound):
            c.call("kv.txn", {"success": [{"publish": event}]})
        assert _end(c) == end


def test_a_payload_msgpack_cannot_carry_is_refused_in_process() -> None:
    from aspen.journal.api import EventsAPI

    with pytest.raises(InvalidArgumentError, match="not msgpack-able"):
        EventsAPI.op("test.odd", "s", {1, 2})


def test_bad_reads_are_refused(node) -> None:
    with node.client() as c:
        for params in ({"match": "forge.push:"}, {"from": -1}, {"from": 1, "after_revision": 1}):
            with pytest.raises(InvalidArgumentError):
                c.call("events.read", params)


# ---------------------------------------------------------------------------- snapshots
def test_a_snapshot_carries_the_journal(tmp_path: Path) -> None:
    src = Store(tmp_path / "src")
    src.ok(retention_command({"max_events": 30}))
    for i in range(50):
        src.put(f"k/{i}", "v")
        src.ok(txn_command({"success": [{"publish": {"name": "test.n", "subject": str(i)}}]}))
    with src.storage.begin() as txn:
        chunks = list(sm_snapshot.dump_chunks(src.storage, txn))
        want = src.sm.journal.read(txn, 21, Match(), 100)
        want_state = src.sm.journal.state(txn)
    spool = io.BytesIO(b"".join(len(c).to_bytes(4, "big") + c for c in chunks))
    dst = Store(tmp_path / "dst")
    dst.ok(txn_command({"success": [{"publish": {"name": "test.stale", "subject": "x"}}]}))
    with dst.storage.begin(write=True) as txn:
        sm_snapshot.restore(dst.storage, txn, sm_snapshot.read_spool(spool))
    dst.sm.forget_cache()
    with dst.storage.begin() as txn:
        assert dst.sm.journal.state(txn) == want_state
        assert dst.sm.journal.retention(txn).max_events == 30
        assert dst.sm.journal.read(txn, 21, Match(), 100) == want
    # and the next publish goes on from the snapshot's end
    result = dst.ok(txn_command({"success": [{"publish": {"name": "test.n", "subject": "z"}}]}))
    assert result["responses"][0]["publish"]["position"] == want_state.next
