"""Handler patterns and event payloads (pure functions)."""

from __future__ import annotations

import msgpack
import pytest

from aspen.errors import InvalidArgumentError
from aspen_hooks import limits
from aspen_hooks.keys import JOURNAL, journal_key
from aspen_hooks.patterns import parse_pattern
from aspen_hooks.payload import event_from_history, idempotency_key


@pytest.mark.parametrize(
    ("pattern", "event", "key", "wanted"),
    [
        ("kv.put:/app/config/*", "kv.put", b"/app/config/db", True),
        ("kv.put:/app/config/*", "kv.put", b"/app/other", False),
        ("kv.put:/app/config/*", "kv.delete", b"/app/config/db", False),
        ("kv.*:/app/*/x", "kv.delete", b"/app/a/x", True),
        ("kv.put:/exact", "kv.put", b"/exact", True),
        ("kv.put:/exact", "kv.put", b"/exact2", False),
        ("kv.put", "kv.put", b"/anything", True),
        ("kv.put", "kv.put", b"/_aspen/hooks/state/x", False),
        ("kv.put:/_aspen/*", "kv.put", b"/_aspen/secrets/x", True),
        ("kv.put:/_aspen/*", "kv.put", b"/_aspen/hooks/state/x", False),
        ("kv.*", "kv.put", b"/_aspen/hooks/dlq/h/1", False),
        ("raft.leader_changed", "raft.leader_changed", None, True),
        ("raft.*", "raft.leader_changed", None, True),
        ("cluster.*", "cluster.membership_changed", None, True),
        ("cluster.*", "raft.leader_changed", None, False),
        ("*", "cluster.membership_changed", None, True),
        ("deploy.requested", "deploy.requested", None, True),
    ],
)
def test_pattern_matching(pattern, event, key, wanted) -> None:
    assert parse_pattern(pattern).matches(event, key) is wanted


@pytest.mark.parametrize(
    ("pattern", "event", "subject", "wanted"),
    [
        ("forge.push:acme/*", "forge.push", "acme/widgets", True),
        ("forge.push:acme/*", "forge.push", "other/widgets", False),
        ("forge.push:acme/*", "forge.push", None, False),
        ("forge.*:acme/widgets", "forge.patch_merged", "acme/widgets", True),
        ("forge.push", "forge.push", "anything", True),
        ("forge.*", "pubsub.dead_letter", "q", False),
    ],
)
def test_journal_patterns_match_name_and_subject(pattern, event, subject, wanted) -> None:
    parsed = parse_pattern(pattern)
    assert parsed.journal and parsed.watch_range() is None
    assert parsed.matches(event, subject=subject) is wanted


def test_kv_raft_cluster_and_star_patterns_do_not_read_the_journal() -> None:
    for text in ("kv.put:/x", "raft.*", "cluster.membership_changed", "*"):
        assert not parse_pattern(text).journal


@pytest.mark.parametrize(
    ("pattern", "span"),
    [
        ("kv.put:/app/config/*", (b"/app/config/", b"/app/config0")),
        ("kv.put:/exact", (b"/exact", b"/exact\0")),
        ("kv.put", (b"\0", b"\0")),
        ("raft.*", (JOURNAL + b"raft.", JOURNAL + b"raft/")),
        ("deploy.requested", None),
    ],
)
def test_watch_range_covers_what_a_pattern_wants(pattern, span) -> None:
    assert parse_pattern(pattern).watch_range() == span


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "KV.PUT",
        "kv.update:/x",
        "raft.leader_changed:/x",
        "cluster.*:x",
        "*:acme/*",
        "forge.push:",
        "kv.put:",
        "kv.pu*",
        "kv.put:/a[b",
        "kv.put:/_aspen/hooks/*",
        "x" * (limits.HOOKS_MAX_PATTERN_CHARS + 1),
    ],
)
def test_bad_patterns_are_refused_with_a_reason(bad) -> None:
    with pytest.raises(InvalidArgumentError, match="pattern"):
        parse_pattern(bad)


def _kv(key: bytes, value: bytes, rev: int, create: int = 1, version: int = 1) -> dict:
    return {
        "key": key,
        "value": value,
        "create_revision": create,
        "mod_revision": rev,
        "version": version,
        "lease": 0,
    }


def test_kv_payload_is_complete_and_json_ready() -> None:
    item = {"type": "put", "kv": _kv(b"/o/1", b"hi", 7, 5, 2), "prev_kv": _kv(b"/o/1", b"x", 5)}
    assert event_from_history(item) == {
        "name": "kv.put",
        "key": "/o/1",
        "revision": 7,
        "create_revision": 5,
        "mod_revision": 7,
        "version": 2,
        "lease": 0,
        "prev_revision": 5,
        "value_size": 2,
        "value": "hi",
    }
    binary = event_from_history({"type": "put", "kv": _kv(b"\xff", b"\x00\xff", 3)})
    assert binary["key_b64"] == "/w==" and binary["value_b64"] == "AP8="
    big = b"v" * (limits.HOOKS_MAX_PAYLOAD_VALUE_BYTES + 1)
    large = event_from_history({"type": "put", "kv": _kv(b"/big", big, 4)})
    assert large["value_truncated"] and "value" not in large and large["value_size"] == len(big)
    gone = event_from_history(
        {"type": "delete", "kv": _kv(b"/o/1", b"", 9, 0, 0), "prev_kv": _kv(b"/o/1", b"hi", 7)}
    )
    assert gone["name"] == "kv.delete" and gone["prev_revision"] == 7


def test_journal_records_become_their_event() -> None:
    record = {"name": "raft.leader_changed", "leader": "n2", "previous": "n1", "term": 4}
    kv = _kv(journal_key("raft.leader_changed"), msgpack.packb(record), 12)
    assert event_from_history({"type": "put", "kv": kv}) == {**record, "revision": 12}


def test_idempotency_keys_are_stable_and_distinct() -> None:
    a = {"name": "kv.put", "key": "/a", "revision": 3}
    b = {"name": "kv.put", "key": "/b", "revision": 3}
    assert idempotency_key("c1", a, "h") == idempotency_key("c1", dict(a), "h")
    assert len({idempotency_key("c1", e, h) for e in (a, b) for h in ("h", "g")}) == 4


def test_journal_events_of_one_revision_have_their_own_idempotency_keys() -> None:
    first = {"name": "forge.push", "subject": "acme/w", "position": 7, "revision": 42}
    second = {**first, "position": 8}
    keys = {idempotency_key("c", e, "ci") for e in (first, second)}
    assert len(keys) == 2 and all(k.startswith("c:42:") for k in keys)
    assert idempotency_key("c", first, "ci") == idempotency_key("c", dict(first), "ci")
