"""aspen-pubsub's group-commit pipeline on a real 3-node cluster: entries proposed before
the previous one committed. An entry that fails in the middle of the pipeline (its
compares see a head it did not expect) is queued again and rebuilt; leadership moving
while entries are in flight answers them with an error or their offsets, never one offset
for two messages, never losing an acknowledged publish."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from aspen.errors import AspenError
from aspen.testing import LocalCluster, local_cluster, wait_for
from aspen_pubsub import keys

pytestmark = [pytest.mark.slow]

#: Publishers at once: enough to keep several entries in flight.
PUBLISHERS = 32


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster with aspen-pubsub for this module (each test its own topic)."""
    with local_cluster(tmp_path_factory.mktemp("pubsub-pipeline"), 3, plugins=["pubsub"]) as c:
        c.leader_index()
        yield c


class _Publishers:
    """PUBLISHERS threads publishing to ``topic`` until stopped; what was acknowledged."""

    def __init__(self, cluster: LocalCluster, topic: str) -> None:
        self.cluster, self.topic = cluster, topic
        self.stop = threading.Event()
        #: cleared: every publisher waits before its next publish (the pipeline drains)
        self.running = threading.Event()
        self.running.set()
        self.lock = threading.Lock()
        #: (partition, offset) → the payloads acknowledged there (one, or a bug)
        self.acked: dict[tuple[int, int], list[bytes]] = {}
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(PUBLISHERS)]

    def _run(self, n: int) -> None:
        with self.cluster.client() as c:
            seq = 0
            while not self.stop.is_set():
                if not self.running.wait(0.05):
                    continue
                data = b"p%d-%d" % (n, seq)
                seq += 1
                try:
                    got = c.pubsub.publish(self.topic, data)
                except (AspenError, OSError):
                    continue  # outcome unknown: not acknowledged, not checked
                with self.lock:
                    self.acked.setdefault((got["partition"], got["offset"]), []).append(data)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_more(self, more: int) -> None:
        """Wait until ``more`` further publishes are acknowledged."""
        count = self.count()
        wait_for(lambda: self.count() >= count + more, timeout=60)

    def __enter__(self) -> _Publishers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.running.set()
        for t in self.threads:
            t.join(30)


def _check_log(client: Any, topic: str, acked: dict[tuple[int, int], list[bytes]]) -> None:
    """Each acknowledged offset was given to one message, which the log holds there; the
    log is dense (no offset skipped) on every partition."""
    for position, payloads in acked.items():
        assert len(payloads) == 1, f"{position} given to {payloads}"
    stats = client.pubsub.stats(topic)
    for part in stats["partition_offsets"]:
        log, offset = [], part["first_offset"]
        while offset < part["end_offset"]:
            page = client.pubsub.read(topic, part["partition"], offset, limit=1000)
            log += page["messages"]
            offset = page["next"]
        assert [m["offset"] for m in log] == list(range(part["first_offset"], part["end_offset"]))
        for m in log:
            wanted = acked.get((part["partition"], m["offset"]))
            assert wanted is None or [m["data"]] == wanted
    held = {(p["partition"], o) for p in stats["partition_offsets"] for o in range(p["end_offset"])}
    assert set(acked) <= held


def _rewrite_head(client: Any, topic: str, partition: int) -> bool:
    """Store ``topic``'s head again with the same numbers in other bytes (its map keys in
    the other order): the next entries, which expect the bytes the leader's publisher
    wrote last, fail their compares; the offsets do not move. False if the head moved
    between our read and our write (nothing written)."""
    key = keys.head(topic, partition)
    got = client.call("kv.range", {"key": key})["kvs"]
    if not got:
        return False
    record = msgpack.unpackb(got[0]["value"])
    reordered = msgpack.packb(dict(reversed(list(record.items()))))
    compare = [{"key": key, "target": "value", "op": "==", "value": got[0]["value"]}]
    done = client.call(
        "kv.txn",
        {"compare": compare, "success": [{"put": {"key": key, "value": reordered}}]},
    )
    return bool(done["succeeded"])


def test_an_entry_failing_mid_pipeline_is_rebuilt_without_reusing_an_offset(
    cluster: LocalCluster,
) -> None:
    topic = "pipe-fail"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, partitions=2)
        with _Publishers(cluster, topic) as pubs:
            pubs.wait_more(200)
            # Pause the publishers so the head can be rewritten (with 32 of them an entry
            # lands between any read and write), then let all 32 go at once: the entry
            # built on the leader's cached head fails its compare, and so do the entries
            # already built on it in the pipeline.
            pubs.running.clear()
            wait_for(lambda: _rewrite_head(c, topic, 0), timeout=30, message="head rewritten")
            pubs.running.set()
            wait_for(
                lambda: c.pubsub.stats(topic)["publisher"]["requeued"] > 0,
                timeout=30,
                message="an entry in flight was queued again",
            )
            pubs.wait_more(200)
        _check_log(c, topic, pubs.acked)
        publisher = c.pubsub.stats(topic)["publisher"]
        assert publisher["entries"] > 0 and publisher["requeued"] > 0


def test_leadership_moving_mid_pipeline_loses_no_acknowledged_publish(
    cluster: LocalCluster,
) -> None:
    topic = "pipe-leader"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, partitions=3)
        with _Publishers(cluster, topic) as pubs:
            for _ in range(3):
                pubs.wait_more(200)
                leader = cluster.leader_index()
                target = cluster.node_id(leader % 3 + 1)
                with cluster.client(leader) as direct:
                    direct.call("cluster.transfer_leader", {"id": target})
                wait_for(lambda: cluster.leader_index() != leader, timeout=30)  # noqa: B023
            pubs.wait_more(200)
        _check_log(c, topic, pubs.acked)


def test_a_message_id_is_deduplicated_by_the_next_leader(cluster: LocalCluster) -> None:
    """The leader looks ids up in its own state (a serializable read, checked by the
    entry's compare): after leadership moved, the new leader still finds the first one."""
    topic = "pipe-dedup"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, partitions=2)
        first = c.pubsub.publish(topic, b"once", id="order-1")
        leader = cluster.leader_index()
        with cluster.client(leader) as direct:
            direct.call("cluster.transfer_leader", {"id": cluster.node_id(leader % 3 + 1)})
        wait_for(lambda: cluster.leader_index() != leader, timeout=30)
        again = c.pubsub.publish(topic, b"twice", id="order-1")
        assert again == {**first, "duplicate": True}
        assert c.pubsub.publish(topic, b"other", id="order-2").get("duplicate") is None
