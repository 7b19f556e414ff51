"""The async client's publish coalescing on a real node: concurrent ``publish`` calls to one
topic go as batch requests, each caller still gets its own offset (or its own error)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import aspen
from aspen.errors import AspenError, InvalidArgumentError, NotFoundError
from aspen.testing import LocalCluster, local_cluster
from aspen_pubsub import limits

#: Concurrent publishes: more than one batch request holds (PUBSUB_MAX_BATCH_MESSAGES).
CALLS = limits.PUBSUB_MAX_BATCH_MESSAGES + 50


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 1-node cluster with aspen-pubsub for this module (each test its own topic)."""
    with local_cluster(tmp_path_factory.mktemp("pubsub-coalesce"), 1, plugins=["pubsub"]) as c:
        with c.client() as client:
            client.pubsub.create_topic("stats-probe")  # (for _entries)
        yield c


def _publish_all(
    cluster: LocalCluster,
    topic: str,
    payloads: list[bytes],
    *,
    create: bool = True,
    send_at: int = limits.PUBSUB_CLIENT_SEND_AT,
) -> list[Any]:
    """Create ``topic`` (unless not ``create``), then publish every payload from its own
    task at once on one async client (batches sent at ``send_at`` calls): each call's
    answer, or the Aspen error it raised."""
    out: list[Any] = [None] * len(payloads)

    async def main() -> None:
        async with aspen.aconnect(cluster.endpoints, token=cluster.token) as c:
            c.pubsub.coalescer.send_at = send_at
            if create:
                await c.pubsub.create_topic(topic)

            async def one(i: int) -> None:
                try:
                    out[i] = await c.pubsub.publish(topic, payloads[i])
                except AspenError as exc:
                    out[i] = exc

            async with anyio.create_task_group() as tasks:
                for i in range(len(payloads)):
                    tasks.start_soon(one, i)

    anyio.run(main)
    return out


def _entries(cluster: LocalCluster) -> int:
    """The node's group-commit entries since it started."""
    with cluster.client() as c:
        return int(c.pubsub.stats("stats-probe")["publisher"]["entries"])


@pytest.mark.parametrize("send_at", [16, limits.PUBSUB_CLIENT_SEND_AT])
def test_concurrent_publishes_share_requests_and_get_their_own_offsets(
    cluster: LocalCluster, send_at: int
) -> None:
    topic = f"coalesced-{send_at}"
    before = _entries(cluster)
    payloads = [b"m%d" % i for i in range(CALLS)]
    answers = _publish_all(cluster, topic, payloads, send_at=send_at)
    entries = _entries(cluster) - before
    offsets = sorted(a["offset"] for a in answers)
    assert offsets == list(range(CALLS))  # every call answered, no offset twice
    with cluster.client() as c:
        stored = {m["offset"]: m["data"] for m in c.pubsub.read(topic, limit=CALLS)["messages"]}
    for payload, answer in zip(payloads, answers, strict=True):
        assert stored[answer["offset"]] == payload  # each caller's offset holds its message
    # at most one entry per batch request: batches of send_at calls, or of the most one
    # request holds (PUBSUB_MAX_BATCH_MESSAGES), not one request per call
    requests = -(-CALLS // min(send_at, limits.PUBSUB_MAX_BATCH_MESSAGES))
    assert entries <= requests


def test_a_bad_message_fails_alone(cluster: LocalCluster) -> None:
    payloads = [b"ok%d" % i for i in range(10)]
    payloads[4] = b"x" * (limits.PUBSUB_MAX_MESSAGE_BYTES + 1)
    answers = _publish_all(cluster, "bad-batch", payloads)
    assert isinstance(answers[4], InvalidArgumentError)
    assert "PUBSUB_MAX_MESSAGE_BYTES" in str(answers[4])
    good = [a for i, a in enumerate(answers) if i != 4]
    assert sorted(a["offset"] for a in good) == list(range(9))


def test_an_error_for_the_whole_batch_reaches_every_caller(cluster: LocalCluster) -> None:
    answers = _publish_all(cluster, "no-such-topic", [b"a", b"b", b"c"], create=False)
    assert all(isinstance(a, NotFoundError) for a in answers)
    assert len({id(a) for a in answers}) == 3  # each caller its own exception object
