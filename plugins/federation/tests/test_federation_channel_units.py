"""Units of the inbox/outbox: trust-request envelopes, the outbox's bounds, gossip
resources, the inbox's body bound; the trust-request queue's bounds on one in-process
node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import msgpack
import pytest

from aspen.errors import InvalidArgumentError, ResourceExhaustedError, UnauthorizedError
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen_federation import limits
from aspen_federation.identity import ClusterKey, IdentityDocument
from aspen_federation.inbox import GOSSIP_PATH, Inbox, inbox_url, resource_of
from aspen_federation.outbox import GossipOutbox, Pending
from aspen_federation.trustreq import TrustRequest

NOW = 1_800_000_000.0


def _request(sender: ClusterKey, recipient: bytes, now: float = NOW) -> TrustRequest:
    doc = IdentityDocument.create(sender, "sender", created=int(now))
    return TrustRequest.create(sender, doc, recipient, now=now)


def test_a_trust_request_is_bound_to_its_recipient_and_date() -> None:
    sender, us, other = ClusterKey.generate(), ClusterKey.generate(), ClusterKey.generate()
    wire = _request(sender, us.public).encode()
    assert len(wire) <= limits.MAX_TRUST_REQUEST_BYTES
    assert TrustRequest.parse(wire).verified(us.public, now=NOW).key == sender.public
    with pytest.raises(InvalidArgumentError, match="another cluster"):
        TrustRequest.parse(wire).verified(other.public, now=NOW)
    late = NOW + limits.TRUST_REQUEST_MAX_AGE_SECONDS + 1
    with pytest.raises(InvalidArgumentError, match="stale"):
        TrustRequest.parse(wire).verified(us.public, now=late)
    # re-wrapping someone's identity document under another key is refused
    doc = IdentityDocument.create(sender, "sender")
    stolen = TrustRequest.create(other, doc, us.public, now=NOW).encode()
    with pytest.raises(UnauthorizedError, match="bad signature"):
        TrustRequest.parse(stolen).verified(us.public, now=NOW)
    with pytest.raises(InvalidArgumentError, match="MAX_TRUST_REQUEST_BYTES"):
        TrustRequest.parse(b"\x00" * (limits.MAX_TRUST_REQUEST_BYTES + 1))
    with pytest.raises(InvalidArgumentError, match="malformed"):
        TrustRequest.parse(b"\x93\x01\x02\x03")


def test_gossip_resources_and_the_announced_inbox() -> None:
    assert resource_of("ref.updated", "acme/w") == "forge:acme/w"
    assert resource_of("repo.created", "acme/w") == "forge:acme/w"
    assert resource_of("channel.updated", "acme/w:main") == "pijul:acme/w"
    assert inbox_url(["127.0.0.1:2379", "http://127.0.0.1:7000"]) == "http://127.0.0.1:7000"
    assert inbox_url(["127.0.0.1:2379"]) is None


class _Service:
    """Just what the outbox's queue needs."""

    node: Any = None


def test_the_outbox_folds_repeats_and_drops_the_oldest_beyond_its_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox = GossipOutbox(_Service())  # type: ignore[arg-type]
    outbox.enqueue("ref.updated", "acme/a")
    outbox.enqueue("ref.updated", "acme/a")
    assert outbox.stats["folded"] == 1 and len(outbox._queue) == 1
    outbox.on_event({"name": "forge.push", "subject": "acme/b"})
    outbox.on_event({"name": "pijul.channel_update", "subject": "acme/c:main"})
    outbox.on_event({"name": "hooks.dead_letter", "subject": "x"})
    assert list(outbox._queue) == [
        Pending("ref.updated", "acme/a"),
        Pending("ref.updated", "acme/b"),
        Pending("channel.updated", "acme/c:main"),
    ]
    # by count
    monkeypatch.setattr(limits, "GOSSIP_OUTBOX_MESSAGES", 2)
    outbox.enqueue("ref.updated", "acme/d")
    assert [p.subject for p in outbox._queue] == ["acme/c:main", "acme/d"]
    assert outbox.stats["dropped"] == 2
    # by bytes
    monkeypatch.setattr(limits, "GOSSIP_OUTBOX_MESSAGES", 100)
    monkeypatch.setattr(limits, "GOSSIP_OUTBOX_BYTES", 60)
    outbox.enqueue("ref.updated", "x" * 40)
    assert [p.subject for p in outbox._queue] == ["x" * 40]
    assert outbox._bytes == Pending("ref.updated", "x" * 40).size() <= 60
    # a subject over the gossip bound is never queued
    outbox.enqueue("ref.updated", "y" * (limits.MAX_GOSSIP_SUBJECT_BYTES + 1))
    assert len(outbox._queue) == 1


def test_the_inbox_refuses_a_body_over_its_bound_and_a_batch_too_long() -> None:
    inbox = Inbox(_Service())  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def deliver(body: bytes) -> dict[str, Any]:
        chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

        async def receive() -> dict[str, Any]:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": GOSSIP_PATH, "client": ("h", 1)}
        await inbox(scope, receive, send)
        return dict(msgpack.unpackb(sent[-1]["body"], raw=False))

    too_big = anyio.run(deliver, b"\x00" * (limits.MAX_INBOX_BODY_BYTES + 1))
    assert "MAX_INBOX_BODY_BYTES" in too_big["error"]["message"]
    assert sent[-2]["status"] == 400
    batch = msgpack.packb([b"x"] * (limits.GOSSIP_BATCH_MESSAGES + 1))
    too_long = anyio.run(deliver, batch)
    assert "GOSSIP_BATCH_MESSAGES" in too_long["error"]["message"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """One node in this process (so a test can lower a bound), no DHT."""
    config = NodeConfig(data_dir=tmp_path_factory.mktemp("node"), listen="127.0.0.1:0", sync=False)
    with NodeThread(config, make_plugin_manager(load=["federation", "forge"])) as running:
        yield running


def test_the_trust_request_queue_is_bounded_in_count_and_bytes(
    node: NodeThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [IdentityDocument.create(ClusterKey.generate(), f"c{i}").encode() for i in range(4)]
    with node.client() as c:
        monkeypatch.setattr(limits, "MAX_TRUST_REQUEST_QUEUE_BYTES", int(len(docs[0]) * 2.5))
        c.call("federation.request", {"document": docs[0]})
        c.call("federation.request", {"document": docs[1]})
        with pytest.raises(ResourceExhaustedError, match="MAX_TRUST_REQUEST_QUEUE_BYTES"):
            c.call("federation.request", {"document": docs[2]})
        c.call("federation.request", {"document": docs[1]})  # a repeat replaces its own
        monkeypatch.setattr(limits, "MAX_TRUST_REQUEST_QUEUE_BYTES", 1 << 20)
        monkeypatch.setattr(limits, "MAX_TRUST_REQUESTS", 2)
        with pytest.raises(ResourceExhaustedError, match="MAX_TRUST_REQUESTS"):
            c.call("federation.request", {"document": docs[3]})
        assert len(c.call("federation.requests", {})["requests"]) == 2
