"""A cluster leader answers a write as soon as its result is computed, before the commit of
its apply (``Replicator._answer_early``): nothing may observe that gap.

- a read that starts after the answer, on the leader, linearizable or serializable, sees the
  write (``Replicator.settled``), and so does a linearizable one on a follower (its ReadIndex
  waits until the entry is visible there, not merely applied in its open transaction);
- a watcher hears of each answered write once, in order, with the revision the answer named;
- a token revoked on the leader is refused there from the moment the revocation is
  acknowledged (``ClusterRuntime.propose_visible``);

``kill -9`` of a leader right after answers loses nothing acknowledged (the entries are in
the durable log of a quorum, and the restarted node applies them again): see
``tests/test_crash_safety.py``.
"""

from __future__ import annotations

import pytest

import aspen
from aspen.errors import UnauthorizedError
from aspen.testing import LocalCluster

pytestmark = pytest.mark.slow

#: Writes each of which is read back at once, on the same leader.
READ_BACKS = 200
#: Tokens revoked one after another, each used at once.
REVOCATIONS = 20


def test_reads_on_the_leader_right_after_an_answer_see_the_write(cluster: LocalCluster) -> None:
    leader = cluster.leader_index()
    with cluster.client(leader) as writer, cluster.client(leader) as reader:
        for i in range(READ_BACKS):
            key, value = f"rb/{i % 7}", f"v{i}".encode()
            revision = writer.kv.put(key, value).revision
            # another connection, so it can only know of the write through the answer
            got = reader.kv.get(key, serializable=i % 2 == 0)
            assert got is not None and got.value == value, (i, got)
            assert got.mod_revision == revision


def test_a_linearizable_read_on_a_follower_right_after_an_answer_sees_the_write(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader_index()
    follower = next(i for i in range(1, cluster.nodes + 1) if i != leader)
    with cluster.client(leader) as writer, cluster.client(follower) as far:
        for i in range(READ_BACKS // 2):
            key = f"fb/{i % 5}"
            revision = writer.kv.put(key, f"v{i}".encode()).revision
            there = far.kv.get(key)  # ReadIndex on the leader, then visible here
            assert there is not None and there.mod_revision >= revision, (i, there)


def test_a_watcher_hears_each_answered_write_once_in_order(cluster: LocalCluster) -> None:
    leader = cluster.leader_index()
    revisions = []
    seen: list[int] = []
    with cluster.client(leader) as writer, cluster.client(leader, timeout=30) as watcher:
        watch = watcher.watch("wa/", prefix=True)
        for i in range(40):
            revisions.append(writer.kv.put(f"wa/{i}", b"x").revision)
        for resp in watch:
            seen.extend(ev.kv.mod_revision for ev in resp.events)
            if len(seen) >= len(revisions):
                break
        watch.close()
    assert seen == revisions


def test_a_follower_watch_hears_a_lone_put_with_no_later_writes(cluster: LocalCluster) -> None:
    """The leader tells followers a commit lazily (issue 10: the next write's APPEND carries
    it): with no next write, its commit notice still goes out, so a watcher on a follower
    hears the write (a generous deadline: the notice is due within milliseconds)."""
    leader = cluster.leader_index()
    follower = next(i for i in range(1, cluster.nodes + 1) if i != leader)
    seen: list[int] = []
    with cluster.client(leader) as writer, cluster.client(follower, timeout=30) as watcher:
        watch = watcher.watch("lone/", prefix=True)
        revision = writer.kv.put("lone/k", b"v").revision
        for resp in watch:
            seen.extend(ev.kv.mod_revision for ev in resp.events)
            if seen:
                break
        watch.close()
    assert seen == [revision]


def test_a_token_revoked_on_the_leader_is_refused_there_once_acknowledged(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader_index()
    endpoint = cluster.client_endpoint(leader)
    with cluster.client(leader) as root:
        for i in range(REVOCATIONS):
            made = root.call("token.create", {"capabilities": ["kv:read:/r/"], "name": f"r{i}"})
            with aspen.connect(endpoint, token=made["token"], timeout=10) as c:
                assert c.kv.get("/r/a") is None
                root.call("token.revoke", {"id": made["id"]})
                with pytest.raises(UnauthorizedError, match="revoked"):
                    c.kv.get("/r/a")
