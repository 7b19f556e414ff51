"""ReadIndex: safe reads confirm leadership with a heartbeat round, followers forward,
new leaders wait for their first commit (lease reads: ``test_raft_lease.py``)."""

from __future__ import annotations

import pytest

from aspen.raft import MessageType, Role
from aspen.testing.raftsim_cluster import Cluster
from aspen.testing.raftsim_node import encode_command

MT = MessageType


def ask(c: Cluster, node_id: str, context: bytes) -> list[int]:
    """Request a read on ``node_id``; the list receives the read index when answered."""
    answers: list[int] = []
    c.nodes[node_id].read_waiters[context] = answers.append
    assert c.raw(node_id).read_index(context)
    return answers


def test_leader_confirms_with_a_heartbeat_round_carrying_the_context():
    c = Cluster()
    c.elect("n1")
    c.put("n1", "k", "v")
    answers = ask(c, "n1", b"r1")
    heartbeats = c.take(MT.HEARTBEAT, frm="n1")
    assert heartbeats and all(m.context == b"r1" for m in heartbeats)
    assert answers == []  # not before a quorum answered
    c.deliver(heartbeats[0])
    (reply,) = c.take(MT.HEARTBEAT_RESP)
    assert reply.context == b"r1"
    c.deliver(reply)
    c.flush()
    assert answers == [c.raw("n1").status().commit]


def test_a_leader_cut_off_from_the_quorum_never_answers():
    c = Cluster()
    c.elect("n1")
    c.isolate("n1")
    answers = ask(c, "n1", b"r1")
    c.tick(5, nodes=["n1"])
    assert answers == []


def test_followers_forward_reads_to_the_leader():
    c = Cluster()
    c.elect("n1")
    c.put("n1", "k", "v")
    answers = ask(c, "n3", b"from-n3")
    (forwarded,) = c.take(MT.READ_INDEX, frm="n3")
    assert forwarded.to == "n1" and forwarded.context == b"from-n3"
    c.deliver(forwarded)
    c.stabilize()
    assert answers == [c.raw("n1").status().commit]


def test_reads_wait_until_the_new_leader_commits_in_its_term():
    c = Cluster()
    c.elect("n1")
    c.intercept = lambda m: None if m.type == MT.APPEND else m
    c.tick_until(lambda: c.leader() not in (None, "n1"), nodes=["n2", "n3"])
    leader = c.leader()
    assert c.raw(leader).status().commit < c.raw(leader).status().last_index
    answers = ask(c, leader, b"early")
    c.stabilize()
    assert answers == []  # its commit index may be stale: wait
    c.heal()
    c.tick(1)
    assert answers == [c.raw(leader).status().last_index]


def test_later_confirmation_answers_earlier_requests_too():
    c = Cluster()
    c.elect("n1")
    first = ask(c, "n1", b"a")
    c.take(MT.HEARTBEAT)  # lost
    second = ask(c, "n1", b"b")
    c.stabilize()
    assert first and second


def test_no_leader_no_read():
    c = Cluster()
    assert c.raw("n2").read_index(b"x") is False
    with pytest.raises(ValueError):
        c.raw("n2").read_index(b"")


def test_a_single_voter_answers_at_once():
    c = Cluster(["n1"])
    c.elect("n1")
    answers = ask(c, "n1", b"solo")
    c.flush()
    assert answers == [c.raw("n1").status().commit]


def test_pending_reads_are_dropped_when_leadership_changes():
    c = Cluster()
    c.elect("n1")
    c.isolate("n1")
    answers = ask(c, "n1", b"lost")
    c.tick(20, nodes=["n1"])
    assert c.raw("n1").role == Role.FOLLOWER
    c.heal()
    c.tick_until(lambda: c.leader() is not None)
    c.tick(2)
    assert answers == []  # the driver times out and retries with a new context


def test_a_steady_read_index_round_needs_no_write_on_any_node():
    c = Cluster()
    c.elect("n1")
    c.put("n1", "k", "v")
    leader = c.raw("n1")
    answers = ask(c, "n1", b"light")
    assert leader.has_ready() and not leader.has_durable_ready()  # heartbeats only
    heartbeat = c.take(MT.HEARTBEAT, frm="n1")[0]
    c.deliver(heartbeat)
    follower = c.raw(heartbeat.to)
    assert follower.has_ready() and not follower.has_durable_ready()  # its answer only
    (reply,) = c.take(MT.HEARTBEAT_RESP)
    c.deliver(reply)
    assert leader.has_ready() and not leader.has_durable_ready()  # the read state only
    c.flush()
    assert answers == [leader.status().commit]


def test_a_proposal_or_a_newer_commit_needs_a_write():
    c = Cluster()
    c.elect("n1")
    c.raw("n1").propose(encode_command({"op": "put", "key": "k", "value": "v"}))
    assert c.raw("n1").has_durable_ready()
    c.stabilize()
    assert not any(c.raw(n).has_durable_ready() for n in c.nodes)


def test_has_durable_ready_predicts_every_ready_of_simulated_runs(monkeypatch):
    """Over seeded runs with crashes, partitions, elections, transfers, membership changes
    and snapshots: a Ready has something to persist or apply exactly when
    ``has_durable_ready`` said so just before (the driver skips its write otherwise)."""
    from aspen.raft import RawNode
    from aspen.testing.raftsim import run_simulation

    real_ready = RawNode.ready
    wrong: list[str] = []
    counts = {"durable": 0, "light": 0}

    def checked_ready(raw: RawNode):
        predicted = raw.has_durable_ready()
        rd = real_ready(raw)
        durable = bool(rd.entries or rd.hard_state or rd.snapshot or rd.committed)
        counts["durable" if durable else "light"] += 1
        if predicted != durable:
            wrong.append(f"{raw.id}: predicted {predicted}, got {rd}")
        return rd

    monkeypatch.setattr(RawNode, "ready", checked_ready)
    for seed in range(12):
        assert run_simulation(seed, nodes=3, steps=200, faults="mixed").ok
    assert not wrong, wrong[:3]
    assert counts["durable"] > 0 and counts["light"] > 0


def test_a_follower_read_after_a_lazy_commit_needs_no_notice_timer():
    """A commit not told to the followers yet (its notice is lazy, issue 10): a follower's
    ReadIndex answer comes with that commit (from the heartbeat round, or an APPEND sent at
    once with the answer), so the read applies there without waiting for the timer."""
    c = Cluster()
    c.elect("n1")
    leader = c.raw("n1")
    leader.propose(encode_command({"op": "put", "key": "k", "value": "v"}))
    c.stabilize(notices=False)  # committed on the leader; followers not told yet
    assert leader.commit_notice_pending()
    answers = ask(c, "n2", b"after-put")
    c.stabilize(notices=False)
    committed = leader.status().commit
    assert answers == [committed]
    assert c.raw("n2").status().commit == committed
    assert c.nodes["n2"].kv["k"] == "v"


def test_a_follower_read_answered_from_a_lease_carries_the_commit_at_once():
    """With lease reads the leader answers without a heartbeat round: it sends the asking
    follower the commit with the answer, not after the notice delay."""
    c = Cluster(read_only="lease", election_tick=10)
    c.tick_until(lambda: c.leader() is not None)  # a lease voter only votes after a timeout
    lead = c.leader()
    assert lead is not None
    c.tick(1)  # a heartbeat round, acknowledged: the leader holds a lease
    leader = c.raw(lead)
    follower = next(n for n in c.ids if n != lead)
    leader.propose(encode_command({"op": "put", "key": "k", "value": "v"}))
    c.stabilize(notices=False)
    assert leader.commit_notice_pending()
    answers = ask(c, follower, b"lease-read")
    (forwarded,) = c.take(MT.READ_INDEX)
    c.deliver(forwarded)
    assert not [m for m in c.take(MT.HEARTBEAT) if m.context == b"lease-read"]
    c.stabilize(notices=False)
    committed = leader.status().commit
    assert answers == [committed]
    assert c.raw(follower).status().commit == committed
    assert c.nodes[follower].kv["k"] == "v"
