"""Snapshots: a follower that needs compacted entries is sent one; the driver installs it
(``Ready.snapshot``) and reports how sending went; replication then resumes."""

from __future__ import annotations

import random

from aspen.raft import (
    Config,
    ConfState,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    SnapshotMeta,
    bootstrap,
)
from aspen.testing.raftsim_cluster import Cluster

MT = MessageType


def lagging_cluster(**config) -> Cluster:
    """n1 leads; n3 missed 20 writes that n1 has compacted away."""
    c = Cluster(snapshot_every=5, keep_entries=0, **config)
    c.elect("n1")
    c.isolate("n3")
    for k in range(20):
        c.put("n1", f"k{k}", str(k))
    assert c.nodes["n1"].storage.first_index() > c.nodes["n3"].storage.last_index() + 1
    c.cut.clear()
    return c


def test_a_follower_behind_the_compacted_log_gets_a_snapshot_and_catches_up():
    c = lagging_cluster()
    compacted_to = c.nodes["n1"].storage.first_index() - 1
    sent: list[Message] = []
    c.intercept = lambda m: (sent.append(m), m)[1]
    c.tick(3)
    snaps = [m for m in sent if m.type == MT.SNAPSHOT]
    assert len(snaps) == 1 and snaps[0].to == "n3"
    assert snaps[0].snapshot is not None and snaps[0].snapshot.index >= compacted_to
    assert c.nodes["n3"].kv == c.nodes["n1"].kv
    progress = c.raw("n1").status().progress["n3"]
    assert progress.state == "replicate" and progress.match == c.raw("n1").status().last_index
    c.put("n1", "after", "snapshot")
    assert c.nodes["n3"].kv["after"] == "snapshot"


def test_a_failed_snapshot_is_retried_and_a_delivered_one_resumes_replication():
    c = lagging_cluster()
    c.intercept = lambda m: None if m.type == MT.SNAPSHOT else m
    c.tick(1)
    progress = c.raw("n1").status().progress["n3"]
    assert progress.state == "probe" and progress.paused  # reported failed: back to probing
    assert c.nodes["n3"].kv == {}
    c.heal()
    c.tick(2)
    assert c.nodes["n3"].kv == c.nodes["n1"].kv


def test_snapshot_state_pauses_the_follower_until_the_driver_reports():
    c = lagging_cluster()
    c.raw("n1").tick()
    held = []
    while wire := c.take():  # deliver everything but snapshots, which stay "on their way"
        for m in wire:
            if m.type == MT.SNAPSHOT:
                held.append(m)
            else:
                c.deliver(m)
    assert [m.to for m in held] == ["n3"]
    progress = c.raw("n1").status().progress["n3"]
    assert progress.state == "snapshot" and progress.paused
    c.put("n1", "more", "data")
    assert not [m for m in c.take(to="n3") if m.type == MT.APPEND]


def test_the_driver_installs_before_applying_anything_else():
    storage = MemoryStorage()
    bootstrap(storage, ["n1", "n2", "n3"])
    raw = RawNode(Config(id="n2", heartbeat_tick=1), storage, random.Random(0))
    meta = SnapshotMeta(40, 3, ConfState(("n1", "n2", "n3", "n4")))
    raw.step(Message(MT.SNAPSHOT, "n1", "n2", term=3, snapshot=meta))
    rd = raw.ready()
    assert rd.snapshot == meta and rd.committed == ()
    (ack,) = rd.messages
    assert (ack.type, ack.index) == (MT.APPEND_RESP, 40)
    storage.apply_snapshot(meta)
    storage.set_hard_state(rd.hard_state)
    raw.advance(rd)
    status = raw.status()
    assert (status.commit, status.applied, status.conf) == (40, 40, meta.conf)
    # A snapshot we already cover is answered with our commit and otherwise ignored.
    raw.step(Message(MT.SNAPSHOT, "n1", "n2", term=3, snapshot=SnapshotMeta(30, 3)))
    rd = raw.ready()
    assert rd.snapshot is None and rd.messages[0].index == 40


def test_a_snapshot_matching_our_log_only_moves_the_commit():
    c = Cluster()
    c.elect("n1")
    c.put("n1", "k", "v")
    last = c.raw("n2").status().last_index
    term = c.raw("n2").term
    c.raw("n2").step(Message(MT.SNAPSHOT, "n1", "n2", term=term, snapshot=SnapshotMeta(last, term)))
    assert c.nodes["n2"].raw._raft.log.unstable.snapshot is None
    assert c.raw("n2").status().commit == last
