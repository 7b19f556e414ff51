"""Membership changes (learners, promotion, removal, what is refused) and leadership
transfer."""

from __future__ import annotations

import pytest

from aspen.raft import (
    ConfChange,
    ConfChangeRefusedError,
    ConfChangeType,
    ConfState,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
)
from aspen.testing.raftsim_cluster import Cluster
from aspen.testing.raftsim_node import encode_command

MT = MessageType
ADD, PROMOTE, REMOVE = ConfChangeType.ADD_LEARNER, ConfChangeType.PROMOTE, ConfChangeType.REMOVE


def change(c: Cluster, leader: str, kind: ConfChangeType, node: str) -> None:
    """Propose a membership change on ``leader`` and deliver until it is applied."""
    c.raw(leader).propose_conf_change(ConfChange(kind, node))
    c.stabilize()


def test_add_a_learner_let_it_catch_up_promote_it_then_remove_a_voter():
    c = Cluster(joiners=["n4"])
    c.elect("n1")
    for k in range(5):
        c.put("n1", f"k{k}", str(k))
    assert c.raw("n4").status().conf == ConfState()  # a joiner knows nothing yet
    change(c, "n1", ADD, "n4")
    assert c.nodes["n1"].conf == ConfState(("n1", "n2", "n3"), ("n4",))
    assert c.nodes["n4"].kv == c.nodes["n1"].kv  # via the founders' snapshot, then entries
    assert c.raw("n4").role == Role.LEARNER
    assert c.raw("n1").status().progress["n4"].is_learner
    change(c, "n1", PROMOTE, "n4")
    assert all(c.nodes[n].conf.voters == ("n1", "n2", "n3", "n4") for n in c.nodes)
    assert c.raw("n4").role == Role.FOLLOWER
    change(c, "n1", REMOVE, "n2")
    assert c.nodes["n1"].conf == ConfState(("n1", "n3", "n4"), ())
    assert "n2" not in c.raw("n1").status().progress
    c.put("n1", "after", "removal")
    assert "after" not in c.nodes["n2"].kv and c.nodes["n4"].kv["after"] == "removal"


def test_learners_do_not_count_towards_the_commit_quorum():
    c = Cluster(joiners=["n4"])
    c.elect("n1")
    change(c, "n1", ADD, "n4")
    c.isolate("n2")
    c.isolate("n3")
    c.cut -= {("n1", "n4"), ("n4", "n1")}
    before = c.raw("n1").status().commit
    c.put("n1", "k", "v")
    status = c.raw("n1").status()
    assert status.progress["n4"].match == status.last_index  # the learner has it ...
    assert status.commit == before  # ... but it does not vote


def test_learners_never_campaign():
    c = Cluster(joiners=["n4"])
    c.elect("n1")
    change(c, "n1", ADD, "n4")
    c.isolate("n1")
    sent = []
    c.intercept = lambda m: (sent.append(m), m)[1]
    c.tick(60, nodes=["n4"])
    assert c.raw("n4").role == Role.LEARNER
    assert not [m for m in sent if m.frm == "n4" and m.type in (MT.PRE_VOTE, MT.VOTE)]


def test_one_membership_change_at_a_time():
    c = Cluster(joiners=["n4", "n5"])
    c.elect("n1")
    c.raw("n1").propose_conf_change(ConfChange(ADD, "n4"))
    with pytest.raises(ConfChangeRefusedError, match="not applied yet"):
        c.raw("n1").propose_conf_change(ConfChange(ADD, "n5"))
    c.stabilize()
    change(c, "n1", ADD, "n5")
    assert c.nodes["n1"].conf.learners == ("n4", "n5")


@pytest.mark.parametrize(
    ("kind", "node", "message"),
    [
        (PROMOTE, "n2", "not a learner"),
        (ADD, "n3", "already a voter"),
        (REMOVE, "n9", "not a member"),
    ],
)
def test_invalid_changes_are_refused(kind, node, message):
    c = Cluster()
    c.elect("n1")
    with pytest.raises(ConfChangeRefusedError, match=message):
        c.raw("n1").propose_conf_change(ConfChange(kind, node))


def test_removing_the_last_voter_is_refused():
    c = Cluster(["n1"])
    c.elect("n1")
    with pytest.raises(ConfChangeRefusedError, match="last voter"):
        c.raw("n1").propose_conf_change(ConfChange(REMOVE, "n1"))


def test_a_change_that_would_lose_quorum_is_refused():
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    c.tick(20, nodes=["n1", "n2"])  # n3 has been silent for a whole check-quorum period
    assert not c.raw("n1").status().progress["n3"].recent_active
    with pytest.raises(ConfChangeRefusedError, match="lose quorum"):
        c.raw("n1").propose_conf_change(ConfChange(REMOVE, "n2"))
    change(c, "n1", REMOVE, "n3")  # removing the silent one is fine
    assert c.nodes["n1"].conf.voters == ("n1", "n2")


def test_promoting_an_unreachable_learner_is_refused_when_it_would_lose_quorum():
    c = Cluster(["n1"], joiners=["n2"])
    c.elect("n1")
    change(c, "n1", ADD, "n2")
    c.isolate("n2")
    c.tick(20, nodes=["n1"])
    with pytest.raises(ConfChangeRefusedError, match="lose quorum"):
        c.raw("n1").propose_conf_change(ConfChange(PROMOTE, "n2"))


def test_a_new_leader_refuses_changes_until_it_commits_in_its_term():
    c = Cluster(joiners=["n4"])
    c.elect("n1")
    c.intercept = lambda m: None if m.type == MT.APPEND else m
    c.tick_until(lambda: c.leader() in ("n2", "n3"), nodes=["n2", "n3"])
    leader = c.leader()
    with pytest.raises(ConfChangeRefusedError, match="not committed"):
        c.raw(leader).propose_conf_change(ConfChange(ADD, "n4"))
    (follower,) = {"n2", "n3"} - {leader}
    with pytest.raises(NotLeaderError):
        c.raw(follower).propose_conf_change(ConfChange(ADD, "n4"))


def test_applying_an_invalid_change_changes_nothing():
    c = Cluster()
    conf = c.raw("n1").apply_conf_change(ConfChange(PROMOTE, "n2"))
    assert conf == ConfState(("n1", "n2", "n3"), ())


def test_a_removed_leader_steps_down_and_hands_over_at_once():
    c = Cluster()
    c.elect("n1")
    change(c, "n1", REMOVE, "n1")  # no ticks: TIMEOUT_NOW makes the best voter campaign
    assert c.raw("n1").role == Role.FOLLOWER
    assert c.leader() in ("n2", "n3")
    with pytest.raises(NotLeaderError):
        c.raw("n1").propose(b"")
    c.put(c.leader(), "k", "v")
    assert c.nodes["n2"].kv == c.nodes["n3"].kv == {"k": "v"}


# --------------------------------------------------------------------------- transfer
def test_transfer_to_an_up_to_date_follower():
    c = Cluster()
    c.elect("n1")
    c.put("n1", "k", "v")
    c.raw("n1").transfer_leader("n2")
    c.stabilize()  # no ticks: the target campaigns on TIMEOUT_NOW, past the voters' lease
    assert c.leader() == "n2" and c.raw("n2").term == 3


def test_a_transferee_is_told_a_lazy_commit_before_it_campaigns():
    """The commit of the last write was not told yet (lazy notice, issue 10): the transfer
    sends it to the target with TIMEOUT_NOW, so it starts leading from that commit."""
    c = Cluster()
    c.elect("n1")
    leader = c.raw("n1")
    leader.propose(encode_command({"op": "put", "key": "k", "value": "v"}))
    c.stabilize(notices=False)
    committed = leader.status().commit
    assert c.raw("n2").status().commit < committed
    leader.transfer_leader("n2")
    notice, timeout_now = c.take(frm="n1", to="n2")
    assert (notice.type, notice.commit, timeout_now.type) == (MT.APPEND, committed, MT.TIMEOUT_NOW)
    c.deliver(notice)
    assert c.raw("n2").status().commit == committed


def test_transfer_first_brings_a_lagging_target_up_to_date():
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    for k in range(10):
        c.put("n1", "k", str(k))
    c.cut.clear()
    sent = []
    c.intercept = lambda m: (sent.append(m), m)[1]
    c.raw("n1").transfer_leader("n3")
    c.stabilize()
    assert c.leader() == "n3"
    kinds = [m.type for m in sent if m.to == "n3" and m.frm == "n1"]
    assert MT.APPEND in kinds and kinds.index(MT.APPEND) < kinds.index(MT.TIMEOUT_NOW)
    assert c.nodes["n3"].kv == {"k": "9"}


def test_proposals_are_dropped_during_a_transfer_which_aborts_after_a_timeout():
    c = Cluster()
    c.elect("n1")
    c.isolate("n3")
    c.put("n1", "k", "v")
    c.raw("n1").transfer_leader("n3")
    with pytest.raises(ProposalDroppedError, match="transferred"):
        c.raw("n1").propose(b"")
    c.tick(10, nodes=["n1", "n2"])
    assert c.raw("n1").status().lead_transferee is None
    c.raw("n1").propose(b"")


def test_transfer_misuse():
    c = Cluster(joiners=["n4"])
    c.elect("n1")
    change(c, "n1", ADD, "n4")
    with pytest.raises(ValueError, match="learner"):
        c.raw("n1").transfer_leader("n4")
    with pytest.raises(ValueError, match="not a member"):
        c.raw("n1").transfer_leader("n9")
    with pytest.raises(NotLeaderError):
        c.raw("n2").transfer_leader("n3")
    c.raw("n1").transfer_leader("n1")  # already the leader: nothing to do
    assert c.leader() == "n1"
