"""Partitioned (Kafka-style) groups on a real 3-node cluster: the sticky assignor,
cooperative handover (never two owners), member epochs fencing zombies, static instance
ids, session expiry, committed offsets, and the group states (Dead too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from aspen.errors import CompareFailedError, NotFoundError
from aspen.testing import LocalCluster, local_cluster, wait_for
from aspen_pubsub import keys
from aspen_pubsub.partitioned import assign

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A client of one 3-node cluster with aspen-pubsub, for the whole module."""
    cluster: LocalCluster
    with local_cluster(tmp_path_factory.mktemp("pubsub-kafka"), 3, plugins=["pubsub"]) as cluster:
        cluster.leader_index()
        with cluster.client() as c:
            yield c


def _mine(answer: dict[str, Any]) -> list[int]:
    return sorted(a["partition"] for a in answer["assigned"])


def test_the_assignor_is_even_deterministic_and_sticky() -> None:
    assert assign(["b", "a"], 5, [None] * 5) == ["a", "a", "a", "b", "b"]
    before = ["a", "a", "b", "b", "c", "c"]
    after = assign(["a", "b"], 6, [None if m == "c" else m for m in before])
    assert after[:4] == before[:4] and sorted(after[4:]) == ["a", "b"]
    assert assign([], 2, ["a", "b"]) == [None, None]


def test_cooperative_handover_fencing_and_commits(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("kafka", partitions=4)
    ps.create_group("kafka", "g", mode="partitioned", session_timeout=30)
    assert ps.stats("kafka", "g")["group"]["state"] == "Empty"
    a = ps.join("kafka", "g", "a")
    assert _mine(a) == [0, 1, 2, 3] and a["state"] == "Stable"
    b = ps.join("kafka", "g", "b")
    assert _mine(b) == []  # a still owns them: nothing is given twice
    assert ps.stats("kafka", "g")["group"]["state"] == "PreparingRebalance"
    hb = ps.heartbeat("kafka", "g", a["member"], a["epoch"], [0, 1, 2, 3])
    revoke = hb["revoke"]
    assert len(revoke) == 2 and sorted(_mine(hb) + revoke) == [0, 1, 2, 3]
    ps.commit("kafka", "g", a["member"], a["epoch"], {p: 7 for p in revoke})
    kept = _mine(hb)
    ps.heartbeat("kafka", "g", a["member"], a["epoch"], kept)  # releases the revoked ones
    b2 = ps.heartbeat("kafka", "g", b["member"], b["epoch"], [])
    assert _mine(b2) == sorted(revoke)
    assert all(x["offset"] == 7 for x in b2["assigned"])  # committed offsets carried over
    group = ps.stats("kafka", "g")["group"]
    assert group["state"] == "Stable"
    assert sorted(m["partitions"] for m in group["members"]) == sorted([kept, sorted(revoke)])
    with pytest.raises(CompareFailedError, match="does not own partition"):
        ps.commit("kafka", "g", a["member"], a["epoch"], {revoke[0]: 9})
    with pytest.raises(CompareFailedError, match="fenced"):
        ps.commit("kafka", "g", a["member"], a["epoch"] + 100, {kept[0]: 9})
    ps.leave("kafka", "g", b["member"], b["epoch"])
    back = ps.heartbeat("kafka", "g", a["member"], a["epoch"], kept)
    assert _mine(back) == [0, 1, 2, 3]


def test_static_member_keeps_partitions_and_fences_its_zombie(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("static", partitions=2)
    ps.create_group("static", "g", mode="partitioned", session_timeout=30)
    first = ps.join("static", "g", "svc", instance="svc-0")
    other = ps.join("static", "g", "svc", instance="svc-1")
    ps.heartbeat("static", "g", first["member"], first["epoch"], [0, 1])  # hands one over
    other = ps.heartbeat("static", "g", other["member"], other["epoch"], [])
    mine = _mine(ps.heartbeat("static", "g", first["member"], first["epoch"], [0, 1]))
    assert len(mine) == 1
    again = ps.join("static", "g", "svc", instance="svc-0")  # a quick restart
    assert again["member"] == "svc-0" and again["epoch"] > first["epoch"]
    assert _mine(again) == mine  # no rebalance
    with pytest.raises(CompareFailedError, match="fenced"):  # the old process's commit
        ps.commit("static", "g", first["member"], first["epoch"], {mine[0]: 1})
    ps.commit("static", "g", again["member"], again["epoch"], {mine[0]: 1})


def test_a_silent_member_loses_its_partitions_after_its_session(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("sessions", partitions=2)
    ps.create_group("sessions", "g", mode="partitioned", session_timeout=1)
    gone = ps.join("sessions", "g", "gone")
    live = ps.join("sessions", "g", "live")

    def live_owns_all() -> bool:
        answer = ps.heartbeat("sessions", "g", live["member"], live["epoch"], [0, 1])
        return _mine(answer) == [0, 1]

    wait_for(live_owns_all, timeout=20, interval=0.2, message="the silent member expired")
    with pytest.raises(CompareFailedError, match="not a member"):
        ps.heartbeat("sessions", "g", gone["member"], gone["epoch"], [])
    assert [m["member"] for m in ps.stats("sessions", "g")["group"]["members"]] == [live["member"]]


def test_a_deleted_group_is_dead_and_a_new_one_starts_afresh(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("dead", partitions=2)
    ps.publish("dead", b"one")
    ps.create_group("dead", "g", mode="partitioned", session_timeout=30)
    member = ps.join("dead", "g", "m")
    ps.commit("dead", "g", member["member"], member["epoch"], {0: 1, 1: 1})
    with pytest.raises(CompareFailedError, match="NON_EMPTY_GROUP"):  # as Kafka: members first
        ps.delete_group("dead", "g")
    ps.delete_group("dead", "g", force=True)
    with pytest.raises(NotFoundError, match="Dead") as dead:  # its member is told
        ps.heartbeat("dead", "g", member["member"], member["epoch"], [0, 1])
    assert dead.value.details["state"] == "Dead"
    with pytest.raises(NotFoundError, match="Dead"):
        ps.stats("dead", "g")
    ps.create_group("dead", "g", mode="partitioned", session_timeout=30)
    fresh = ps.stats("dead", "g")["group"]
    assert fresh["state"] == "Empty" and fresh["members"] == [] and fresh["cursors"] == [0, 0]
    with pytest.raises(CompareFailedError, match="not a member"):  # the old member rejoins
        ps.heartbeat("dead", "g", member["member"], member["epoch"], [0, 1])


def test_a_group_whose_deletion_was_cut_short_stays_dead_until_deleted(client: Any) -> None:
    """The leader dies between marking a group Dead and removing its records (written here
    as that first entry would): the group reports Dead and refuses use and re-creation
    until a delete finishes it."""
    ps = client.pubsub
    ps.create_topic("halfdead")
    ps.create_group("halfdead", "w")  # a competing group: Dead applies to both kinds
    key = keys.group("halfdead", "w")
    record = msgpack.unpackb(client.call("kv.range", {"key": key})["kvs"][0]["value"])
    client.call("kv.put", {"key": key, "value": msgpack.packb(dict(record, deleting=True))})
    assert ps.stats("halfdead", "w")["group"]["state"] == "Dead"
    with pytest.raises(NotFoundError, match="being deleted"):
        ps.fetch("halfdead", "w", "c")
    with pytest.raises(CompareFailedError, match="being deleted"):
        ps.create_group("halfdead", "w")
    ps.delete_group("halfdead", "w")
    ps.create_group("halfdead", "w")
    assert "state" not in ps.stats("halfdead", "w")["group"]
