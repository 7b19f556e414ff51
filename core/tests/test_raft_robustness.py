"""A peer sending garbage never crashes a node: malformed messages are dropped, stale ones
answered or ignored, unknown senders ignored; local misuse raises ``ValueError``."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from aspen.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Role,
    SnapshotMeta,
    bootstrap,
)
from aspen.testing.raftsim_cluster import Cluster

MT = MessageType
GOOD_APPEND = Message(MT.APPEND, "n1", "n2", term=2, index=1, log_term=1, commit=1)
GOOD_ENTRY = Entry(2, 2, EntryType.NORMAL, b"x")

MALFORMED = {
    "not a message": None,
    "a dict": {"type": "app"},
    "unknown type": replace(GOOD_APPEND, type="bogus"),  # type: ignore[arg-type]
    "from itself": replace(GOOD_APPEND, frm="n2"),
    "empty sender": replace(GOOD_APPEND, frm=""),
    "sender not a string": replace(GOOD_APPEND, frm=5),  # type: ignore[arg-type]
    "for another node": replace(GOOD_APPEND, to="n3"),
    "negative term": replace(GOOD_APPEND, term=-1),
    "term as text": replace(GOOD_APPEND, term="2"),  # type: ignore[arg-type]
    "term as bool": replace(GOOD_APPEND, term=True),
    "no term": replace(GOOD_APPEND, term=0),
    "log term past term": replace(GOOD_APPEND, log_term=3),
    "reject not a bool": replace(GOOD_APPEND, reject=1),  # type: ignore[arg-type]
    "context as text": replace(GOOD_APPEND, context="ctx"),  # type: ignore[arg-type]
    "entries not a sequence": replace(GOOD_APPEND, entries=5),  # type: ignore[arg-type]
    "entry not an Entry": replace(GOOD_APPEND, entries=({"index": 2},)),  # type: ignore[arg-type]
    "entry at the wrong index": replace(GOOD_APPEND, entries=(replace(GOOD_ENTRY, index=3),)),
    "entries with a gap": replace(GOOD_APPEND, entries=(GOOD_ENTRY, replace(GOOD_ENTRY, index=4))),
    "entry term past message term": replace(GOOD_APPEND, entries=(replace(GOOD_ENTRY, term=3),)),
    "entry terms going down": replace(
        GOOD_APPEND, log_term=1, entries=(GOOD_ENTRY, replace(GOOD_ENTRY, index=3, term=1))
    ),
    "entry data as text": replace(GOOD_APPEND, entries=(replace(GOOD_ENTRY, data="x"),)),  # type: ignore[arg-type]
    "entry of unknown type": replace(GOOD_APPEND, entries=(replace(GOOD_ENTRY, type="x"),)),  # type: ignore[arg-type]
    "vote with entries": Message(MT.VOTE, "n1", "n2", term=2, entries=(GOOD_ENTRY,)),
    "heartbeat with a snapshot": Message(
        MT.HEARTBEAT, "n1", "n2", term=2, snapshot=SnapshotMeta(5, 2)
    ),
    "snapshot without metadata": Message(MT.SNAPSHOT, "n1", "n2", term=2),
    "snapshot at index 0": Message(MT.SNAPSHOT, "n1", "n2", term=2, snapshot=SnapshotMeta(0, 1)),
    "snapshot from the future": Message(
        MT.SNAPSHOT, "n1", "n2", term=2, snapshot=SnapshotMeta(9, 3)
    ),
    "snapshot with bad voters": Message(
        MT.SNAPSHOT,
        "n1",
        "n2",
        term=2,
        snapshot=SnapshotMeta(9, 2, ConfState((1,))),  # type: ignore[arg-type]
    ),
    "snapshot conf not a ConfState": Message(
        MT.SNAPSHOT,
        "n1",
        "n2",
        term=2,
        snapshot=SnapshotMeta(9, 2, ("n1",)),  # type: ignore[arg-type]
    ),
}


def follower() -> RawNode:
    """n2 of a bootstrapped three-node cluster."""
    storage = MemoryStorage()
    bootstrap(storage, ["n1", "n2", "n3"])
    return RawNode(Config(id="n2", heartbeat_tick=1), storage, random.Random(0))


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_are_dropped(name):
    raw = follower()
    before = raw.status()
    raw.step(MALFORMED[name])  # type: ignore[arg-type]
    assert raw.dropped_messages == 1 and raw.last_drop_reason
    assert raw.status() == before
    assert not raw.has_ready()


def test_the_well_formed_original_is_accepted():
    raw = follower()
    raw.step(replace(GOOD_APPEND, entries=(GOOD_ENTRY,)))
    assert raw.dropped_messages == 0 and raw.status().last_index == 2


def test_plain_strings_for_enum_fields_are_understood():
    raw = follower()
    raw.step(replace(GOOD_APPEND, type="app", entries=(replace(GOOD_ENTRY, type="normal"),)))  # type: ignore[arg-type]
    assert raw.dropped_messages == 0 and raw.status().last_index == 2


def test_an_empty_destination_means_this_node():
    raw = follower()
    raw.step(replace(GOOD_APPEND, to=""))
    assert raw.dropped_messages == 0 and raw.status().leader == "n1"


def test_stale_messages_get_our_term_back_or_are_ignored():
    c = Cluster()
    c.elect("n1")
    c.raw("n1").transfer_leader("n2")
    c.stabilize()  # n2 leads term 3
    raw = c.raw("n3")
    raw.step(Message(MT.APPEND, "n1", "n3", term=2, index=2, log_term=2))
    (answer,) = c.take(MT.APPEND_RESP, frm="n3")
    assert answer.to == "n1" and answer.term == 3  # tells the deposed leader the new term
    raw.step(Message(MT.PRE_VOTE, "n1", "n3", term=2, index=9, log_term=2))
    (answer,) = c.take(MT.PRE_VOTE_RESP, frm="n3")
    assert answer.reject and answer.term == 3
    raw.step(Message(MT.VOTE_RESP, "n1", "n3", term=2))
    assert c.take(frm="n3") == [] and raw.term == 3


def test_the_leader_ignores_answers_from_non_members_and_bogus_acks():
    c = Cluster()
    c.elect("n1")
    raw = c.raw("n1")
    before = raw.status()
    raw.step(Message(MT.APPEND_RESP, "n9", "n1", term=2, index=2))
    raw.step(Message(MT.HEARTBEAT_RESP, "n9", "n1", term=2))
    raw.step(Message(MT.APPEND_RESP, "n2", "n1", term=2, index=999))  # acks what we never had
    after = raw.status()
    assert after.progress["n2"].match == before.progress["n2"].match
    assert after.commit == before.commit and raw.role == Role.LEADER


def test_local_reports_about_unknown_nodes_are_harmless():
    c = Cluster()
    c.elect("n1")
    c.raw("n1").report_unreachable("n9")
    c.raw("n1").report_snapshot("n9", True)
    c.raw("n2").report_unreachable("n1")  # not a leader: nothing to do
    c.raw("n1").step(Message(MT.UNREACHABLE, "n2", "n1"))
    assert c.raw("n1").status().progress["n2"].state == "probe"
    c.stabilize()


def test_corrupt_durable_state_is_refused_at_start():
    storage = MemoryStorage()
    bootstrap(storage, ["n1"])
    storage.set_hard_state(HardState(1, None, 5))
    with pytest.raises(ValueError, match="past the last index"):
        RawNode(Config(id="n1"), storage, random.Random(0))
    with pytest.raises(ValueError, match="id"):
        RawNode(Config(id=""), MemoryStorage(), random.Random(0))


def random_message(rng: random.Random, ids: list[str], to: str) -> Message:
    """A well-typed message with arbitrary (often nonsensical) content."""
    kind = rng.choice(list(MessageType))
    term = rng.randint(0, 8)
    index = rng.randint(0, 12)
    entries: tuple[Entry, ...] = ()
    if kind == MT.APPEND and rng.random() < 0.6:
        t = rng.randint(0, term)
        entries = tuple(
            Entry(index + k + 1, t, rng.choice(list(EntryType)), rng.randbytes(rng.randint(0, 4)))
            for k in range(rng.randint(1, 4))
        )
    snapshot = None
    if kind == MT.SNAPSHOT:
        voters = tuple(rng.sample(ids, rng.randint(0, len(ids))))
        snapshot = SnapshotMeta(rng.randint(0, 15), rng.randint(0, term), ConfState(voters))
    return Message(
        kind,
        rng.choice(ids),
        to,
        term=term,
        log_term=rng.randint(0, term),
        index=index,
        entries=entries,
        commit=rng.randint(0, 15),
        reject=rng.random() < 0.3,
        reject_hint=rng.randint(0, 12),
        hint_term=rng.randint(0, term),
        snapshot=snapshot,
        context=rng.choice([b"", b"ctx", b"\x00aspen-raft:transfer"]),
    )


@pytest.mark.parametrize("seed", range(10))
def test_fuzzed_peer_messages_never_raise(seed):
    rng = random.Random(seed)
    ids = ["n1", "n2", "n3", "n9"]
    c = Cluster(seed=seed)
    c.elect("n1")
    c.put("n1", "k", "v")
    for _ in range(400):
        target = rng.choice(["n1", "n2", "n3"])
        node = c.nodes[target]
        node.raw.step(random_message(rng, ids, target))
        if rng.random() < 0.3:
            node.raw.tick()
        # Well-typed but arbitrary messages are Byzantine: only the core's robustness is
        # checked here, not Raft's guarantees, so drive Ready without the checker.
        while node.raw.has_ready():
            rd = node.raw.ready()
            if rd.snapshot is not None:
                node.storage.apply_snapshot(rd.snapshot)
            node.storage.append(rd.entries)
            if rd.hard_state:
                node.storage.set_hard_state(rd.hard_state)
            node.raw.advance(rd)
