"""Lease reads (``read_only="lease"``, Raft thesis §6.4): a leader that a quorum
acknowledged recently answers reads without a heartbeat round; never stale while the
clocks drift within ``Config.max_clock_drift``, possibly stale beyond it."""

from __future__ import annotations

import pytest

from aspen.raft import ConfChange, ConfChangeType, Message, MessageType, Role
from aspen.raft.lease import lease_duration
from aspen.testing.linearizability import check_kv_history
from aspen.testing.raftsim import run_simulation
from aspen.testing.raftsim_cluster import Cluster

MT = MessageType
ELECTION_TICK = 10


def lease_cluster() -> tuple[Cluster, str]:
    """Three nodes with lease reads, a leader elected by its timer, k=v1 committed, and a
    heartbeat round acknowledged (the leader holds a lease)."""
    c = Cluster(read_only="lease", election_tick=ELECTION_TICK)
    c.tick_until(lambda: c.leader() is not None)
    leader = c.leader()
    assert leader is not None
    c.put(leader, "k", "v1")
    c.tick(1)  # a heartbeat round, acknowledged by both followers
    return c, leader


def ask(c: Cluster, node_id: str, context: bytes) -> list[int]:
    """Request a read on ``node_id``; the list receives the read index when answered."""
    answers: list[int] = []
    c.nodes[node_id].read_waiters[context] = answers.append
    c.raw(node_id).read_index(context)
    c.flush()
    return answers


def test_the_lease_lasts_the_election_timeout_shortened_by_the_drift_bound():
    assert lease_duration(10, 0.0) == 9
    assert lease_duration(10, 0.1) == 8
    assert lease_duration(10, 0.5) == 6
    assert lease_duration(2, 1.0) == 0  # too short to be of use: no lease at all


def test_a_leader_with_a_lease_answers_without_a_heartbeat_round():
    c, leader = lease_cluster()
    answers = ask(c, leader, b"lease")
    assert answers == [c.raw(leader).status().commit]
    assert all(m.context != b"lease" for m in c.take(MT.HEARTBEAT))


def test_a_restarted_voter_refuses_votes_for_an_election_timeout():
    c, leader = lease_cluster()
    follower = next(n for n in c.ids if n != leader)
    c.crash(follower)
    c.restart(follower)
    raw = c.raw(follower)
    assert raw.status().leader is None
    before = raw.status().vote
    raw.step(Message(MT.VOTE, "n9", follower, term=raw.term + 1, index=99, log_term=99))
    assert raw.status().vote == before  # ignored: it may have acknowledged a lease round


def _isolated_leader_run(leader_ticks_per_step: float, others_ticks_per_step: float):
    """Cut the leader off right after a lease round; tick it and the others at the given
    rates while the others elect a new leader and write k=v2. Returns (lease answers the
    old leader gave, stale ones among them, whether a new leader wrote v2)."""
    c, old = lease_cluster()
    others = [n for n in c.ids if n != old]
    c.isolate(old)
    owed = {old: 0.0, **dict.fromkeys(others, 0.0)}
    answered = stale = 0
    wrote = False
    for step in range(6 * ELECTION_TICK):
        for node, rate in [(old, leader_ticks_per_step)] + [
            (n, others_ticks_per_step) for n in others
        ]:
            owed[node] += rate
            while owed[node] >= 1.0:
                owed[node] -= 1.0
                c.tick(1, nodes=[node])
        new = next((n for n in others if c.raw(n).role == Role.LEADER), None)
        if new is not None and not wrote:
            c.put(new, "k", "v2")
            wrote = c.nodes[new].kv.get("k") == "v2"
        if c.raw(old).role != Role.LEADER:
            break
        if ask(c, old, f"r{step}".encode()):
            answered += 1
            stale += wrote and c.nodes[old].kv.get("k") == "v1"
    return answered, stale, wrote


def test_a_lease_read_is_never_stale_while_the_drift_stays_within_the_bound():
    # the others' clocks run 10 % fast (the default bound), the old leader's at real time
    answered, stale, wrote = _isolated_leader_run(1.0, 1.1)
    assert answered > 0  # the old leader did serve from its lease after the cut
    assert wrote  # and the others did elect a new leader and write
    assert stale == 0


def test_a_stale_lease_read_is_possible_when_the_drift_exceeds_the_bound():
    # the others' clocks run twice as fast as the old leader's: far beyond the 10 % bound
    _, stale, wrote = _isolated_leader_run(1.0, 2.0)
    assert wrote
    assert stale > 0  # the deposed leader still believed its lease: the bound matters


@pytest.mark.parametrize("first", range(0, 200, 50), ids=lambda s: f"seeds{s}")
def test_simulated_lease_reads_with_drifting_clocks_stay_linearizable(first):
    failures = []
    for seed in range(first, first + 50):
        result = run_simulation(seed, nodes=5 if seed % 4 == 3 else 3, steps=400, lease=True)
        if not result.ok:
            failures.append(result.summary() + " (lease=True)")
            continue
        verdict = check_kv_history(result.history)
        if verdict.ok is not True:
            failures.append(f"{result.summary()} (lease=True)\n  {verdict.explanation}")
    assert not failures, "\n".join(failures)


def test_a_leader_earns_a_lease_again_after_a_membership_change():
    """A cluster formed by joins (as ``aspen dev up`` forms one) gets a lease once a round
    sent after the last change is acknowledged, not only after its next election."""
    c = Cluster(["n1"], joiners=["n2", "n3"], read_only="lease", election_tick=ELECTION_TICK)
    c.elect("n1")
    lease = c.raw("n1")._raft.lease
    for joiner in ("n2", "n3"):
        for kind in (ConfChangeType.ADD_LEARNER, ConfChangeType.PROMOTE):
            c.raw("n1").propose_conf_change(ConfChange(kind, joiner))
            c.stabilize()
    assert c.nodes["n1"].conf.voters == ("n1", "n2", "n3")
    assert not lease.valid()  # the rounds of the old voters no longer count
    assert not c.raw("n1").status().lease
    c.tick(1)  # a heartbeat round to the new voters, acknowledged by both
    assert lease.valid() and c.raw("n1").status().lease
    answers = ask(c, "n1", b"after-joins")
    assert answers == [c.raw("n1").status().commit]
    assert all(m.context != b"after-joins" for m in c.take(MT.HEARTBEAT))


def test_a_round_sent_before_a_membership_change_earns_no_lease():
    c, leader = lease_cluster()
    lease = c.raw(leader)._raft.lease
    c.raw(leader).tick()  # a round leaves; its answers arrive after the change
    pending = c.take(MT.HEARTBEAT)
    assert pending
    c.raw(leader)._raft.after_conf_change()
    assert not lease.valid()
    for m in pending:
        c.deliver(m)
    c.stabilize()
    assert not lease.valid()


def test_lease_ticks_left_tell_the_driver_how_long_reads_may_skip_raft():
    c, leader = lease_cluster()
    raw = c.raw(leader)
    lease = raw._raft.lease
    left = raw.lease_ticks_left()
    assert left == lease.start + lease.duration - lease.clock > 0
    raw.tick()  # a tick passes; the round it sends is not answered yet
    assert raw.lease_ticks_left() == left - 1
    follower = next(n for n in c.ids if n != leader)
    assert c.raw(follower).lease_ticks_left() == 0  # only a leader has a lease
    raw._raft.after_conf_change()
    assert raw.lease_ticks_left() == 0  # restarted: until a new round is acknowledged
