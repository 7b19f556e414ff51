"""aspen-pubsub on one real 3-node cluster (node processes, real sockets, LMDB): topics,
group commit, subscriptions, the JetStream-style semantics of competing groups, the CLI
contract, and bad input."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    UnauthorizedError,
)
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, LocalCluster, local_cluster, wait_for
from aspen_pubsub import keys, limits
from aspen_pubsub.subjects import check_pattern, literal_prefix, matches

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-node cluster with aspen-pubsub for the whole module (each test its own topic)."""
    with local_cluster(tmp_path_factory.mktemp("pubsub"), 3, plugins=["pubsub"]) as c:
        c.leader_index()
        yield c


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Any]:
    """A client that follows the leader."""
    with cluster.client() as c:
        yield c


@pytest.fixture(scope="module")
def cli(cluster: LocalCluster) -> CliInvoker:
    """``aspen …`` in-process against the cluster."""
    pm = make_plugin_manager(load=["pubsub"])
    return CliInvoker(pm, {"ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token})


def _positions(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(m["partition"], m["offset"]) for m in messages]


# ---------------------------------------------------------------------- topics and publish
def test_keyed_messages_keep_their_partition_and_offsets_never_repeat(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("keyed", partitions=4)
    with pytest.raises(CompareFailedError, match="already exists"):
        ps.create_topic("keyed", partitions=4)
    first = [ps.publish("keyed", b"%d" % i, key=b"customer-7") for i in range(5)]
    assert len({r["partition"] for r in first}) == 1
    assert [r["offset"] for r in first] == [0, 1, 2, 3, 4]
    batch = ps.publish_batch("keyed", [{"data": b"b%d" % i, "key": b"k%d" % i} for i in range(40)])
    seen = {(r["partition"], r["offset"]) for r in first + batch}
    assert len(seen) == 45  # no offset given twice
    topics = ps.topics()["topics"]
    assert any(t["topic"] == "keyed" and t["partitions"] == 4 for t in topics)


def test_concurrent_publishes_share_raft_entries(cluster: LocalCluster) -> None:
    """64 publishers at once: every publish is answered, offsets are dense per partition,
    and the leader committed fewer entries than publishes (group commit)."""
    with cluster.client() as c:
        c.pubsub.create_topic("grouped", partitions=2)
        before = c.status()["applied_index"]
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def publisher(n: int) -> None:
        with cluster.client() as c:
            for i in range(10):
                got = c.pubsub.publish("grouped", b"%d-%d" % (n, i))
                with lock:
                    results.append(got)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 320
    for partition in (0, 1):
        offsets = sorted(r["offset"] for r in results if r["partition"] == partition)
        assert offsets == list(range(len(offsets)))
    with cluster.client() as c:
        entries = c.status()["applied_index"] - before
    assert entries < 320, f"{entries} entries for 320 publishes: no group commit"


def test_message_id_is_deduplicated_within_the_window(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("dedup", partitions=2)
    first = ps.publish("dedup", b"x", id="order-1")
    again = ps.publish("dedup", b"x", id="order-1")
    assert again == {**first, "duplicate": True}
    assert ps.stats("dedup")["messages"] == 1


def test_retention_by_messages_is_applied_at_commit(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("capped", partitions=1, max_messages=3)
    for i in range(5):
        ps.publish("capped", b"%d" % i)
    ps.publish_batch("capped", [{"data": b"b%d" % i} for i in range(4)])
    stats = ps.stats("capped")
    assert stats["messages"] == 3
    part = stats["partition_offsets"][0]
    assert (part["first_offset"], part["end_offset"]) == (6, 9)
    got = [m["data"] for m in ps.subscribe("capped", max=3)]
    assert got == [b"b1", b"b2", b"b3"]


def test_retention_cuts_inside_a_stored_segment(client: Any) -> None:
    """A batch is one stored segment; trimming into its middle keeps exactly the rest,
    for reads, subscriptions and groups alike."""
    ps = client.pubsub
    ps.create_topic("segments", partitions=1, max_messages=4)
    ps.publish_batch("segments", [{"data": b"a%d" % i} for i in range(5)])  # a0 trimmed
    ps.publish_batch("segments", [{"data": b"b%d" % i} for i in range(2)])  # a1, a2 too
    part = ps.stats("segments")["partition_offsets"][0]
    assert (part["first_offset"], part["end_offset"]) == (3, 7)
    expected = [b"a3", b"a4", b"b0", b"b1"]
    assert [m["data"] for m in ps.read("segments", offset=0)["messages"]] == expected
    assert [m["offset"] for m in ps.read("segments", offset=4)["messages"]] == [4, 5, 6]
    assert [m["data"] for m in ps.subscribe("segments", max=4)] == expected
    ps.create_group("segments", "g")
    assert [m["data"] for m in ps.fetch("segments", "g", "w", max=10)] == expected


def test_a_batch_over_the_segment_bound_is_stored_in_several(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("bigbatch", partitions=1)
    size = limits.PUBSUB_SEGMENT_MAX_BYTES // 2
    batch = [{"data": bytes([i]) * size} for i in range(3)]
    assert [r["offset"] for r in ps.publish_batch("bigbatch", batch)] == [0, 1, 2]
    got = [ps.read("bigbatch", offset=i, limit=1)["messages"][0]["data"] for i in range(3)]
    assert got == [m["data"] for m in batch]
    stored = client.kv.range(keys.messages("bigbatch", 0), keys_only=True)
    assert len(stored.kvs) > 1


def test_retention_by_age_trims_an_idle_topic(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("aging", partitions=1, max_age=1.0)
    ps.publish("aging", b"old")
    wait_for(lambda: ps.stats("aging")["messages"] == 0, timeout=15, message="aged out")
    assert ps.stats("aging")["partition_offsets"][0]["end_offset"] == 1
    assert ps.publish("aging", b"new")["offset"] == 1  # offsets never repeat


# ---------------------------------------------------------------------- subscribe
def test_subscribe_streams_history_then_new_messages_and_resumes(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        ps = c.pubsub
        ps.create_topic("feed", partitions=2)
        for i in range(6):
            ps.publish("feed", b"%d" % i, key=b"k%d" % (i % 2))
        stream = ps.subscribe("feed")
        got = [next(stream) for _ in range(6)]
        with cluster.client(1) as other:  # published while the stream waits
            for i in range(6, 10):
                other.pubsub.publish("feed", b"%d" % i, key=b"k%d" % (i % 2))
        got += [next(stream) for _ in range(4)]
        stream.close()
        for partition in (0, 1):
            offsets = [m["offset"] for m in got if m["partition"] == partition]
            assert offsets == list(range(len(offsets)))
        assert sorted(m["data"] for m in got) == sorted(b"%d" % i for i in range(10))
        resume = {m["partition"]: m["offset"] + 1 for m in got if m["offset"] < 2}
        rest = list(ps.subscribe("feed", offsets=resume, max=6))
        assert all(m["offset"] >= 2 for m in rest) and len(rest) == 6
        tail = ps.subscribe("feed", start="end")
        ps.publish("feed", b"late")
        assert next(tail)["data"] == b"late"
        tail.close()


def test_subscribers_on_leader_and_follower_see_concurrent_publishes_in_order(
    cluster: LocalCluster,
) -> None:
    """Publishes racing each other (several entries in flight): a subscriber on the leader
    (fed by the publisher as entries commit) and one on a follower (fed by its watch) each
    get every acknowledged message once, per partition in offset order with no gap."""
    total, publishers = 240, 8
    leader = cluster.leader_index()
    follower = next(i for i in range(1, 4) if i != leader)
    with cluster.client() as c:
        c.pubsub.create_topic("racing", partitions=2)
    got: dict[int, list[dict[str, Any]]] = {}

    def subscribe(node: int, stream: Any) -> None:
        got[node] = list(stream)

    readers = []
    for node in (leader, follower):
        reader_client = cluster.client(node)
        stream = reader_client.pubsub.subscribe("racing", start="end", max=total)
        thread = threading.Thread(target=subscribe, args=(node, stream))
        thread.start()
        readers.append((reader_client, thread))
    acked: list[tuple[int, int, bytes]] = []
    lock = threading.Lock()

    def publish(n: int) -> None:
        with cluster.client() as c:
            for i in range(total // publishers):
                data = b"%d-%d" % (n, i)
                out = c.pubsub.publish("racing", data, key=data)
                with lock:
                    acked.append((out["partition"], out["offset"], data))

    workers = [threading.Thread(target=publish, args=(n,)) for n in range(publishers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    for reader_client, thread in readers:
        thread.join(30)
        reader_client.close()
        assert not thread.is_alive(), "a subscriber did not get every message in time"
    for node in (leader, follower):
        seen = [(m["partition"], m["offset"], m["data"]) for m in got[node]]
        assert sorted(seen) == sorted(acked), f"node {node}"
        for partition in (0, 1):
            offsets = [o for p, o, _ in seen if p == partition]
            assert offsets == list(range(len(offsets))), f"node {node} partition {partition}"


def test_subscribe_from_a_time(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("timed", partitions=1)
    ps.publish("timed", b"before")
    time.sleep(0.05)  # publish times are milliseconds: make the two sides differ
    mark = time.time()
    time.sleep(0.05)
    ps.publish("timed", b"after")
    assert [m["data"] for m in ps.subscribe("timed", time=mark, max=1)] == [b"after"]


# ---------------------------------------------------------------------- competing groups
def test_jetstream_semantics_ack_nak_ack_wait_max_deliver(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("jobs", partitions=1)
    ps.create_group("jobs", "workers", ack_wait=1.0, max_deliver=2)
    for i in range(4):
        ps.publish("jobs", b"job-%d" % i)
    a, b, c, d = ps.fetch("jobs", "workers", "w1", max=4)
    assert [m["delivery_count"] for m in (a, b, c, d)] == [1, 1, 1, 1]
    assert not a["redelivered"] and a["topic"] == "jobs" and a["published"] > 0
    ps.ack("jobs", "workers", "w1", [a])  # acked: never again
    ps.nak("jobs", "workers", "w1", [b])  # nak'd: back at once, delivery 2
    back = ps.fetch("jobs", "workers", "w2", max=1)
    assert _positions(back) == _positions([b])
    assert back[0]["delivery_count"] == 2 and back[0]["redelivered"]
    ps.ack("jobs", "workers", "w2", back)
    ps.in_progress("jobs", "workers", "w1", [d])  # still working: its wait restarts
    ps.ack("jobs", "workers", "w1", [d])
    # c is never acked: back after ack_wait (delivery 2), then dead after max_deliver
    again = ps.fetch("jobs", "workers", "w3", max=10, wait=5)
    assert _positions(again) == _positions([c]) and again[0]["delivery_count"] == 2
    assert ps.fetch("jobs", "workers", "w3", max=10, wait=3) == []  # ack wait passed: dead
    wait_for(
        lambda: ps.stats("jobs", "workers")["group"]["dead_letters"] == 1,
        timeout=10,
        message="c is dead-lettered",
    )
    dead = ps.dead_letters("jobs", "workers")["dead_letters"]
    assert [(x["partition"], x["offset"], x["data"]) for x in dead] == [(0, 2, b"job-2")]
    group = ps.stats("jobs", "workers")["group"]
    assert group["pending"] == 0 and group["lag"] == 0 and group["acked"] == 3
    announced = client.events.read(0, match="pubsub.dead_letter:jobs/workers")["events"]
    assert [e["payload"] for e in announced] == [
        {"topic": "jobs", "group": "workers", "partition": 0, "offset": 2, "deliveries": 2}
    ]


def test_ack_of_a_message_redelivered_to_someone_else_is_refused(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("steal", partitions=1)
    ps.create_group("steal", "g", ack_wait=0.5)
    ps.publish("steal", b"x")
    (first,) = ps.fetch("steal", "g", "slow", max=1)
    (again,) = ps.fetch("steal", "g", "fast", max=1, wait=5)
    assert again["delivery_count"] == 2
    with pytest.raises(CompareFailedError, match="now delivery 2 to 'fast'"):
        ps.ack("steal", "g", "slow", [first])
    ps.ack("steal", "g", "fast", [again])
    with pytest.raises(CompareFailedError, match="acked or terminated"):
        ps.ack("steal", "g", "fast", [again])


def test_term_max_ack_pending_and_claim(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("bounded", partitions=2)
    ps.create_group("bounded", "g", max_ack_pending=3)
    ps.publish_batch("bounded", [{"data": b"%d" % i} for i in range(6)])
    got = ps.fetch("bounded", "g", "w1", max=10)
    assert len(got) == 3  # max_ack_pending
    assert ps.fetch("bounded", "g", "w2", max=10) == []
    ps.term("bounded", "g", "w1", got[:1])
    claimed = ps.claim("bounded", "g", "w2", from_consumer="w1")
    assert sorted(_positions(claimed)) == sorted(_positions(got[1:]))
    with pytest.raises(CompareFailedError):
        ps.ack("bounded", "g", "w1", got[1:])
    ps.ack("bounded", "g", "w2", claimed)
    rest = ps.fetch("bounded", "g", "w2", max=10)
    assert len(rest) == 3
    ps.ack("bounded", "g", "w2", rest)
    group = ps.stats("bounded", "g")["group"]
    assert (group["terminated"], group["acked"], group["lag"]) == (1, 5, 0)


def test_a_fetch_acknowledges_the_previous_batch_in_the_same_entry(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("piggy", partitions=1)
    ps.create_group("piggy", "g")
    ps.publish_batch("piggy", [{"data": b"%d" % i} for i in range(4)])
    first = ps.fetch("piggy", "g", "w", max=2)
    second = ps.fetch("piggy", "g", "w", max=2, ack=first)
    assert _positions(second) == [(0, 2), (0, 3)]
    group = ps.stats("piggy", "g")["group"]
    assert (group["acked"], group["pending"]) == (2, 2)
    with pytest.raises(CompareFailedError, match="acked or terminated"):
        ps.fetch("piggy", "g", "w", max=2, ack=first)  # nothing taken either
    assert ps.stats("piggy", "g")["group"]["pending"] == 2


def test_acking_around_a_hole_keeps_the_unacked_one_pending(client: Any) -> None:
    """A batch's acks are deleted as ranges of consecutive offsets: a message left un-acked
    between them keeps its pending record (and is redelivered after its ack wait)."""
    ps = client.pubsub
    ps.create_topic("holes", partitions=1)
    ps.create_group("holes", "g", ack_wait=0.5)
    ps.publish_batch("holes", [{"data": b"%d" % i} for i in range(6)])
    got = ps.fetch("holes", "g", "w", max=6)
    ps.ack("holes", "g", "w", got[:2] + got[3:])
    stored = client.kv.range(keys.pending_prefix("holes", "g"), keys_only=True)
    assert [keys.position(kv.key) for kv in stored.kvs] == [(0, 2)]
    again: list[dict[str, Any]] = []
    wait_for(lambda: bool(again.extend(ps.fetch("holes", "g", "w", max=6)) or again))
    assert _positions(again) == [(0, 2)] and again[0]["delivery_count"] == 2


def test_pending_deliveries_are_stored_as_runs_and_a_new_leader_reads_them(
    cluster: LocalCluster, client: Any
) -> None:
    """A fetch of 10 stores one pending record; a nak in the middle splits it in three; a
    new leader rebuilds every delivery from the runs (acks and redeliveries still hold)."""
    ps = client.pubsub
    ps.create_topic("runs", partitions=1)
    ps.create_group("runs", "g", ack_wait=60)
    ps.publish_batch("runs", [{"data": b"%d" % i} for i in range(10)])

    def stored() -> list[tuple[int, int]]:
        found = client.kv.range(keys.pending_prefix("runs", "g"), keys_only=True)
        return [keys.position(kv.key) for kv in found.kvs]

    got = ps.fetch("runs", "g", "w", max=10)
    assert len(got) == 10 and stored() == [(0, 0)]
    ps.nak("runs", "g", "w", got[4:5])  # back at once: its own run
    assert stored() == [(0, 0), (0, 4), (0, 5)]
    leader = cluster.leader_index()
    with cluster.client(leader) as direct:
        direct.call("cluster.transfer_leader", {"id": cluster.node_id(leader % 3 + 1)})
    wait_for(lambda: cluster.leader_index() != leader, timeout=30)
    again = ps.fetch("runs", "g", "v", max=10)  # only the nak'd one is due
    assert _positions(again) == [(0, 4)] and again[0]["delivery_count"] == 2
    with pytest.raises(CompareFailedError, match="now delivery 2"):
        ps.ack("runs", "g", "w", got[4:5])
    ps.ack("runs", "g", "w", got[:4] + got[5:])
    assert stored() == [(0, 4)]
    ps.ack("runs", "g", "v", again)
    assert stored() == [] and ps.stats("runs", "g")["group"]["pending"] == 0


def test_a_fetch_waits_for_the_next_publish(cluster: LocalCluster, client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("waiting", partitions=1)
    ps.create_group("waiting", "g")
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.extend(ps.fetch("waiting", "g", "w", wait=20)))
    thread.start()
    with cluster.client() as other:
        wait_for(lambda: thread.is_alive(), timeout=5)
        other.pubsub.publish("waiting", b"wake")
    thread.join(30)
    assert [m["data"] for m in got] == [b"wake"]


def test_a_fetch_racing_a_publish_is_woken_by_it(cluster: LocalCluster, client: Any) -> None:
    """A publish that commits while a waiting fetch is still looking (found nothing, not
    yet waiting) wakes it: the fetch returns the message, not only when its wait ends."""
    ps = client.pubsub
    ps.create_topic("racefetch", partitions=1)
    ps.create_group("racefetch", "g")
    with cluster.client() as other:
        for round_ in range(20):
            got: list[Any] = []
            start = threading.Barrier(2)

            def fetch(start: threading.Barrier, got: list[Any]) -> None:
                start.wait()
                got.extend(ps.fetch("racefetch", "g", "w", wait=60))

            thread = threading.Thread(target=fetch, args=(start, got), daemon=True)
            thread.start()
            start.wait()
            other.pubsub.publish("racefetch", b"%d" % round_)
            thread.join(20)  # well before the fetch's own wait (60 s) ends
            assert not thread.is_alive(), f"round {round_}: the publish did not wake the fetch"
            assert [m["data"] for m in got] == [b"%d" % round_]
            ps.ack("racefetch", "g", "w", got)


# ---------------------------------------------------------------------- CLI contract
def test_cli_contract(cli: CliInvoker) -> None:
    assert cli("pubsub", "topic", "create", "clitopic", "--partitions", "2").exit_code == 0
    out = cli("pubsub", "publish", "clitopic", "hello", "--key", "k", "--header", "a=b", "--json")
    assert out.exit_code == 0, out.output
    placed = json.loads(out.stdout)
    assert set(placed) == {"partition", "offset"}
    cli("pubsub", "publish", "clitopic", "world", "--key", "k")
    made = cli(
        "pubsub", "group", "create", "clitopic", "g", "--mode", "competing", "--ack-wait", "30s",
        "--max-deliver", "5",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    peek = cli(
        "pubsub", "consume", "clitopic", "g", "--consumer", "c", "--max", "1", "--no-ack", "--json"
    )
    line = json.loads(peek.stdout.splitlines()[0])
    assert {"data", "partition", "offset", "delivery_count"} <= set(line)
    stats = json.loads(cli("pubsub", "stats", "clitopic", "--group", "g", "--json").stdout)
    assert stats["group"]["pending"] == 1 and stats["group"]["lag"] == 2
    taken = cli("pubsub", "consume", "clitopic", "g", "--consumer", "c", "--max", "5", "--json")
    assert [json.loads(x)["data"] for x in taken.stdout.splitlines()] == ["world"]
    stats = json.loads(cli("pubsub", "stats", "clitopic", "--group", "g", "--json").stdout)
    assert stats["group"]["pending"] == 1 and stats["group"]["lag"] == 1  # the --no-ack one
    sub = cli("pubsub", "subscribe", "clitopic", "--from-start", "--json", "--max", "2")
    assert [json.loads(x)["data"] for x in sub.stdout.splitlines()] == ["hello", "world"]
    made = cli("pubsub", "group", "create", "clitopic", "k", "--mode", "partitioned")
    assert made.exit_code == 0, made.output
    first = cli("pubsub", "consume", "clitopic", "k", "--consumer", "c", "--max", "1", "--json")
    rest = cli("pubsub", "consume", "clitopic", "k", "--consumer", "c", "--max", "5", "--json")
    taken = [json.loads(x)["data"] for x in first.stdout.splitlines() + rest.stdout.splitlines()]
    assert taken == ["hello", "world"]  # committed offsets: the second run goes on from there
    stats = json.loads(cli("pubsub", "stats", "clitopic", "--group", "k", "--json").stdout)
    assert stats["group"]["lag"] == 0 and stats["group"]["state"] == "Empty"


# ---------------------------------------------------------------------- bad input
def test_bad_input_gets_typed_errors(client: Any) -> None:
    ps = client.pubsub
    with pytest.raises(NotFoundError, match="topic 'nope'"):
        ps.publish("nope", b"x")
    with pytest.raises(InvalidArgumentError, match="PUBSUB_MAX_PARTITIONS"):
        ps.create_topic("huge", partitions=limits.PUBSUB_MAX_PARTITIONS + 1)
    ps.create_topic("strict", partitions=1)
    with pytest.raises(NotFoundError, match="group 'nope'"):
        ps.fetch("strict", "nope", "c")
    with pytest.raises(InvalidArgumentError, match="PUBSUB_MAX_MESSAGE_BYTES"):
        ps.publish("strict", b"x" * (limits.PUBSUB_MAX_MESSAGE_BYTES + 1))
    batch = [{"data": b"x" * (limits.PUBSUB_MAX_MESSAGE_BYTES // 2)}] * 9
    with pytest.raises(InvalidArgumentError, match="PUBSUB_MAX_BATCH_BYTES"):
        ps.publish_batch("strict", batch)
    with pytest.raises(InvalidArgumentError, match="PUBSUB_MAX_HEADERS"):
        ps.publish("strict", b"x", headers={f"h{i}": "v" for i in range(40)})
    with pytest.raises(InvalidArgumentError, match="topic"):
        ps.create_topic("bad/name")
    with pytest.raises(InvalidArgumentError, match="mode"):
        ps.create_group("strict", "g", mode="fanout")
    assert ps.stats("strict")["messages"] == 0  # nothing half-written


def test_capabilities_scope_topics(cluster: LocalCluster, client: Any) -> None:
    client.pubsub.create_topic("scoped", partitions=1)
    client.pubsub.create_topic("other", partitions=1)
    made = client.call(
        "token.create",
        {"capabilities": ["pubsub:publish:scoped", "pubsub:consume:scoped"]},
    )
    import aspen

    with aspen.connect(cluster.endpoints, token=made["token"]) as c:
        c.pubsub.publish("scoped", b"ok")
        assert c.pubsub.stats("scoped")["messages"] == 1
        with pytest.raises(UnauthorizedError, match="pubsub:publish:other"):
            c.pubsub.publish("other", b"no")
        with pytest.raises(UnauthorizedError, match="pubsub:admin"):
            c.pubsub.delete_topic("scoped")


def test_subject_patterns() -> None:
    assert matches("orders.*", "orders.eu") and not matches("orders.*", "orders.eu.paris")
    assert matches("orders.>", "orders.eu.paris") and not matches("orders.>", "orders")
    assert matches("*.eu", "orders.eu") and not matches("*.eu", "orders.us")
    assert literal_prefix("orders.*") == "orders." and literal_prefix("*.eu") == ""
    with pytest.raises(InvalidArgumentError, match="last token"):
        check_pattern("orders.>.eu")


def test_wildcard_subscription_follows_every_matching_topic(client: Any) -> None:
    ps = client.pubsub
    for name in ("shop.eu", "shop.us", "shop.eu.paris", "shopping"):
        ps.create_topic(name)
        ps.publish(name, name.encode())
    star = ps.subscribe("shop.*")
    assert sorted(next(star)["data"] for _ in range(2)) == [b"shop.eu", b"shop.us"]
    ps.publish("shop.eu.paris", b"not for shop.*")
    ps.publish("shop.us", b"live")
    live = next(star)
    assert (live["topic"], live["data"]) == ("shop.us", b"live")
    resume = dict(star.offsets)
    star.close()
    deep = [m["data"] for m in ps.subscribe("shop.>", max=4)]
    assert sorted(deep) == [b"not for shop.*", b"shop.eu", b"shop.eu.paris", b"shop.us"]
    ps.publish("shop.eu", b"after")
    again = ps.subscribe("shop.*", offsets=resume)
    assert next(again)["data"] == b"after"
    again.close()


def test_wildcard_subscription_picks_up_topics_created_after_it_started(client: Any) -> None:
    ps = client.pubsub
    ps.create_topic("late.us")
    ps.publish("late.us", b"old")
    sub = ps.subscribe("late.>", start="end")
    ps.create_topic("late.eu", partitions=2)
    ps.create_topic("latex")  # not matched: 'late.>' needs the dot
    ps.publish("latex", b"not for late.>")
    sent = [b"eu-%d" % i for i in range(4)]
    for data in sent:
        ps.publish("late.eu", data)
    ps.publish("late.us", b"new")
    got = [next(sub) for _ in range(5)]
    sub.close()
    eu = [m for m in got if m["topic"] == "late.eu"]
    assert sorted(m["data"] for m in eu) == sorted(sent)  # from its first message on
    assert {(m["partition"], m["offset"]) for m in eu} == {(p, o) for p in (0, 1) for o in (0, 1)}
    assert [m["data"] for m in got if m["topic"] == "late.us"] == [b"new"]
