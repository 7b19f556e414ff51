"""Validation of client params into internal commands: shapes, types and every bound."""

from __future__ import annotations

from typing import Any

import pytest

from aspen import limits
from aspen.errors import InvalidArgumentError
from aspen.kv.commands import (
    RangeRequest,
    compact_command,
    delete_command,
    is_read_only,
    lease_expire_command,
    lease_grant_command,
    lease_id_param,
    lease_revoke_command,
    prefix_end,
    put_command,
    range_request,
    txn_command,
    watch_request,
)


def _refused(match: str, fn: Any, *args: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        fn(*args)


def test_prefix_end() -> None:
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"a\xfe\xff\xff") == b"a\xff"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


def test_put_command_shape_and_str_encoding() -> None:
    assert put_command({"key": "k€", "value": "v"}) == {
        "op": "put",
        "key": "k€".encode(),
        "value": b"v",
        "lease": 0,
        "prev_kv": False,
    }
    cmd = put_command({"key": b"k", "value": b"", "lease": 7, "prev_kv": True})
    assert (cmd["value"], cmd["lease"], cmd["prev_kv"]) == (b"", 7, True)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ([], "put params must be a map"),
        ({"value": b"v"}, "key is required"),
        ({"key": b"", "value": b"v"}, "key must not be empty"),
        ({"key": 5, "value": b"v"}, "key must be bytes or str"),
        ({"key": b"k" * (limits.MAX_KEY_BYTES + 1), "value": b"v"}, "MAX_KEY_BYTES"),
        ({"key": b"k"}, "value is required"),
        ({"key": b"k", "value": b"v" * (limits.MAX_VALUE_BYTES + 1)}, "MAX_VALUE_BYTES"),
        ({"key": b"k", "value": b"v", "lease": -1}, "lease must be in"),
        ({"key": b"k", "value": b"v", "lease": "1"}, "lease must be an integer"),
        ({"key": b"k", "value": b"v", "lease": True}, "lease must be an integer"),
        ({"key": b"k", "value": b"v", "prev_kv": 1}, "prev_kv must be a boolean"),
    ],
)
def test_put_refusals(params: Any, match: str) -> None:
    _refused(match, put_command, params)


def test_max_key_and_value_are_accepted() -> None:
    cmd = put_command({"key": b"k" * limits.MAX_KEY_BYTES, "value": b"v" * limits.MAX_VALUE_BYTES})
    assert len(cmd["key"]) == limits.MAX_KEY_BYTES


def test_delete_command() -> None:
    assert delete_command({"key": "a", "end": "b", "prev_kv": True}) == {
        "op": "delete",
        "key": b"a",
        "end": b"b",
        "prev_kv": True,
    }
    assert delete_command({"key": "a", "end": b""})["end"] is None
    _refused("end must be bytes", delete_command, {"key": "a", "end": 3})
    _refused("end is 1025 bytes", delete_command, {"key": "a", "end": b"e" * 1025})


def test_range_request() -> None:
    assert range_request({"key": "a"}) == RangeRequest(b"a", None, limits.DEFAULT_RANGE_LIMIT)
    req = range_request(
        {
            "key": "a",
            "end": "\0",
            "limit": 5,
            "revision": 3,
            "keys_only": True,
            "count_only": True,
            "serializable": True,
        }
    )
    assert req == RangeRequest(b"a", b"\0", 5, 3, True, True, True)
    assert RangeRequest.from_command(req.to_command()) == RangeRequest(
        b"a", b"\0", 5, 3, True, True
    )
    _refused("MAX_RANGE_LIMIT", range_request, {"key": "a", "limit": limits.MAX_RANGE_LIMIT + 1})
    _refused("limit must be in", range_request, {"key": "a", "limit": -1})
    _refused("revision must be in", range_request, {"key": "a", "revision": -1})
    _refused("key is required", range_request, {})


def test_watch_request() -> None:
    req = watch_request({"key": "w/", "end": "w0", "start_revision": 4, "filters": ["noput"]})
    assert (req.key, req.end, req.start_revision, req.filters) == (b"w/", b"w0", 4, {"noput"})
    _refused("unknown watch filter 'nope'", watch_request, {"key": "a", "filters": ["nope"]})
    _refused("filters must be a list", watch_request, {"key": "a", "filters": "noput"})


def test_compact_command() -> None:
    assert compact_command({"revision": 5}) == {"op": "compact", "revision": 5}
    _refused("revision is required", compact_command, {})
    _refused("revision must be in 1", compact_command, {"revision": 0})


def test_lease_commands() -> None:
    assert lease_grant_command({"ttl": 60}, 99) == {"op": "lease_grant", "id": 99, "ttl": 60}
    assert lease_grant_command({"ttl": 60, "id": 5}, 99)["id"] == 5
    assert lease_grant_command({"ttl": 1}, 99)["ttl"] == limits.MIN_LEASE_TTL_SECONDS
    _refused("ttl must be in 1", lease_grant_command, {"ttl": 0}, 99)
    _refused(
        "MAX_LEASE_TTL_SECONDS", lease_grant_command, {"ttl": limits.MAX_LEASE_TTL_SECONDS + 1}, 9
    )
    _refused("ttl is required", lease_grant_command, {}, 99)
    _refused("id must be in", lease_grant_command, {"ttl": 5, "id": -3}, 99)
    _refused("id must be in", lease_grant_command, {"ttl": 5, "id": 2**63}, 99)
    assert lease_revoke_command({"id": 5}) == {
        "op": "lease_revoke",
        "id": 5,
        "max_keys": limits.LEASE_EXPIRY_SLICE_KEYS,
        "max_bytes": limits.LEASE_EXPIRY_SLICE_BYTES,
    }
    _refused("id must be in 1", lease_revoke_command, {"id": 0})
    assert lease_id_param({"id": 8}) == 8
    assert lease_expire_command([3, 4]) == {
        "op": "lease_expire",
        "ids": [3, 4],
        "max_keys": limits.LEASE_EXPIRY_SLICE_KEYS,
        "max_bytes": limits.LEASE_EXPIRY_SLICE_BYTES,
    }
    assert lease_expire_command([3], max_keys=5, max_bytes=100)["max_keys"] == 5
    _refused(
        "MAX_LEASES_EXPIRED_PER_COMMAND",
        lease_expire_command,
        list(range(1, limits.MAX_LEASES_EXPIRED_PER_COMMAND + 2)),
    )
    _refused("lease id must be", lease_expire_command, [0])


def _put(key: str) -> dict[str, Any]:
    return {"put": {"key": key, "value": "v"}}


def _nested(depth: int) -> dict[str, Any]:
    params: dict[str, Any] = {"success": [_put("leaf")]}
    for _ in range(depth):
        params = {"success": [{"txn": params}]}
    return params


def test_txn_command_shape() -> None:
    cmd = txn_command(
        {
            "compare": [
                {"key": "k", "target": "value", "op": "==", "value": "v"},
                {"key": "k", "end": "l", "target": "version", "op": ">", "value": 2},
            ],
            "success": [_put("a"), {"delete": {"key": "b"}}, {"range": {"key": "c"}}],
            "failure": [{"txn": {"success": [_put("a")]}}],
        }
    )
    assert cmd["compare"] == [
        {"key": b"k", "end": None, "target": "value", "op": "==", "value": b"v"},
        {"key": b"k", "end": b"l", "target": "version", "op": ">", "value": 2},
    ]
    assert [op["op"] for op in cmd["success"]] == ["put", "delete", "range"]
    assert cmd["success"][2]["limit"] == limits.DEFAULT_RANGE_LIMIT
    assert cmd["failure"][0] == {
        "op": "txn",
        "compare": [],
        "failure": [],
        "success": [put_command({"key": "a", "value": "v"})],
    }
    assert txn_command({}) == {"op": "txn", "compare": [], "success": [], "failure": []}


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"compare": [{"key": "k", "target": "size", "op": "==", "value": 1}]}, "target 'size'"),
        ({"compare": [{"key": "k", "target": "version", "op": "<=", "value": 1}]}, "op '<='"),
        (
            {"compare": [{"key": "k", "target": "version", "op": "==", "value": b"1"}]},
            r"compare\[0\]\.value must be an integer",
        ),
        (
            {"compare": [{"key": "k", "target": "value", "op": "==", "value": 1}]},
            "value must be bytes",
        ),
        ({"compare": [{"key": "k", "target": "value", "op": "=="}]}, "value is required"),
        ({"compare": [{"target": "value", "op": "==", "value": "v"}]}, r"compare\[0\]\.key"),
        ({"success": [{"get": {"key": "k"}}]}, "exactly one of put, delete, range, txn"),
        (
            {"success": [{"put": {"key": "k", "value": "v"}, "delete": {"key": "k"}}]},
            "exactly one of",
        ),
        ({"success": [{"put": "k"}]}, "params must be a map"),
        ({"failure": [{"put": {"key": ""}}]}, r"failure\[0\]\.put\.key must not be empty"),
        ({"success": "nope"}, "success must be a list"),
        (
            {"success": [{"range": {"key": "k", "limit": limits.MAX_RANGE_LIMIT + 1}}]},
            "MAX_RANGE_LIMIT",
        ),
    ],
)
def test_txn_refusals(params: Any, match: str) -> None:
    _refused(match, txn_command, params)


def test_txn_op_and_compare_bounds() -> None:
    half = limits.MAX_TXN_OPS // 2
    txn_command(
        {
            "success": [_put(f"s{i}") for i in range(half)],
            "failure": [_put(f"f{i}") for i in range(limits.MAX_TXN_OPS - half)],
        }
    )
    _refused(
        "MAX_TXN_OPS",
        txn_command,
        {
            "success": [_put(f"s{i}") for i in range(half)],
            "failure": [_put(f"f{i}") for i in range(limits.MAX_TXN_OPS - half + 1)],
        },
    )
    nested = {"txn": {"success": [_put(f"n{i}") for i in range(limits.MAX_TXN_OPS - 1)]}}
    txn_command({"success": [nested]})
    _refused("MAX_TXN_OPS", txn_command, {"success": [nested, _put("x")]})
    cmp = {"key": "k", "target": "version", "op": "==", "value": 0}
    txn_command({"compare": [cmp] * limits.MAX_TXN_COMPARES})
    _refused("MAX_TXN_COMPARES", txn_command, {"compare": [cmp] * (limits.MAX_TXN_COMPARES + 1)})


def test_txn_depth_bound() -> None:
    txn_command(_nested(limits.MAX_TXN_DEPTH))
    _refused("MAX_TXN_DEPTH", txn_command, _nested(limits.MAX_TXN_DEPTH + 1))


@pytest.mark.parametrize(
    "branch",
    [
        [_put("a"), _put("a")],
        [_put("a"), {"delete": {"key": "a"}}],
        [{"delete": {"key": "a", "end": "c"}}, _put("b")],
        [{"delete": {"key": "a", "end": "\0"}}, _put("zzz")],
        [_put("a"), {"txn": {"success": [_put("a")]}}],
        [{"txn": {"failure": [_put("a")]}}, {"delete": {"key": "a"}}],
        [{"txn": {"success": [_put("a")]}}, {"txn": {"failure": [_put("a")]}}],
        [{"txn": {"success": [{"delete": {"key": "a"}}]}}, _put("a")],
    ],
)
def test_duplicate_keys_refused(branch: list[dict[str, Any]]) -> None:
    _refused("duplicate key given in txn request", txn_command, {"success": branch})
    _refused("duplicate key given in txn request", txn_command, {"failure": branch})


@pytest.mark.parametrize(
    "branch",
    [
        [_put("a"), _put("b"), {"delete": {"key": "c"}}, {"delete": {"key": "c"}}],
        [{"delete": {"key": "a", "end": "b"}}, _put("b")],
        [{"txn": {"success": [_put("a")], "failure": [_put("a")]}}],
        [{"txn": {"success": [{"delete": {"key": "a"}}], "failure": [_put("a")]}}],
        [_put("a"), {"range": {"key": "a"}}],
    ],
)
def test_non_duplicates_accepted(branch: list[dict[str, Any]]) -> None:
    txn_command({"success": branch, "failure": branch})


def _ranges(n: int, **params: Any) -> list[dict[str, Any]]:
    return [{"range": {"key": "a", **params}} for _ in range(n)]


def test_txn_answer_bound_is_checked_before_proposing() -> None:
    most = limits.MAX_RESPONSE_KVS
    # single-key reads count 1, ranges their limit, the larger branch counts, count_only 0
    txn_command({"success": _ranges(1, end="b", limit=most)})
    txn_command({"success": _ranges(most // 1000, end="b"), "failure": _ranges(1, end="b")})
    txn_command({"success": _ranges(900) + _ranges(50, end="b", count_only=True)})
    nested = {"txn": {"success": _ranges(1, end="b", limit=most)}}
    for params in (
        {"success": _ranges(2, end="b", limit=most)},
        {
            "success": [
                *_ranges(1, end="b", limit=most),
                {"put": {"key": "p", "value": "v", "prev_kv": True}},
            ]
        },
        {"success": [nested, *_ranges(1)]},
    ):
        with pytest.raises(InvalidArgumentError, match="MAX_RESPONSE_KVS"):
            txn_command(params)


def test_read_only_txns() -> None:
    assert is_read_only(txn_command({}))
    assert is_read_only(
        txn_command({"success": _ranges(2), "failure": [{"txn": {"success": _ranges(1)}}]})
    )
    assert not is_read_only(
        txn_command({"failure": [{"txn": {"success": [{"delete": {"key": "a"}}]}}]})
    )
    assert not is_read_only(txn_command({"success": [{"put": {"key": "a", "value": "v"}}]}))
