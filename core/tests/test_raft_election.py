"""Elections: timeouts, votes, pre-vote, check-quorum and the leader lease."""

from __future__ import annotations

import random

import pytest

from aspen.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Role,
    bootstrap,
)
from aspen.raft.raft import TRANSFER_CONTEXT
from aspen.testing.raftsim_cluster import Cluster

MT = MessageType


def lone(node_id: str = "n1", voters=("n1", "n2", "n3"), seed: int = 0, **config) -> RawNode:
    """One node of a bootstrapped cluster, with nobody to talk to."""
    storage = MemoryStorage()
    bootstrap(storage, voters)
    return RawNode(
        Config(id=node_id, **{"heartbeat_tick": 1, **config}), storage, random.Random(seed)
    )


def drain(raw: RawNode) -> list[Message]:
    """Take every Ready (persisting nothing: these tests only look at messages)."""
    out: list[Message] = []
    while raw.has_ready():
        rd = raw.ready()
        out.extend(rd.messages)
        raw.advance(rd)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_election_timeout_is_randomized_in_one_to_two_election_ticks(seed):
    raw = lone(seed=seed)
    ticks = 0
    while not any(m.type == MT.PRE_VOTE for m in drain(raw)):
        raw.tick()
        ticks += 1
    assert 10 <= ticks < 20


def test_elected_leader_commits_an_empty_entry_of_its_term():
    c = Cluster()
    c.elect("n1")
    status = c.raw("n1").status()
    assert (status.role, status.term, status.leader) == (Role.LEADER, 2, "n1")
    assert status.commit == status.last_index == 2
    entry = c.nodes["n1"].storage.entries(2, 3)[0]
    assert (entry.term, entry.data) == (2, b"")
    for other in ("n2", "n3"):
        assert c.raw(other).status().leader == "n1"


@pytest.mark.parametrize(("nodes", "seed"), [(3, 1), (3, 2), (5, 3), (5, 4), (1, 5)])
def test_ticking_elects_exactly_one_leader(nodes, seed):
    c = Cluster([f"n{i}" for i in range(1, nodes + 1)], seed=seed)
    c.tick_until(lambda: c.leader() is not None)
    leader = c.leader()
    assert [n for n in c.nodes if c.raw(n).role == Role.LEADER] == [leader]
    assert all(c.raw(n).leader == leader for n in c.nodes)


def test_candidate_persists_its_vote_with_the_vote_requests():
    raw = lone(pre_vote=False)
    raw.campaign()
    rd = raw.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == "n1" and rd.hard_state.term == 2
    assert sorted(m.to for m in rd.messages if m.type == MT.VOTE) == ["n2", "n3"]


def test_one_vote_per_term():
    raw = lone("n2")
    ask = {"index": 1, "log_term": 1, "term": 2}
    raw.step(Message(MT.VOTE, "n1", "n2", **ask))
    raw.step(Message(MT.VOTE, "n3", "n2", **ask))
    answers = {m.to: m.reject for m in drain(raw) if m.type == MT.VOTE_RESP}
    assert answers == {"n1": False, "n3": True}
    assert raw.status().vote == "n1"


def test_vote_refused_to_a_candidate_with_a_stale_log():
    c = Cluster(check_quorum=False)  # no leader lease: the vote is judged on the log alone
    c.elect("n1")
    c.put("n1", "k", "v")
    raw = c.raw("n3")
    raw.step(Message(MT.VOTE, "n2", "n3", term=9, index=2, log_term=2))
    (answer,) = c.take(MT.VOTE_RESP, frm="n3")
    assert answer.reject and raw.status().vote is None


def test_pre_vote_keeps_a_partitioned_node_from_bumping_terms_or_disrupting():
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    c.tick(60, nodes=["n3"])
    assert c.raw("n3").term == 2  # campaigned (pre-vote) many times, never won, never bumped
    c.heal()
    c.tick(5)
    assert c.leader() == "n1" and c.raw("n1").term == 2


def test_without_pre_vote_a_rejoining_node_disrupts_the_leader():
    c = Cluster(pre_vote=False, check_quorum=False)
    c.elect("n1")
    c.isolate("n3")
    c.tick(60, nodes=["n3"])
    assert c.raw("n3").term > 3
    c.heal()
    c.tick_until(lambda: c.raw("n1").term > 2)  # the old leader is pushed out of its term


def test_check_quorum_makes_an_isolated_leader_step_down():
    c = Cluster()
    c.elect("n1")
    c.isolate("n1")
    c.tick(10, nodes=["n1"])  # followers answered during the last period: still a quorum
    assert c.raw("n1").role == Role.LEADER
    c.tick(10, nodes=["n1"])  # a whole election timeout without hearing from a quorum
    assert c.raw("n1").role == Role.FOLLOWER and c.raw("n1").leader is None


def test_without_check_quorum_an_isolated_leader_stays():
    c = Cluster(check_quorum=False)
    c.elect("n1")
    c.isolate("n1")
    c.tick(50, nodes=["n1"])
    assert c.raw("n1").role == Role.LEADER


def test_followers_with_a_live_leader_ignore_votes_unless_transferring():
    c = Cluster(pre_vote=False)
    c.elect("n1")
    follower = c.raw("n2")
    follower.step(Message(MT.VOTE, "n3", "n2", term=7, index=9, log_term=2))
    assert follower.term == 2 and c.take(MT.VOTE_RESP) == []
    forced = Message(MT.VOTE, "n3", "n2", term=7, index=9, log_term=2, context=TRANSFER_CONTEXT)
    follower.step(forced)
    (answer,) = c.take(MT.VOTE_RESP, frm="n2")
    assert not answer.reject and follower.term == 7


def test_lease_expires_after_an_election_timeout_without_the_leader():
    c = Cluster(pre_vote=False)
    c.elect("n1")
    c.isolate("n1")
    c.tick(10, nodes=["n2"])
    c.raw("n2").step(Message(MT.VOTE, "n3", "n2", term=7, index=9, log_term=2))
    (answer,) = c.take(MT.VOTE_RESP, frm="n2")
    assert not answer.reject


def test_a_deposed_leader_learns_the_new_term_when_it_rejoins():
    c = Cluster(check_quorum=False)
    c.elect("n1")
    c.isolate("n1")
    c.tick_until(lambda: c.leader() in ("n2", "n3"), nodes=["n2", "n3"])
    new_term = c.raw(c.leader()).term
    c.heal()
    c.tick(2)
    assert c.raw("n1").role == Role.FOLLOWER and c.raw("n1").term == new_term


def test_restart_keeps_term_vote_and_commit():
    c = Cluster()
    c.elect("n2")
    c.put("n2", "k", "v")
    before = c.raw("n3").status()
    c.crash("n3")
    c.restart("n3")
    after = c.raw("n3").status()
    assert (after.term, after.vote, after.commit) == (before.term, before.vote, before.commit)
    assert c.nodes["n3"].kv == {}  # the state machine restarts from its snapshot ...
    c.stabilize()
    assert c.nodes["n3"].kv == {"k": "v"}  # ... and committed entries are applied again


def test_a_node_with_unapplied_membership_changes_does_not_campaign():
    c = Cluster(["n1"], joiners=["n2"])
    c.elect("n1")
    c.raw("n1").propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "n2"))
    c.stabilize()
    c.raw("n1").propose_conf_change(ConfChange(ConfChangeType.PROMOTE, "n2"))
    # n2 learns the promotion is committed but does not apply it yet.
    node = c.nodes["n2"]
    c.stabilize()
    assert node.conf.voters == ("n1", "n2")
    raft = node.raw._raft
    raft.log.applied = raft.log.applying = raft.log.committed - 1
    raft.hup(transfer=False)
    assert raft.role == Role.FOLLOWER
