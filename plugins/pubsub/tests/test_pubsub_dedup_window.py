"""aspen-pubsub's de-duplication window on a real 3-node cluster: an id is a duplicate only
within its topic's window; older ids are forgotten and their records deleted by the
leader's sweep (bounded entries), so a producer that sets an id on every message keeps
about one window of records, not one per message forever."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from aspen.client import prefix_end
from aspen.testing import LocalCluster, local_cluster, wait_for
from aspen_pubsub import keys

pytestmark = [pytest.mark.slow]

#: A window short enough to see ids expire in a test, in seconds.
SHORT = 1.0
#: A window no test outlives, in seconds.
LONG = 600.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster with aspen-pubsub for this module (each test its own topics)."""
    with local_cluster(tmp_path_factory.mktemp("pubsub-dedup"), 3, plugins=["pubsub"]) as c:
        c.leader_index()
        yield c


def _records(client: Any, topic: str) -> int:
    """How many de-duplication records ``topic`` holds (``stats``)."""
    return int(client.pubsub.stats(topic)["dedup_records"])


def _publish_ids(client: Any, topic: str, ids: list[str]) -> list[dict[str, Any]]:
    """Publish one message per id, in batches of 250; the answers in order."""
    out: list[dict[str, Any]] = []
    for at in range(0, len(ids), 250):
        batch = [{"data": i, "id": i} for i in ids[at : at + 250]]
        out += client.pubsub.publish_batch(topic, batch)
    return out


def test_an_id_older_than_the_window_is_forgotten_and_its_record_removed(
    cluster: LocalCluster,
) -> None:
    topic = "dedup-expire"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, dedup_window=SHORT)
        first = c.pubsub.publish(topic, b"a", id="a")
        assert _records(c, topic) == 1
        wait_for(lambda: _records(c, topic) == 0, timeout=30, interval=0.1)
        again = c.pubsub.publish(topic, b"a again", id="a")
        assert again.get("duplicate") is None
        assert again["offset"] == first["offset"] + 1


def test_an_id_within_the_window_is_a_duplicate(cluster: LocalCluster) -> None:
    topic = "dedup-within"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, partitions=3, dedup_window=LONG)
        first = _publish_ids(c, topic, [f"w{n}" for n in range(300)])
        again = _publish_ids(c, topic, [f"w{n}" for n in range(300)])
        assert again == [{**f, "duplicate": True} for f in first]
        assert _records(c, topic) == 300


def test_ids_over_many_windows_leave_about_one_window_of_records(cluster: LocalCluster) -> None:
    """10k ids in rounds of 1000, each round waiting for the rounds before it to expire:
    the topic never needs to hold more than about a round (its window) of records."""
    topic = "dedup-10k"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, dedup_window=SHORT)
        for r in range(10):
            answers = _publish_ids(c, topic, [f"r{r}-{n}" for n in range(1000)])
            assert not any(a.get("duplicate") for a in answers)
            wait_for(lambda: _records(c, topic) <= 1000, timeout=30, interval=0.1)
        wait_for(lambda: _records(c, topic) == 0, timeout=30, interval=0.1)
        assert c.pubsub.publish(topic, b"old", id="r0-0").get("duplicate") is None
        assert c.pubsub.stats(topic)["messages"] == 10_001


def test_a_leader_change_loses_no_dedup_inside_the_window(cluster: LocalCluster) -> None:
    """The next leader finds every id of the window in its own buckets, and goes on
    expiring the ones that age out."""
    kept, short = "dedup-leader", "dedup-leader-short"
    with cluster.client() as c:
        c.pubsub.create_topic(kept, partitions=2, dedup_window=LONG)
        c.pubsub.create_topic(short, dedup_window=SHORT)
        first = _publish_ids(c, kept, [f"k{n}" for n in range(500)])
        _publish_ids(c, short, [f"s{n}" for n in range(500)])
        leader = cluster.leader_index()
        with cluster.client(leader) as direct:
            direct.call("cluster.transfer_leader", {"id": cluster.node_id(leader % 3 + 1)})
        wait_for(lambda: cluster.leader_index() != leader, timeout=30)
        again = _publish_ids(c, kept, [f"k{n}" for n in range(500)])
        assert again == [{**f, "duplicate": True} for f in first]
        wait_for(lambda: _records(c, short) == 0, timeout=30, interval=0.1)
        assert _records(c, kept) == 500


def test_a_record_written_before_buckets_still_deduplicates_then_expires(
    cluster: LocalCluster,
) -> None:
    """A record at the old key (``i/<topic>/<id>``), stored with its topic in one txn as
    an earlier version left it, is found within the window and removed after it."""
    topic = "dedup-legacy"
    window = 5.0
    record = {"p": 0, "o": 7, "t": int(time.time() * 1000)}
    settings = {
        "partitions": 1,
        "max_messages": 0,
        "max_bytes": 0,
        "max_age": 0.0,
        "dedup_window": window,
        "created": time.time(),
    }
    with cluster.client() as c:
        c.call(
            "kv.txn",
            {
                "compare": [],
                "success": [
                    {"put": {"key": keys.topic(topic), "value": msgpack.packb(settings)}},
                    {"put": {"key": keys.dedup(topic, "old"), "value": msgpack.packb(record)}},
                ],
            },
        )
        assert c.pubsub.publish(topic, b"again", id="old") == {
            "partition": 0,
            "offset": 7,
            "duplicate": True,
        }
        wait_for(lambda: _records(c, topic) == 0, timeout=30, interval=0.1)
        assert c.pubsub.publish(topic, b"new", id="old").get("duplicate") is None


def test_deleting_a_topic_removes_its_dedup_records(cluster: LocalCluster) -> None:
    topic = "dedup-deleted"
    with cluster.client() as c:
        c.pubsub.create_topic(topic, dedup_window=LONG)
        _publish_ids(c, topic, [f"d{n}" for n in range(300)])
        c.pubsub.delete_topic(topic)
        prefix = keys.dedups(topic)
        assert c.kv.range(prefix, end=prefix_end(prefix), count_only=True).count == 0
        c.pubsub.create_topic(topic, dedup_window=LONG)
        assert c.pubsub.publish(topic, b"new", id="d0") == {"partition": 0, "offset": 0}
