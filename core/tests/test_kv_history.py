"""Leases, history (watch reads), compaction, old-revision reads, persistence, determinism."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kvstore import Store

from aspen import limits
from aspen.errors import (
    CompactedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from aspen.events import KeyValue, KvBatch, KvDelete, LeaseExpired
from aspen.kv import (
    compact_command,
    delete_command,
    lease_expire_command,
    lease_grant_command,
    lease_revoke_command,
    put_command,
    range_request,
    txn_command,
)
from aspen.storage import DB_NAMES, Storage


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "db")
    yield store
    store.storage.close()


# ---------------------------------------------------------------------------- leases
def test_grant_attach_move_and_detach(kv: Store) -> None:
    assert kv.grant(5, ttl=30) == {"header": {"revision": 1}, "id": 5, "ttl": 30}
    result, _ = kv.apply(lease_grant_command({"ttl": 9, "id": 5}, 1))
    assert isinstance(result, InvalidArgumentError) and "lease 5 already exists" in result.message
    kv.grant(6)
    assert (kv.sm.lease_ids(), kv.sm.lease_count(), kv.sm.lease_ttls()) == (
        [5, 6],
        2,
        [(5, 30), (6, 10)],
    )
    long_key = b"k" * 700
    kv.put_rev("b", lease=5)
    kv.put_rev("a", lease=5)
    kv.put_rev(long_key, lease=5)
    assert kv.sm.lease_info(None, 5, keys=True) == {
        "id": 5,
        "granted_ttl": 30,
        "keys": [b"a", b"b", long_key],
    }
    assert kv.sm.lease_info(None, 5) == {"id": 5, "granted_ttl": 30, "keys": []}
    kv.put_rev("a", lease=6)  # moves to lease 6
    kv.put_rev("b")  # detaches
    kv.ok(delete_command({"key": long_key}))
    assert kv.sm.lease_info(None, 5, keys=True)["keys"] == []
    assert kv.sm.lease_info(None, 6, keys=True)["keys"] == [b"a"]
    assert kv.sm.get(None, b"a").lease == 6 and kv.sm.get(None, b"b").lease == 0
    assert kv.sm.lease_info(None, 99) is None


def test_lease_keys_listing_is_capped(kv: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_LEASE_KEYS_LISTED", 2)
    kv.grant(1)
    for key in "cab":
        kv.put_rev(key, lease=1)
    assert kv.sm.lease_info(None, 1, keys=True)["keys"] == [b"a", b"b"]


def test_lease_count_bound(kv: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_LEASES", 2)
    kv.grant(1)
    kv.grant(2)
    result, _ = kv.apply(lease_grant_command({"ttl": 5, "id": 3}, 1))
    assert isinstance(result, ResourceExhaustedError) and "MAX_LEASES (2)" in result.message


def test_revoke_deletes_keys_in_one_revision(kv: Store) -> None:
    kv.grant(7)
    kv.put_rev("x", "1", lease=7)
    kv.put_rev("y", "2", lease=7)
    kv.put_rev("z", "3")
    result, events = kv.apply(lease_revoke_command({"id": 7}))
    assert result == {"header": {"revision": 5}}
    deletes = [
        KvDelete(kv.index, 1, 5, KeyValue(b"x", b"", 0, 5, 0), KeyValue(b"x", b"1", 2, 2, 1, 7)),
        KvDelete(kv.index, 1, 5, KeyValue(b"y", b"", 0, 5, 0), KeyValue(b"y", b"2", 3, 3, 1, 7)),
    ]
    assert events == [*deletes, KvBatch(kv.index, 1, 5, tuple(deletes))]
    assert [x["key"] for x in kv.kvs()] == [b"z"]
    assert kv.sm.lease_ids() == []
    for command in (
        lease_revoke_command({"id": 7}),
        put_command({"key": "x", "value": "v", "lease": 7}),
    ):
        result, events = kv.apply(command)
        assert isinstance(result, NotFoundError) and result.message == "lease 7 not found"
    kv.grant(8)
    assert kv.ok(lease_revoke_command({"id": 8})) == {"header": {"revision": 5}}


def test_expire_emits_lease_expired_before_its_deletes(kv: Store) -> None:
    kv.grant(1)
    kv.grant(2)
    kv.grant(3)
    kv.put_rev("a", lease=1)
    kv.put_rev("b", lease=2)
    kv.put_rev("c", lease=2)
    result, events = kv.apply(lease_expire_command([2, 99, 3, 1]))
    assert result == {"header": {"revision": 5}, "expired": [2, 3, 1], "remaining": []}
    assert [(type(e).__name__, e.revision) for e in events] == [
        ("LeaseExpired", 5),
        ("KvDelete", 5),
        ("KvDelete", 5),
        ("LeaseExpired", 5),
        ("LeaseExpired", 5),
        ("KvDelete", 5),
        ("KvBatch", 5),
    ]
    assert events[0] == LeaseExpired(kv.index, 1, 5, 2, (b"b", b"c"))
    assert events[3] == LeaseExpired(kv.index, 1, 5, 3, ())
    assert [e.kv.key for e in events[-1].events] == [b"b", b"c", b"a"]
    assert kv.kvs() == [] and kv.sm.lease_ids() == []
    kv.grant(4)
    result, events = kv.apply(lease_expire_command([4]))
    assert result == {"header": {"revision": 5}, "expired": [4], "remaining": []}
    assert events == [LeaseExpired(kv.index, 1, 5, 4, ())]
    assert kv.apply(lease_expire_command([4])) == (
        {"header": {"revision": 5}, "expired": [], "remaining": []},
        [],
    )


def _deleted(events: list[Any]) -> list[bytes]:
    return [e.kv.key for e in events if isinstance(e, KvDelete)]


def test_expire_takes_whole_leases_while_they_fit_the_key_bound(kv: Store) -> None:
    for lease_id in (1, 2, 3):
        kv.grant(lease_id)
        for k in range(3):
            kv.put_rev(f"{lease_id}/{k}", lease=lease_id)
    result, events = kv.apply(lease_expire_command([1, 2, 3], max_keys=7))
    assert result["expired"] == [1, 2] and result["remaining"] == [3]
    assert len(_deleted(events)) == 6
    assert [e.lease for e in events if isinstance(e, LeaseExpired)] == [1, 2]
    result, events = kv.apply(lease_expire_command(result["remaining"], max_keys=7))
    assert result["expired"] == [3] and result["remaining"] == []
    assert kv.kvs() == [] and kv.sm.lease_ids() == []


def test_a_lease_bigger_than_the_bound_loses_its_keys_over_several_commands(kv: Store) -> None:
    kv.grant(1)
    kv.grant(2)
    for k in range(10):
        kv.put_rev(f"big/{k}", lease=1)
    kv.put_rev("small", lease=2)
    slices = []
    remaining = [1, 2]
    while remaining:
        result, events = kv.apply(lease_expire_command(remaining, max_keys=4))
        slices.append((_deleted(events), [e.lease for e in events if isinstance(e, LeaseExpired)]))
        remaining = result["remaining"]
    assert [len(keys) for keys, _ in slices] == [4, 4, 3]  # 2 keys of lease 1 + 1 of lease 2
    assert [expired for _, expired in slices] == [[], [], [1, 2]]
    assert kv.kvs() == [] and kv.sm.lease_ids() == []
    assert kv.sm.lease_info(None, 1) is None


def test_expire_bounds_the_bytes_deleted_by_one_command(kv: Store) -> None:
    kv.grant(1)
    for k in range(6):
        kv.put_rev(f"k{k}", b"x" * 1000, lease=1)
    result, events = kv.apply(lease_expire_command([1], max_bytes=2500))
    assert len(_deleted(events)) == 2 and result["remaining"] == [1]
    result, events = kv.apply(lease_expire_command([1], max_bytes=10))  # one key over the bound
    assert len(_deleted(events)) == 1  # still progress: one key
    assert kv.sm.lease_info(None, 1, True)["keys"] == [b"k3", b"k4", b"k5"]


def test_an_expiry_without_bounds_from_an_older_log_expires_everything(kv: Store) -> None:
    kv.grant(1)
    for k in range(5):
        kv.put_rev(f"k{k}", lease=1)
    result, events = kv.apply({"op": "lease_expire", "ids": [1]})
    assert result["expired"] == [1] and len(_deleted(events)) == 5


# ---------------------------------------------------------------------------- history
def _summary(events: list[dict[str, Any]]) -> list[tuple[str, bytes, int]]:
    return [(e["type"], e["kv"]["key"], e["revision"]) for e in events]


def test_history_reads_like_a_watch(kv: Store) -> None:
    r1 = kv.put_rev("w/a", "1")
    kv.put_rev("w/b", "2")
    kv.ok(delete_command({"key": "w/a"}))
    kv.put_rev("other", "x")
    events = kv.sm.history(None, r1, b"w/", b"w0")
    assert _summary(events) == [("put", b"w/a", 2), ("put", b"w/b", 3), ("delete", b"w/a", 4)]
    assert events[2]["kv"] == KeyValue(b"w/a", b"", 0, 4, 0).to_wire()
    assert events[2]["prev_kv"] == KeyValue(b"w/a", b"1", 2, 2, 1).to_wire()
    assert events[0]["prev_kv"] is None
    assert _summary(kv.sm.history(None, 3, b"w/a")) == [("delete", b"w/a", 4)]
    assert _summary(kv.sm.history(None, 0, b"o", b"p")) == [("put", b"other", 5)]
    assert kv.sm.history(None, 6, b"\0", b"\0") == []


def test_history_limit_may_split_a_revision(kv: Store) -> None:
    kv.put_rev("a")
    kv.ok(txn_command({"success": [{"put": {"key": k, "value": "v"}} for k in "bcd"]}))
    kv.put_rev("e")
    everything = kv.sm.history(None, 0, b"\0", b"\0")
    assert _summary(everything) == [
        ("put", b"a", 2),
        ("put", b"b", 3),
        ("put", b"c", 3),
        ("put", b"d", 3),
        ("put", b"e", 4),
    ]
    assert kv.sm.history(None, 0, b"\0", b"\0", limit=3) == everything[:3]
    assert kv.sm.history(None, 3, b"\0", b"\0", limit=4) == everything[1:]
    assert kv.sm.history(None, 3, b"c", b"", limit=4) == everything[2:3]  # empty end: one key
    assert kv.sm.history(None, 0, b"\0", b"\0", limit=0) == []


def test_compaction(kv: Store) -> None:
    for i in range(5):
        kv.put_rev("k", str(i))  # revisions 2..6
    assert kv.ok(compact_command({"revision": 4})) == {"header": {"revision": 6}}
    assert kv.sm.compact_revision() == 4 and kv.sm.current_revision() == 6
    assert [e["revision"] for e in kv.sm.history(None, 4, b"k")] == [4, 5, 6]
    with pytest.raises(CompactedError) as info:
        kv.sm.history(None, 3, b"k")
    assert info.value.details == {"compact_revision": 4}
    assert [e["revision"] for e in kv.sm.history(None, 0, b"k")] == [4, 5, 6]
    for revision, error in ((7, InvalidArgumentError), (4, CompactedError), (2, CompactedError)):
        result, events = kv.apply(compact_command({"revision": revision}))
        assert type(result) is error and events == []
    assert kv.ok(compact_command({"revision": 6}))["header"] == {"revision": 6}
    assert kv.sm.history(None, 6, b"k")[0]["kv"]["value"] == b"4"


def test_range_at_old_revisions(kv: Store) -> None:
    rnd = random.Random(3)
    names = [b"k%d" % i for i in range(8)] + [b"L" * 600 + bytes([i]) for i in range(4)]
    snapshots = {kv.sm.current_revision(): kv.kvs()}
    for _ in range(60):
        key = rnd.choice(names)
        choice = rnd.random()
        if choice < 0.6:
            kv.put_rev(key, str(rnd.random()))
        elif choice < 0.8:
            kv.ok(delete_command({"key": key}))
        else:
            kv.ok(
                txn_command(
                    {
                        "success": [{"put": {"key": k, "value": "t"}} for k in names[:3]]
                        + [{"delete": {"key": names[5], "end": names[7]}}]
                    }
                )
            )
        snapshots[kv.sm.current_revision()] = kv.kvs()
    current = kv.sm.current_revision()
    for revision, expected in snapshots.items():
        assert kv.kvs(revision=revision) == expected, revision
        page = kv.sm.range(
            None,
            range_request(
                {"key": "k", "end": "l", "limit": 2, "revision": revision, "count": True}
            ),
        )
        in_range = [x for x in expected if b"k" <= x["key"] < b"l"]
        assert page["kvs"] == in_range[:2] and page["count"] == len(in_range)
        assert page["header"] == {"revision": current}
    kv.ok(compact_command({"revision": 20}))
    assert kv.kvs(revision=20) == snapshots[20]
    with pytest.raises(CompactedError):
        kv.kvs(revision=19)
    with pytest.raises(InvalidArgumentError, match="future revision"):
        kv.kvs(revision=current + 1)


def test_range_at_old_revision_inside_a_txn(kv: Store) -> None:
    kv.put_rev("a", "1")
    result = kv.ok(
        txn_command(
            {
                "success": [
                    {"put": {"key": "a", "value": "2"}},
                    {"range": {"key": "a", "revision": 2}},
                    {"range": {"key": "a"}},
                ]
            }
        )
    )
    assert [r["range"]["kvs"][0]["value"] for r in result["responses"][1:]] == [b"1", b"2"]


# ---------------------------------------------------------------------------- durability
def _mixed_commands() -> list[dict[str, Any]]:
    rnd = random.Random(11)
    commands: list[dict[str, Any]] = [lease_grant_command({"ttl": 60}, 77)]
    for i in range(300):
        key = rnd.choice([b"a/%d" % (i % 17), b"L" * 500 + b"%d" % (i % 5)])
        commands.append(put_command({"key": key, "value": b"%d" % i, "lease": 77 * (i % 3 == 0)}))
        if i % 25 == 0:
            commands.append(delete_command({"key": "a/", "end": "a/5"}))
        if i % 40 == 0:
            commands.append(
                txn_command(
                    {
                        "compare": [{"key": "a/1", "target": "version", "op": ">", "value": 1}],
                        "success": [
                            {"put": {"key": "t", "value": b"%d" % i}},
                            {"delete": {"key": "a/2"}},
                        ],
                        "failure": [{"put": {"key": "f", "value": "x"}}],
                    }
                )
            )
    commands += [compact_command({"revision": 100}), lease_expire_command([77])]
    return commands


def _dump(storage: Storage) -> dict[str, list[tuple[bytes, bytes]]]:
    with storage.begin() as txn:
        return {name: list(txn.cursor(db=storage.db(name))) for name in DB_NAMES}


def test_apply_is_deterministic_whatever_the_batching(tmp_path: Path) -> None:
    commands = _mixed_commands()
    one, many = Store(tmp_path / "one"), Store(tmp_path / "many")
    results_one = [one.apply(c) for c in commands]
    results_many = many.apply_all(commands[:150]) + many.apply_all(commands[150:])
    assert results_one == results_many
    assert _dump(one.storage) == _dump(many.storage)
    assert _dump(one.storage)["kv"]  # something survived the expiry


def test_state_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path)
    commands = _mixed_commands()
    store.apply_all(commands)
    before = (_dump(store.storage), store.kvs(), store.sm.current_revision())
    store.storage.close()
    store = Store(tmp_path)
    assert (_dump(store.storage), store.kvs(), store.sm.current_revision()) == before
    assert store.sm.applied_index() == len(commands) and store.sm.compact_revision() == 100
    revision = store.sm.current_revision()
    assert store.put_rev("after") == revision + 1
    store.storage.close()
