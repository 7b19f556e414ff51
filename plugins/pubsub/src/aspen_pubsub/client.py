"""``client.pubsub``: the Python API over ``pubsub.*`` (async; the blocking client mirrors
every method, and :meth:`PubSubClient.subscribe` becomes a blocking iterator).

    with aspen.connect(endpoint, token=t) as c:
        c.pubsub.create_topic("orders", partitions=4)
        c.pubsub.publish("orders", b"hello", key=b"customer-7")
        c.pubsub.create_group("orders", "billing", mode="competing", ack_wait=30)
        for m in c.pubsub.fetch("orders", "billing", "worker-1", max=10):
            c.pubsub.ack("orders", "billing", "worker-1", [m])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from aspen_pubsub.coalesce import PublishCoalescer

__all__ = ["PubSubClient", "Subscription"]


def _positions(messages: Iterable[Any]) -> list[list[int]]:
    """``[[partition, offset, delivery_count]]`` from delivered messages (maps) or triples."""
    out = []
    for m in messages:
        if isinstance(m, dict):
            out.append([m["partition"], m["offset"], m.get("delivery_count", 1)])
        else:
            out.append(list(m))
    return out


class Subscription:
    """An open subscription: ``async for message in sub``; ``offsets`` is where to resume
    (``{"<topic>/<partition>": next offset}`` of what it has returned: pass it as
    ``subscribe(..., offsets=sub.offsets)``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.offsets: dict[str, int] = {}
        self._page: deque[dict[str, Any]] = deque()

    def __aiter__(self) -> Subscription:
        """Return self."""
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next message (waiting for one to be published)."""
        while not self._page:
            self._page.extend((await self.stream.__anext__())["messages"])
        message = self._page.popleft()
        self.offsets[f"{message['topic']}/{message['partition']}"] = message["offset"] + 1
        return message

    async def aclose(self) -> None:
        """End the subscription on the server."""
        await self.stream.aclose()


class PubSubClient:
    """The ``pubsub`` methods of an :class:`aspen.client.aclient.AsyncClient`."""

    def __init__(self, client: Any) -> None:
        self._client = client
        #: Whether concurrent :meth:`publish` calls to one topic go as one batch request
        #: (see :mod:`aspen_pubsub.coalesce`); each is still answered on its own.
        self.coalesce = True
        #: The batching itself (``coalescer.send_at``: the batch size sent at once).
        self.coalescer = PublishCoalescer(lambda params: self._call("publish", params))

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        return await self._client.call(f"pubsub.{method}", params)

    async def create_topic(
        self, topic: str, partitions: int = 1, **retention: Any
    ) -> dict[str, Any]:
        """Create ``topic``; ``retention``: ``max_messages``, ``max_bytes``, ``max_age``,
        ``dedup_window``."""
        return await self._call(
            "topic_create", {"topic": topic, "partitions": partitions, **retention}
        )

    async def delete_topic(self, topic: str) -> dict[str, Any]:
        """Delete ``topic`` with its messages and groups."""
        return await self._call("topic_delete", {"topic": topic})

    async def topics(self, limit: int = 100, after: str = "") -> dict[str, Any]:
        """One page of topics: ``{topics, more}``."""
        return await self._call("topics", {"limit": limit, "after": after})

    async def publish(
        self,
        topic: str,
        data: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Publish one message; ``{partition, offset}`` once it is durable. Concurrent
        calls to one topic share a request (unless ``coalesce`` is off)."""
        params: dict[str, Any] = {"data": data}
        for name, value in (("key", key), ("headers", headers), ("id", id)):
            if value is not None:
                params[name] = value
        if self.coalesce:
            return await self.coalescer.publish(topic, params)
        return await self._call("publish", {"topic": topic, **params})

    async def publish_batch(
        self, topic: str, messages: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Publish ``messages`` (maps of ``data``, ``key``, ``headers``, ``id``) in one entry."""
        return (await self._call("publish", {"topic": topic, "messages": messages}))["results"]

    async def subscribe(
        self,
        topic: str,
        *,
        start: str = "start",
        offsets: dict[Any, int] | None = None,
        time: float | None = None,
        max: int = 0,
    ) -> Subscription:
        """Every message of ``topic`` (or of the topics a pattern such as ``orders.*`` or
        ``orders.>`` matches) in order per partition, then new ones as they commit: from
        ``start`` (``start`` | ``end``), ``time`` (seconds), or ``offsets`` (resume: keys
        ``partition`` for one topic, ``"<topic>/<partition>"`` for any).
        Returns once the subscription is registered; iterate it, ``aclose()`` it."""
        params: dict[str, Any] = {"topic": topic, "from": "time" if time else start, "max": max}
        if time:
            params["time"] = time
        if offsets:
            params["offsets"] = {str(p): int(o) for p, o in offsets.items()}
        subscription = Subscription(self._client.stream("pubsub.subscribe", params))
        try:
            await subscription.stream.__anext__()  # the server's "registered"
        except BaseException:
            await subscription.aclose()
            raise
        return subscription

    async def read(
        self, topic: str, partition: int = 0, offset: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        """One page of a partition: ``{messages, next}``."""
        return await self._call(
            "read", {"topic": topic, "partition": partition, "offset": offset, "limit": limit}
        )

    async def create_group(
        self, topic: str, group: str, mode: str = "competing", **settings: Any
    ) -> dict[str, Any]:
        """Create a group: ``ack_wait``, ``max_deliver``, ``max_ack_pending``, ``start``."""
        return await self._call(
            "group_create", {"topic": topic, "group": group, "mode": mode, **settings}
        )

    async def delete_group(self, topic: str, group: str, *, force: bool = False) -> dict[str, Any]:
        """Delete a group (one with members only with ``force``)."""
        return await self._call("group_delete", {"topic": topic, "group": group, "force": force})

    async def fetch(
        self,
        topic: str,
        group: str,
        consumer: str,
        max: int = 1,
        wait: float = 0.0,
        ack: Iterable[Any] = (),
    ) -> list[dict[str, Any]]:
        """The next messages for ``consumer`` (waiting up to ``wait`` seconds for one);
        ``ack``: delivered messages to acknowledge first, in the same Raft entry."""
        params = {"topic": topic, "group": group, "consumer": consumer, "max": max, "wait": wait}
        return (await self._call("fetch", {**params, "acks": _positions(ack)}))["messages"]

    async def _settle(
        self,
        topic: str,
        group: str,
        consumer: str,
        messages: Iterable[Any],
        kind: str,
        delay: float = 0.0,
    ) -> int:
        params = {
            "topic": topic,
            "group": group,
            "consumer": consumer,
            "acks": _positions(messages),
            "kind": kind,
            "delay": delay,
        }
        return (await self._call("ack", params))["settled"]

    async def ack(self, topic: str, group: str, consumer: str, messages: Iterable[Any]) -> int:
        """Acknowledge delivered ``messages`` (maps from fetch, or ``[p, o, delivery]``)."""
        return await self._settle(topic, group, consumer, messages, "ack")

    async def nak(
        self, topic: str, group: str, consumer: str, messages: Iterable[Any], delay: float = 0.0
    ) -> int:
        """Ask for redelivery of ``messages`` after ``delay`` seconds."""
        return await self._settle(topic, group, consumer, messages, "nak", delay)

    async def in_progress(
        self, topic: str, group: str, consumer: str, messages: Iterable[Any]
    ) -> int:
        """Restart the ack wait of ``messages`` (still working on them)."""
        return await self._settle(topic, group, consumer, messages, "progress")

    async def term(self, topic: str, group: str, consumer: str, messages: Iterable[Any]) -> int:
        """Never redeliver ``messages`` (without processing them)."""
        return await self._settle(topic, group, consumer, messages, "term")

    async def claim(
        self,
        topic: str,
        group: str,
        consumer: str,
        positions: list[list[int]] | None = None,
        from_consumer: str | None = None,
    ) -> list[dict[str, Any]]:
        """Give pending deliveries to ``consumer`` now (operator)."""
        params: dict[str, Any] = {"topic": topic, "group": group, "consumer": consumer}
        if positions:
            params["positions"] = positions
        if from_consumer:
            params["from_consumer"] = from_consumer
        return (await self._call("claim", params))["messages"]

    async def dead_letters(
        self, topic: str, group: str, limit: int = 100, after: str = ""
    ) -> dict[str, Any]:
        """One page of a group's dead letters: ``{dead_letters, more}``."""
        return await self._call(
            "dead_letters", {"topic": topic, "group": group, "limit": limit, "after": after}
        )

    async def stats(self, topic: str, group: str | None = None) -> dict[str, Any]:
        """Messages, bytes, offsets; with ``group``: lag, pending, redeliveries, dead letters."""
        params: dict[str, Any] = {"topic": topic}
        if group is not None:
            params["group"] = group
        return await self._call("stats", params)

    # ------------------------------------------------------------------ partitioned groups
    async def join(
        self, topic: str, group: str, consumer: str, instance: str | None = None
    ) -> dict[str, Any]:
        """Join a partitioned group: ``{member, epoch, assigned, revoke, state}``."""
        params: dict[str, Any] = {"topic": topic, "group": group, "consumer": consumer}
        if instance is not None:
            params["instance"] = instance
        return await self._call("join", params)

    async def heartbeat(
        self, topic: str, group: str, member: str, epoch: int, owned: Iterable[int]
    ) -> dict[str, Any]:
        """Say the member is alive and owns ``owned`` (anything else it had is released)."""
        params = {"topic": topic, "group": group, "member": member, "epoch": epoch}
        return await self._call("heartbeat", {**params, "owned": list(owned)})

    async def commit(
        self, topic: str, group: str, member: str, epoch: int, offsets: dict[int, int]
    ) -> dict[str, Any]:
        """Commit next offsets of owned partitions (a stale epoch is fenced)."""
        params = {"topic": topic, "group": group, "member": member, "epoch": epoch}
        committed = {str(p): o for p, o in offsets.items()}
        return await self._call("commit", {**params, "offsets": committed})

    async def leave(self, topic: str, group: str, member: str, epoch: int) -> dict[str, Any]:
        """Leave a partitioned group (its partitions are released at once)."""
        params = {"topic": topic, "group": group, "member": member, "epoch": epoch}
        return await self._call("leave", params)
