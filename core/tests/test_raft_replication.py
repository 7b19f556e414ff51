"""Log replication: the Ready contract, repair and fast back-off, the commit rule
(Figure 8 of the Raft paper), flow control, and what survives a crash."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from aspen.raft import (
    Config,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    NotLeaderError,
    ProgressState,
    ProposalDroppedError,
    RawNode,
    Role,
    bootstrap,
)
from aspen.testing.raftsim_cluster import Cluster
from aspen.testing.raftsim_node import encode_command

MT = MessageType


def cmd(value: str, key: str = "k") -> bytes:
    """A put command the simulated state machine understands."""
    return encode_command({"op": "put", "key": key, "value": value})


def lone(node_id: str = "n2", voters=("n1", "n2", "n3"), **config) -> RawNode:
    """One bootstrapped node with nobody to talk to."""
    storage = MemoryStorage()
    bootstrap(storage, voters)
    return RawNode(Config(id=node_id, **{"heartbeat_tick": 1, **config}), storage, random.Random(0))


def append(term: int, prev: int, prev_term: int, *terms: int, commit: int = 1) -> Message:
    """An APPEND from n1 to n2."""
    entries = tuple(Entry(prev + k + 1, t, data=cmd(str(k))) for k, t in enumerate(terms))
    return Message(
        MT.APPEND,
        "n1",
        "n2",
        term=term,
        index=prev,
        log_term=prev_term,
        entries=entries,
        commit=commit,
    )


# --------------------------------------------------------------------------- Ready contract
def test_a_follower_ack_travels_in_the_ready_that_persists_the_entries():
    raw = lone()
    raw.step(append(2, 1, 1, 2, 2))
    rd = raw.ready()
    assert [e.index for e in rd.entries] == [2, 3]
    assert rd.hard_state is not None and rd.hard_state.term == 2
    (ack,) = rd.messages
    assert (ack.type, ack.to, ack.index, ack.reject) == (MT.APPEND_RESP, "n1", 3, False)


def test_one_ready_at_a_time_and_stepping_in_between_goes_to_the_next():
    raw = lone()
    raw.step(append(2, 1, 1, 2))
    rd = raw.ready()
    with pytest.raises(ValueError, match="advance"):
        raw.ready()
    assert not raw.has_ready()
    raw.step(append(2, 2, 2, 2))
    with pytest.raises(ValueError, match="last returned"):
        raw.advance(append(2, 1, 1))  # type: ignore[arg-type]
    raw.advance(rd)
    nxt = raw.ready()
    assert [e.index for e in nxt.entries] == [3]
    raw.advance(nxt)
    assert not raw.has_ready()


def test_a_single_voter_commits_in_the_ready_that_persists():
    c = Cluster(["n1"])
    c.elect("n1")
    raw = c.raw("n1")
    index = raw.propose(cmd("v"))
    rd = raw.ready()
    assert [e.index for e in rd.entries] == [index]
    assert [e.index for e in rd.committed] == [index]
    raw.advance(rd)


def test_committed_entries_are_handed_out_in_bounded_batches():
    c = Cluster(["n1"], max_apply_bytes_per_ready=100)
    c.elect("n1")
    raw = c.raw("n1")
    for k in range(4):
        raw.propose(cmd("x" * 40 + str(k)))
    sizes = []
    while raw.has_ready():
        rd = raw.ready()
        c.nodes["n1"].storage.append(rd.entries)
        if rd.hard_state:
            c.nodes["n1"].storage.set_hard_state(rd.hard_state)
        sizes.append(len(rd.committed))
        raw.advance(rd)
    assert sum(sizes) == 4 and max(sizes) == 1


def test_propose_on_a_follower_names_the_leader():
    c = Cluster()
    c.elect("n2")
    with pytest.raises(NotLeaderError) as info:
        c.raw("n1").propose(cmd("v"))
    assert info.value.leader_hint == "n2"
    with pytest.raises(ValueError):
        c.raw("n2").propose("not bytes")  # type: ignore[arg-type]


def test_replication_reaches_every_state_machine():
    c = Cluster(["n1", "n2", "n3", "n4", "n5"])
    c.elect("n3")
    for k in range(10):
        c.put("n3", f"k{k}", str(k))
    states = [n.kv for n in c.nodes.values()]
    assert all(s == states[0] for s in states) and len(states[0]) == 10


def test_heartbeats_for_a_long_write_cycle_change_nothing_and_keep_followers_quiet():
    """RawNode.heartbeats (what the driver sends while a long apply holds the node): a
    leader's current term and safe commit per follower, no Raft state touched; stepped by a
    follower they reset its election clock as Raft's own heartbeats do; none off a leader."""
    c = Cluster()
    c.elect("n1")
    c.put("n1", "k", "v")
    leader = c.raw("n1")
    assert c.raw("n2").heartbeats() == []
    before = leader.status()
    beats = leader.heartbeats()
    assert {m.to for m in beats} == {"n2", "n3"}
    assert all(m.type == MT.HEARTBEAT and m.term == before.term for m in beats)
    assert all(m.commit == before.commit and m.context == b"" for m in beats)
    assert leader.status() == before and not leader.has_ready()
    follower = c.raw("n2")
    for _ in range(100):  # ten election timeouts: heartbeats alone keep n2 a follower
        follower.tick()
        follower.step(next(m for m in beats if m.to == "n2"))
    assert follower.role == Role.FOLLOWER and follower.leader == "n1"


# --------------------------------------------------------------------------- repair
def record_rejections(m: Message, into: list[Message]) -> Message:
    """Pass ``m`` on, noting it if it is a rejected APPEND."""
    if m.type == MT.APPEND_RESP and m.reject:
        into.append(m)
    return m


def isolated_old_leader_with_tail(tail: int) -> Cluster:
    """n3 led term 2 and appended ``tail`` entries nobody else has; n1 or n2 leads now."""
    c = Cluster()
    c.elect("n3")
    c.isolate("n3")
    for k in range(tail):
        c.raw("n3").propose(cmd(f"lost{k}"))
    c.flush()
    c.tick_until(lambda: c.leader() in ("n1", "n2"), nodes=["n1", "n2"])
    for k in range(5):
        c.put(c.leader(), "k", str(k))
    # A new leader starts optimistic: it probes n3 right after its own last entry.
    other = "n2" if c.leader() == "n1" else "n1"
    c.raw(c.leader()).transfer_leader(other)
    c.stabilize()
    c.put(other, "k", "after transfer")
    return c


def test_a_divergent_tail_is_replaced_with_one_rejection():
    c = isolated_old_leader_with_tail(50)
    leader = c.leader()
    rejections = []
    c.cut.clear()
    c.intercept = lambda m: record_rejections(m, rejections)
    c.tick(3)
    assert len(rejections) == 1  # the hint skips the whole term-2 tail at once
    ours = c.nodes[leader].storage
    theirs = c.nodes["n3"].storage
    assert theirs.last_index() == ours.last_index()
    assert theirs.entries(2, ours.last_index() + 1) == ours.entries(2, ours.last_index() + 1)
    assert c.nodes["n3"].kv == c.nodes[leader].kv


def test_a_follower_far_behind_catches_up_with_one_rejection():
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    for k in range(40):
        c.put("n1", "k", str(k))
    rejections = []
    c.cut.clear()
    c.intercept = lambda m: record_rejections(m, rejections)
    c.tick(3)
    assert len(rejections) <= 1
    assert c.nodes["n3"].applied == c.nodes["n1"].applied


# --------------------------------------------------------------------------- commit rule
def figure_8() -> Cluster:
    """Raft paper, Figure 8 (a)-(c): n1 leads term 4 and has its term-2 entry at index 3
    on a majority (n1, n2, n3), but none of its term-4 entries anywhere else."""
    c = Cluster(
        ["n1", "n2", "n3", "n4", "n5"], pre_vote=False, check_quorum=False, max_size_per_msg=1
    )
    c.elect("n1")  # term 2, its empty entry at index 2 committed everywhere
    c.cut |= {("n1", "n3"), ("n1", "n4"), ("n1", "n5")}
    assert c.raw("n1").propose(cmd("a")) == 3
    c.stabilize()  # (a) index 3 (term 2) reaches n2 only
    assert c.raw("n1").status().commit == 2
    c.crash("n1")
    c.cut.clear()
    c.intercept = lambda m: None if m.type == MT.APPEND and m.frm == "n5" else m
    c.elect("n5")  # (b) term 3 with n3, n4; its index 3 (term 3) stays local
    c.crash("n5")
    c.restart("n1")
    # Index 4 (term 4) gets nowhere: APPENDs arrive stripped of it.
    c.intercept = lambda m: (
        replace(m, entries=tuple(e for e in m.entries if e.index < 4)) if m.type == MT.APPEND else m
    )
    while c.raw("n1").role != Role.LEADER:  # (c) n1 wins a later term with n2, n3, n4
        c.raw("n1").campaign()
        c.stabilize()
    assert c.raw("n1").term == 4
    return c


def test_figure_8_an_old_term_entry_on_a_majority_is_not_committed():
    c = figure_8()
    holders = [n for n in ("n1", "n2", "n3") if c.nodes[n].raw._raft.log.zero_term(3) == 2]
    assert holders == ["n1", "n2", "n3"]
    assert c.raw("n1").status().commit == 2
    # (d) rightly so: n5 can still win and overwrite index 3 (the checker would object if
    # anything committed were lost).
    c.crash("n1")
    c.restart("n5")
    c.heal()
    while c.raw("n5").role != Role.LEADER:
        c.raw("n5").campaign()
        c.stabilize()
    c.stabilize()
    assert all(c.nodes[n].storage.term(3) == 3 for n in ("n2", "n3", "n4", "n5"))


def test_figure_8_it_commits_together_with_an_entry_of_the_current_term():
    c = figure_8()
    c.heal()
    c.tick(1)
    status = c.raw("n1").status()
    assert status.commit >= 4
    assert c.nodes["n2"].kv == {"k": "a"}


# --------------------------------------------------------------------------- flow control
def test_replicate_pipeline_is_bounded_by_inflight_messages():
    c = Cluster(max_inflight_msgs=2, max_size_per_msg=1)
    c.elect("n1")
    for k in range(10):
        c.raw("n1").propose(cmd(str(k)))
    apps = c.take(MT.APPEND, to="n2")
    assert len(apps) == 2 and all(len(m.entries) == 1 for m in apps)
    assert c.raw("n1").status().progress["n2"].paused
    c.deliver(apps[0])
    (ack,) = c.take(MT.APPEND_RESP, frm="n2")
    c.deliver(ack)
    more = c.take(MT.APPEND, to="n2")
    assert len(more) == 1 and more[0].entries[0].index == apps[1].entries[0].index + 1


def test_replicate_pipeline_is_bounded_by_inflight_bytes():
    c = Cluster(max_inflight_bytes=100, max_size_per_msg=1)
    c.elect("n1")
    for k in range(10):
        c.raw("n1").propose(b"x" * 30 + str(k).encode())
    apps = c.take(MT.APPEND, to="n2")
    assert len(apps) == 3  # 46 + 46 < 100 bytes in flight, the third one fills it


def test_probe_sends_one_append_until_it_hears_back():
    c = Cluster(max_size_per_msg=1)
    c.elect("n1")
    c.raw("n1").report_unreachable("n2")
    assert c.raw("n1").status().progress["n2"].state == "probe"
    for k in range(5):
        c.raw("n1").propose(cmd(str(k)))
    apps = c.take(MT.APPEND, to="n2")
    assert len(apps) == 1
    c.stabilize()
    c.tick(1)
    progress = c.raw("n1").status().progress["n2"]
    assert progress.state == ProgressState.REPLICATE
    assert progress.match == c.raw("n1").status().last_index


def test_uncommitted_bytes_are_bounded_on_the_leader():
    c = Cluster(max_uncommitted_bytes=100)
    c.elect("n1")
    c.isolate("n1")
    c.raw("n1").propose(b"x" * 60)
    with pytest.raises(ProposalDroppedError, match="uncommitted"):
        c.raw("n1").propose(b"x" * 60)


# --------------------------------------------------------------------------- durability
def test_a_crash_loses_entries_that_were_never_persisted():
    c = Cluster()
    c.elect("n1")
    before = c.raw("n2").status().last_index
    c.raw("n1").propose(cmd("v"))
    (app,) = c.take(MT.APPEND, to="n2")
    c.raw("n2").step(app)  # in n2's unstable log; its Ready is never handled
    assert c.raw("n2").status().last_index == before + 1
    c.crash("n2")
    c.restart("n2")
    assert c.raw("n2").status().last_index == before
    c.stabilize()
    c.tick(2)
    assert c.nodes["n2"].kv == {"k": "v"}


def test_the_leader_survives_a_crash_of_a_minority():
    c = Cluster(["n1", "n2", "n3", "n4", "n5"])
    c.elect("n1")
    c.crash("n4")
    c.crash("n5")
    c.put("n1", "k", "v")
    assert c.raw("n1").status().commit == c.raw("n1").status().last_index
    c.restart("n4")
    c.tick(2)
    assert c.nodes["n4"].kv == {"k": "v"}


def test_a_batch_of_proposals_leaves_in_one_append_per_follower():
    c = Cluster()
    c.elect("n1")
    last = c.raw("n1").last_index()
    assert c.raw("n1").propose_batch([cmd(str(k), key=f"k{k}") for k in range(5)]) == 5
    assert c.raw("n1").last_index() == last + 5
    for follower in ("n2", "n3"):
        (app,) = c.take(MT.APPEND, to=follower)
        assert [e.index for e in app.entries] == list(range(last + 1, last + 6))
        c.deliver(app)
    c.stabilize()
    assert c.nodes["n2"].kv == {f"k{k}": str(k) for k in range(5)}


def test_a_batch_is_cut_at_the_uncommitted_bytes_bound():
    c = Cluster(max_uncommitted_bytes=100)
    c.elect("n1")
    c.isolate("n1")
    last = c.raw("n1").last_index()
    assert c.raw("n1").propose_batch([b"x" * 40, b"x" * 40, b"x" * 40]) == 2
    assert c.raw("n1").last_index() == last + 2
    assert c.raw("n1").propose_batch([b"x" * 30]) == 0


# --------------------------------------------------------------------------- message count
def committed_by_acks() -> tuple[Cluster, RawNode]:
    """A 3-node cluster whose leader n1 just stepped the acknowledgements that commit a
    put of "a", with no Ready taken since."""
    c = Cluster()
    c.elect("n1")
    leader = c.raw("n1")
    leader.propose(cmd("a"))
    for follower in ("n2", "n3"):
        (app,) = c.take(MT.APPEND, to=follower)
        c.deliver(app)
    for ack in c.take(MT.APPEND_RESP):
        leader.step(ack)  # the first one commits "a" (a quorum with the leader)
    return c, leader


def test_a_commit_is_told_in_the_appends_of_the_same_step_batch_not_apart():
    """An acknowledgement that commits does not broadcast an empty APPEND when proposals
    stepped after it send APPENDs anyway: those carry the new commit (issue 10)."""
    c, leader = committed_by_acks()
    leader.propose(cmd("b"))  # in the same batch, before the Ready
    committed = leader.status().commit
    for follower in ("n2", "n3"):
        (app,) = c.take(MT.APPEND, to=follower)  # one message: entries and the commit
        assert app.entries and app.commit == committed
        c.deliver(app)
    c.stabilize()
    assert {n.kv["k"] for n in c.nodes.values()} == {"b"}


def test_a_commit_with_nothing_else_to_send_waits_for_the_notice_timer():
    """Without proposals after it, the commit is not sent at once: a notice is pending, and
    the driver's timer flushes it as an empty APPEND to each follower (issue 10)."""
    c, leader = committed_by_acks()
    committed = leader.status().commit
    assert c.take(MT.APPEND) == []
    assert leader.commit_notice_pending()
    leader.flush_commit_notices()
    assert not leader.commit_notice_pending()
    notices = c.take(MT.APPEND)
    assert sorted(m.to for m in notices) == ["n2", "n3"]
    assert all(not m.entries and m.commit == committed for m in notices)
    for m in notices:
        c.deliver(m)
    c.stabilize(notices=False)
    assert {c.raw(f).status().commit for f in ("n2", "n3")} == {committed}


def test_the_next_append_carries_a_lazy_commit_and_no_notice_follows():
    """At one client: the commit of one write rides the next write's APPEND, so the timer
    finds nothing pending and sends nothing (half the leader's messages per write)."""
    c, leader = committed_by_acks()
    committed = leader.status().commit
    assert c.take(MT.APPEND) == []  # a Ready taken: still nothing sent for the commit
    leader.propose(cmd("b"))
    apps = c.take(MT.APPEND)
    assert sorted(m.to for m in apps) == ["n2", "n3"]
    assert all(m.entries and m.commit == committed for m in apps)
    assert not leader.commit_notice_pending()
    leader.flush_commit_notices()
    assert c.take(MT.APPEND) == []


def test_an_idle_leader_still_tells_the_commit_with_its_next_heartbeat():
    """No later write and no timer: the next heartbeat carries the commit (min(match,
    commit)), so a follower never waits longer than a heartbeat interval."""
    c, leader = committed_by_acks()
    committed = leader.status().commit
    c.stabilize(notices=False)
    assert {c.raw(f).status().commit for f in ("n2", "n3")} == {committed - 1}
    c.tick(1, nodes=["n1"])  # heartbeat_tick=1 in the test cluster
    assert {c.raw(f).status().commit for f in ("n2", "n3")} == {committed}
    assert not leader.commit_notice_pending()


def test_a_paused_follower_never_holds_the_notice_timer():
    """A follower the leader cannot send to now (paused) keeps no notice pending, so a dead
    member costs no timer per write; it learns the commit with its next APPEND."""
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    leader = c.raw("n1")
    leader.report_unreachable("n3")  # probe: one APPEND out, then paused
    c.put("n1", "k", "v")
    leader.propose(cmd("w1"))
    c.stabilize(notices=False)  # n2 acknowledges: w1 commits, n2 not told yet
    assert leader.commit_notice_pending()
    leader.propose(cmd("w2"))  # its APPEND tells n2; n3 is paused
    c.take(MT.APPEND)
    assert not leader.commit_notice_pending()
    c.heal()
    c.tick_until(lambda: c.raw("n3").status().commit == leader.status().commit)


def test_a_follower_answers_the_appends_of_one_batch_with_one_ack():
    """Several APPENDs stepped before one Ready get one acknowledgement, of the highest
    index; a rejection is never folded away."""
    raw = lone()
    raw.step(append(2, 1, 1, 2))
    raw.step(append(2, 2, 2, 2))
    raw.step(append(2, 3, 2, 2))
    (ack,) = raw.ready().messages
    assert (ack.type, ack.index, ack.reject) == (MT.APPEND_RESP, 4, False)
    raw = lone()
    raw.step(append(2, 1, 1, 2))
    raw.step(append(2, 7, 2, 2))  # a gap: rejected with a hint
    acks = raw.ready().messages
    assert [(m.index, m.reject) for m in acks] == [(2, False), (7, True)]
