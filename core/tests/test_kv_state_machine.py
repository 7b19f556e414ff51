"""The KV state machine: revisions, put/delete/range, long keys, txn, failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from kvstore import Store

from aspen import limits
from aspen.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen.events import KeyValue, KvBatch, KvDelete, KvPut
from aspen.kv import (
    delete_command,
    lease_grant_command,
    prefix_end,
    put_command,
    txn_command,
)
from aspen.kv.records import record_to_wire


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "db", term=3)
    yield store
    store.storage.close()


def _kv(key: bytes, value: bytes, create: int, mod: int, version: int, lease: int = 0) -> dict:
    return KeyValue(key, value, create, mod, version, lease).to_wire()


# ---------------------------------------------------------------------------- basics
def test_revisions_and_versions_like_etcd(kv: Store) -> None:
    assert kv.revision() == 1
    assert kv.put("a", "1")["header"] == {"revision": 2}
    assert kv.put("a", "2")["header"] == {"revision": 3}
    assert kv.put("b", "1")["header"] == {"revision": 4}
    assert kv.range("a")["kvs"] == [_kv(b"a", b"2", 2, 3, 2)]
    assert kv.delete("a")["header"] == {"revision": 5}
    assert kv.range("a") == {"header": {"revision": 5}, "kvs": [], "more": False}
    assert kv.range("a", count=True)["count"] == 0
    kv.put("a", "3")
    assert kv.sm.get(None, b"a") == KeyValue(b"a", b"3", 6, 6, 1)
    assert kv.sm.get(None, b"zz") is None
    assert kv.revision() == 6
    assert kv.sm.applied_index() == kv.index == 5


def test_prev_kv(kv: Store) -> None:
    assert kv.put("a", "1", prev_kv=True)["prev_kv"] is None
    assert kv.put("a", "2")["prev_kv"] is None
    assert kv.put("a", "3", prev_kv=True)["prev_kv"] == _kv(b"a", b"2", 2, 3, 2)
    result = kv.delete("a", prev_kv=True)
    assert result == {
        "header": {"revision": 5},
        "deleted": 1,
        "prev_kvs": [_kv(b"a", b"3", 2, 4, 3)],
    }
    assert kv.delete("a", prev_kv=True) == {"header": {"revision": 5}, "deleted": 0, "prev_kvs": []}


def test_events_of_put_delete_and_delete_range(kv: Store) -> None:
    _, events = kv.apply(put_command({"key": "a", "value": "1"}))
    assert events == [KvPut(kv.index, 3, 2, KeyValue(b"a", b"1", 2, 2, 1), None)]
    _, events = kv.apply(put_command({"key": "a", "value": "2"}))
    assert events == [
        KvPut(kv.index, 3, 3, KeyValue(b"a", b"2", 2, 3, 2), KeyValue(b"a", b"1", 2, 2, 1))
    ]
    kv.put("b", "1")
    _, events = kv.apply(delete_command({"key": "a", "end": "c"}))
    deletes = [
        KvDelete(kv.index, 3, 5, KeyValue(b"a", b"", 0, 5, 0), KeyValue(b"a", b"2", 2, 3, 2)),
        KvDelete(kv.index, 3, 5, KeyValue(b"b", b"", 0, 5, 0), KeyValue(b"b", b"1", 4, 4, 1)),
    ]
    assert events == [*deletes, KvBatch(kv.index, 3, 5, tuple(deletes))]
    _, events = kv.apply(delete_command({"key": "a"}))
    assert events == []
    assert kv.revision() == 5


def test_delete_range_and_prefix(kv: Store) -> None:
    for key in ["a", "b", "b/1", "b/2", "c", "d"]:
        kv.put(key)
    assert kv.delete("b/", end=prefix_end(b"b/"))["deleted"] == 2
    assert kv.keys() == [b"a", b"b", b"c", b"d"]
    assert kv.delete("b", end="d")["deleted"] == 2
    assert kv.keys() == [b"a", b"d"]
    assert kv.delete("a", end="\0")["deleted"] == 2
    assert kv.keys() == []


def test_delete_range_bound(kv: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DELETE_RANGE_KEYS", 3)
    for key in "abcd":
        kv.put(key)
    result, _ = kv.apply(delete_command({"key": "a", "end": "\0"}))
    assert isinstance(result, InvalidArgumentError)
    assert "MAX_DELETE_RANGE_KEYS (3)" in result.message
    assert kv.delete("b", end="\0")["deleted"] == 3


def test_delete_prev_kv_over_the_read_budget_deletes_nothing(
    kv: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_RESPONSE_KVS", 3)
    for key in "abcd":
        kv.put(key)
    command = delete_command({"key": "a", "end": "\0", "prev_kv": True})
    refused = pytest.raises(ResourceExhaustedError, match="MAX_RESPONSE_KVS")
    with kv.storage.begin() as txn, refused:  # the proposer's check, before proposing
        kv.sm.check_delete(txn, command)
    for answer in (True, False):  # every replica refuses it, answering or not
        with kv.storage.begin(write=True) as txn:
            kv.index += 1
            result, events = kv.sm.apply(txn, kv.index, kv.term, command, answer=answer)
        assert isinstance(result, ResourceExhaustedError) and "nothing was applied" in str(result)
        assert events == []
    assert kv.keys() == [b"a", b"b", b"c", b"d"]
    assert kv.delete("b", end="\0", prev_kv=True)["deleted"] == 3


def test_a_replica_that_does_not_answer_counts_but_does_not_build_reads(kv: Store) -> None:
    for key in "abc":
        kv.put(key, "v")
    range_op = {"key": "a", "end": "\0", "limit": 2, "count": True}
    command = txn_command({"success": [{"range": range_op}]})
    with kv.storage.begin(write=True) as txn:
        kv.index += 1
        result, _ = kv.sm.apply(txn, kv.index, kv.term, command, answer=False)
    assert result["responses"] == [{"range": {"kvs": [], "more": True, "count": 3}}]
    with kv.storage.begin() as txn:
        answered = kv.sm.read_txn(txn, command)["responses"][0]["range"]
    assert [item["key"] for item in answered["kvs"]] == [b"a", b"b"]


# ---------------------------------------------------------------------------- range
def test_range_pagination_count_and_continuation(kv: Store) -> None:
    kv.txn(success=[{"put": {"key": f"p/{i:02d}", "value": str(i)}} for i in range(25)])
    kv.put("q")
    page = kv.range("p/", end=prefix_end(b"p/"), limit=10, count=True)
    assert [x["key"] for x in page["kvs"]] == [f"p/{i:02d}".encode() for i in range(10)]
    assert (page["more"], page["count"]) == (True, 25)
    rest = kv.range(page["kvs"][-1]["key"] + b"\0", end=prefix_end(b"p/"), limit=100, count=True)
    assert len(rest["kvs"]) == 15 and not rest["more"] and rest["count"] == 15
    counted = kv.range("p/", end=prefix_end(b"p/"), count_only=True)
    assert counted == {"header": {"revision": 3}, "kvs": [], "more": False, "count": 25}
    keys_only = kv.range("p/00", keys_only=True)["kvs"]
    assert keys_only == [_kv(b"p/00", b"", 2, 2, 1)]
    assert kv.keys("p/05", "p/07") == [b"p/05", b"p/06"]
    assert kv.keys("q", "p") == []


def test_range_default_limit(kv: Store) -> None:
    n = limits.DEFAULT_RANGE_LIMIT + 1
    for lo in range(0, n, 500):
        kv.txn(
            success=[
                {"put": {"key": f"k{i:05d}", "value": ""}} for i in range(lo, min(n, lo + 500))
            ]
        )
    result = kv.range("k", end="l", limit=0, count=True)
    assert (len(result["kvs"]), result["more"], result["count"]) == (n - 1, True, n)


def test_long_keys_order_and_ranges(kv: Store) -> None:
    base = b"L" * 480
    keys = [base + bytes([c]) * n for c in (0x10, 0x20, 0x30) for n in (1, 50, 400)]
    keys += [base, base[:-1], base[:-1] + b"M" + b"x" * 100]
    for i, key in enumerate(reversed(keys)):
        kv.put(key, str(i))
    assert kv.keys() == sorted(keys)
    lo, hi = base + b"\x20", base + b"\x30"
    assert kv.keys(lo, hi) == sorted(k for k in keys if lo <= k < hi)
    assert kv.keys(base + b"\x20" * 50, end="\0", limit=2) == [
        base + b"\x20" * 50,
        base + b"\x20" * 400,
    ]
    assert kv.sm.get(None, base + b"\x10" * 400) == KeyValue(base + b"\x10" * 400, b"9", 11, 11, 1)
    kv.put(base + b"\x10" * 400, "again")
    assert kv.range(base + b"\x10" * 400)["kvs"][0]["version"] == 2
    assert kv.delete(lo, end=hi)["deleted"] == 3
    assert kv.keys() == sorted(k for k in keys if not lo <= k < hi)


def test_counts_match_the_keys_in_range_around_long_keys(kv: Store) -> None:
    """A count off the LMDB keys alone (bounds of at most 480 bytes) agrees with the
    records, long keys (stored as a prefix and a digest) around the bounds included."""
    base = b"L" * 479
    keys = [base + bytes([c]) * n for c in (0x10, 0x20, 0x30) for n in (1, 2, 300)]
    keys += [base, b"A", b"Z", base + b"\x20" + b"\xff" * 400]
    for key in keys:
        kv.put(key, "v")
    bounds = [b"A", base, base + b"\x20", base + b"\x20\x20", base + b"\x30", b"Z"]
    for lo in bounds:
        for hi in [*bounds, b"\0"]:
            want = sum(1 for k in keys if lo <= k and (hi == b"\0" or k < hi))
            if hi != b"\0" and hi <= lo:
                continue
            assert kv.range(lo, end=hi, count_only=True)["count"] == want, (lo, hi)
            page = kv.range(lo, end=hi, limit=2, count=True)
            assert page["count"] == want and page["more"] == (want > 2), (lo, hi)
            assert len(kv.keys(lo, hi)) == want


# ---------------------------------------------------------------------------- txn
def _cmp(target: str, op: str, value: Any, key: str = "k", end: str | None = None) -> dict:
    c = {"key": key, "target": target, "op": op, "value": value}
    if end is not None:
        c["end"] = end
    return c


def _holds(kv: Store, *compare: dict) -> bool:
    return kv.txn(compare=list(compare))["succeeded"]


@pytest.mark.parametrize(
    ("target", "below", "equal", "above"),
    [
        ("value", b"u", b"v", b"w"),
        ("version", 1, 2, 3),
        ("create_revision", 2, 3, 4),
        ("mod_revision", 4, 5, 6),
        ("lease", 0, 7, 8),
    ],
)
def test_compare_every_target_and_op(
    kv: Store, target: str, below: Any, equal: Any, above: Any
) -> None:
    kv.ok(lease_grant_command({"ttl": 10, "id": 7}, 1))  # revision stays 1
    kv.put("other")  # 2
    kv.put("k", "first")  # 3
    kv.put("x")  # 4
    kv.put("k", "v", lease=7)  # 5: version 2, create 3, mod 5, lease 7
    assert _holds(kv, _cmp(target, "==", equal))
    assert not _holds(kv, _cmp(target, "==", above))
    assert _holds(kv, _cmp(target, "!=", above))
    assert not _holds(kv, _cmp(target, "!=", equal))
    assert _holds(kv, _cmp(target, "<", above))
    assert not _holds(kv, _cmp(target, "<", equal))
    assert _holds(kv, _cmp(target, ">", below))
    assert not _holds(kv, _cmp(target, ">", equal))


def test_compare_missing_key(kv: Store) -> None:
    for target in ("version", "create_revision", "mod_revision", "lease"):
        assert _holds(kv, _cmp(target, "==", 0, key="absent"))
        assert _holds(kv, _cmp(target, "<", 1, key="absent"))
        assert not _holds(kv, _cmp(target, ">", 0, key="absent"))
    for op in ("==", "!=", "<", ">"):
        assert not _holds(kv, _cmp("value", op, "", key="absent"))


def test_compare_over_a_range(kv: Store) -> None:
    kv.put("r/a", "1")
    kv.put("r/b", "1")
    kv.put("r/b", "2")
    end = "r0"
    assert _holds(kv, _cmp("version", ">", 0, "r/", end))
    assert not _holds(kv, _cmp("version", "==", 1, "r/", end))
    assert _holds(kv, _cmp("value", "<", "3", "r/", end))
    assert not _holds(kv, _cmp("value", "==", "1", "r/", end))
    assert _holds(kv, _cmp("version", "==", 1, "r/a", "r/b"))
    assert _holds(kv, _cmp("version", "==", 0, "s/", "s0"))  # empty range: a missing key
    assert not _holds(kv, _cmp("value", "!=", "x", "s/", "s0"))
    assert not _holds(kv, _cmp("version", ">", 0, "r/"), _cmp("version", ">", 0, "s/"))


def test_txn_ops_share_a_revision_and_see_earlier_writes(kv: Store) -> None:
    kv.put("old", "1")
    result, events = kv.apply(
        txn_command(
            {
                "compare": [_cmp("value", "==", "1", key="old")],
                "success": [
                    {"put": {"key": "new", "value": "n"}},
                    {"range": {"key": "n", "end": "o"}},
                    {"delete": {"key": "old", "prev_kv": True}},
                    {"put": {"key": "two", "value": "2", "prev_kv": True}},
                ],
                "failure": [{"put": {"key": "never", "value": "x"}}],
            }
        )
    )
    assert result == {
        "header": {"revision": 3},
        "succeeded": True,
        "responses": [
            {"put": {"prev_kv": None}},
            {"range": {"kvs": [_kv(b"new", b"n", 3, 3, 1)], "more": False}},
            {"delete": {"deleted": 1, "prev_kvs": [_kv(b"old", b"1", 2, 2, 1)]}},
            {"put": {"prev_kv": None}},
        ],
    }
    assert [type(e).__name__ for e in events] == ["KvPut", "KvDelete", "KvPut", "KvBatch"]
    assert {e.revision for e in events} == {3}
    assert events[-1].events == tuple(events[:-1])
    assert kv.keys() == [b"new", b"two"]
    failed = kv.txn(
        compare=[_cmp("value", "==", "1", key="old")],
        success=[{"put": {"key": "never", "value": "x"}}],
        failure=[{"range": {"key": "two"}}],
    )
    assert failed["succeeded"] is False
    assert failed["responses"][0]["range"]["kvs"][0]["value"] == b"2"


def test_nested_txn(kv: Store) -> None:
    kv.put("flag", "on")
    result = kv.txn(
        compare=[_cmp("value", "==", "on", key="flag")],
        success=[
            {"put": {"key": "flag", "value": "off"}},
            {
                "txn": {
                    # As in etcd, nested compares see the state before the txn's writes.
                    "compare": [_cmp("value", "==", "on", key="flag")],
                    "success": [
                        {"put": {"key": "inner", "value": "yes"}},
                        {"range": {"key": "flag"}},
                    ],
                    "failure": [{"put": {"key": "inner", "value": "no"}}],
                }
            },
            {
                "txn": {
                    "compare": [_cmp("version", "==", 5, key="flag")],
                    "failure": [{"txn": {"success": [{"delete": {"key": "nothing"}}]}}],
                }
            },
        ],
    )
    assert result["header"] == {"revision": 3}
    inner = result["responses"][1]["txn"]
    assert inner["succeeded"] is True
    assert inner["responses"][0] == {"put": {"prev_kv": None}}
    assert inner["responses"][1]["range"]["kvs"][0]["value"] == b"off"
    assert result["responses"][2] == {
        "txn": {
            "succeeded": False,
            "responses": [
                {
                    "txn": {
                        "succeeded": True,
                        "responses": [{"delete": {"deleted": 0, "prev_kvs": []}}],
                    }
                }
            ],
        }
    }
    assert kv.sm.get(None, b"inner").value == b"yes"


def test_txn_that_changes_nothing_keeps_the_revision(kv: Store) -> None:
    kv.put("a")
    for params in (
        {},
        {"success": [{"range": {"key": "a"}}]},
        {"success": [{"delete": {"key": "missing"}}]},
        {
            "compare": [_cmp("version", "==", 9, key="a")],
            "success": [{"put": {"key": "a", "value": "x"}}],
        },
    ):
        result, events = kv.apply(txn_command(params))
        assert result["header"] == {"revision": 2} and events == []
    assert kv.revision() == 2


def test_failed_command_leaves_no_trace(kv: Store) -> None:
    kv.put("a", "1")
    result, events = kv.apply(
        txn_command(
            {
                "success": [
                    {"put": {"key": "a", "value": "2"}},
                    {"put": {"key": "b", "value": "2", "lease": 42}},
                ]
            }
        )
    )
    assert isinstance(result, NotFoundError) and result.message == "lease 42 not found"
    assert events == []
    assert kv.revision() == 2 and kv.sm.applied_index() == kv.index == 2
    assert kv.keys() == [b"a"] and kv.sm.get(None, b"a").value == b"1"
    assert kv.sm.history(None, 0, b"\0", b"\0") == kv.sm.history(None, 0, b"a")
    assert kv.put("c")["header"] == {"revision": 3}


def test_malformed_and_unknown_commands(kv: Store) -> None:
    for command in ({"op": "frobnicate"}, {"nope": 1}, {"op": "put", "key": b"k"}, {"op": "txn"}):
        result, events = kv.apply(command)
        assert isinstance(result, InvalidArgumentError) and events == []
    assert kv.revision() == 1 and kv.sm.applied_index() == 4


def test_revision_cache_follows_aborted_batches(kv: Store) -> None:
    kv.put("a")
    with pytest.raises(RuntimeError), kv.storage.begin(write=True) as txn:
        assert kv.sm.apply(txn, 2, 1, put_command({"key": "b", "value": "v"}))[0]["header"] == {
            "revision": 3
        }
        raise RuntimeError("the batch is aborted")
    kv.index = 1
    assert kv.put("c")["header"] == {"revision": 3}
    assert kv.keys() == [b"a", b"c"]
    with kv.storage.begin(write=True) as txn:  # many commands in one transaction
        for i in range(3):
            kv.sm.apply(txn, 10 + i, 1, put_command({"key": "m", "value": str(i)}))
        assert kv.sm.current_revision(txn) == 6
    assert kv.sm.get(None, b"m") == KeyValue(b"m", b"2", 4, 6, 3)


def test_an_answer_within_the_read_bounds_fits_one_frame() -> None:
    """MAX_RESPONSE_KV_BYTES counts records as stored; the answer adds field names per kv
    and a little per op: the largest answer must still fit MAX_FRAME_BYTES."""
    big = 2**63 - 1
    record = [b"k", b"", big, big, big, big]
    per_kv = len(msgpack.packb(record_to_wire(record))) - len(msgpack.packb(record))
    per_op = len(msgpack.packb({"range": {"kvs": [], "more": True, "count": big}}))
    largest = (
        limits.MAX_RESPONSE_KV_BYTES
        + limits.MAX_RESPONSE_KVS * per_kv
        + limits.MAX_TXN_OPS * per_op
        + 1024  # header, succeeded, the frame's own fields
    )
    assert largest < limits.MAX_FRAME_BYTES
