"""A cluster leader answers a write as soon as its result is computed, before the commit of
its apply (``Replicator._answer_early``): nothing may observe that gap.

- a read that starts after the answer, on the leader, linearizable or serializable, sees the
  write (``Replicator.settled``);
- a token revoked on the leader is refused there from the moment the revocation is
  acknowledged (``ClusterRuntime.propose_visible``);
- ``kill -9`` of the leader right after answers loses nothing acknowledged: the entries are
  in the durable log of a quorum, and the restarted node applies them again.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

import aspen
from aspen.errors import AspenError, UnauthorizedError
from aspen.testing import LocalCluster, wait_for

pytestmark = pytest.mark.slow

#: Concurrent writers on the leader, so kills land between answers and their commit.
WRITERS = 6
#: Leader kill/restart rounds.
KILLS = 2
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


def _writer(endpoint: str, token: str, name: str, acked: dict, stop: threading.Event) -> None:
    try:
        with aspen.connect(endpoint, token=token, timeout=5) as c:
            i = 0
            while not stop.is_set():
                key, value = f"{name}/{i:06d}", f"value-{name}-{i}".encode()
                c.kv.put(key, value)
                acked[key] = value  # only after the leader acknowledged it
                i += 1
    except (AspenError, OSError):
        pass  # the leader died under us: writes not acknowledged are allowed to be lost


def _missing(c, acked: dict[str, bytes], *, serializable: bool) -> list[str]:
    """The acknowledged keys a node's range does not return with their value."""
    present: dict[str, bytes] = {}
    start = b"w"
    while True:
        page = c.kv.range(start, end=b"x", limit=5000, serializable=serializable)
        present.update((kv.key.decode(), kv.value) for kv in page.kvs)
        if not page.more:
            break
        start = page.kvs[-1].key + b"\0"
    return [k for k, v in acked.items() if present.get(k) != v]


def test_kill9_leader_right_after_answers_loses_nothing_acknowledged(
    cluster: LocalCluster,
) -> None:
    rng = random.Random(20261207)
    acked: dict[str, bytes] = {}
    for round_ in range(KILLS):
        leader = cluster.leader_index()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_writer,
                args=(
                    cluster.client_endpoint(leader),
                    cluster.token,
                    f"w{round_}x{w}",
                    acked,
                    stop,
                ),
            )
            for w in range(WRITERS)
        ]
        for t in threads:
            t.start()
        target = len(acked) + rng.randint(100, 600)
        deadline = time.monotonic() + 60
        while len(acked) < target and time.monotonic() < deadline:
            time.sleep(0.001)  # kill at once: answers just sent, their applies in flight
        cluster.kill(leader)
        stop.set()
        for t in threads:
            t.join(20)
        assert len(acked) >= target - WRITERS, "writers made no progress before the kill"
        # the killed leader applies again from its own log what it had answered
        cluster.restart(leader)
        snapshot = dict(acked)
        with cluster.client(leader) as c:
            wait_for(
                lambda c=c, snapshot=snapshot: not _missing(c, snapshot, serializable=True),
                timeout=60,
                message="the restarted leader holds every acknowledged write",
                ignore=(AspenError, OSError),
            )
    with cluster.client() as c:
        missing = _missing(c, acked, serializable=False)
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
