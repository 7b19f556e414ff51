"""Client side: concurrent ``publish`` calls to one topic sent as one ``pubsub.publish``
batch (as a Kafka producer batches), each caller still answered with its own message's
``{partition, offset}`` once durable, or its own error.

The first call that finds no batch collecting for its topic starts one, yields once
(``anyio.sleep(0)``: the other tasks ready to run publish too, e.g. every publisher woken
by the previous batch's answer) and sends what collected: one request instead of one per
message, so the node's per-request cost (decoding, dispatch, the answer frame) is paid once
per batch. A lone publisher waits one loop turn, no round trip. A batch holds at most
PUBSUB_MAX_BATCH_MESSAGES / PUBSUB_MAX_BATCH_BYTES; a call that would overflow it starts
the next one. A batch refused as invalid (one bad message refuses the whole request) is
sent again one message per request, so only the bad message's caller gets the error.

The collecting call sends the batch shielded from its own cancellation (the others wait on
it); a cancelled caller whose message was not sent yet is left out.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from aspen.errors import InvalidArgumentError, UnavailableError
from aspen_pubsub import limits

__all__ = ["PublishCoalescer", "message_size"]

#: Sends one ``pubsub.publish`` request's params and returns its answer.
Call = Callable[[dict[str, Any]], Awaitable[Any]]


def message_size(message: dict[str, Any]) -> int:
    """The bytes the node counts for ``message`` against PUBSUB_MAX_BATCH_BYTES (as
    :attr:`aspen_pubsub.model.Message.size`)."""
    size = 0
    for name in ("data", "key"):
        value = message.get(name)
        if value is not None:
            size += len(value.encode() if isinstance(value, str) else value)
    headers = message.get("headers")
    if headers:
        size += sum(len(k) + len(v) for k, v in headers.items())
    if message.get("id") is not None:
        size += len(message["id"])
    return size


def _copy(exc: Exception) -> Exception:
    """Its own copy of ``exc`` for each caller (a raised exception gathers its raiser's
    traceback), or ``exc`` itself if it cannot be copied."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


class _Waiting:
    """One publish call waiting for its batch's answer."""

    __slots__ = ("abandoned", "done", "error", "message", "result", "size")

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self.size = message_size(message)
        self.done = anyio.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.abandoned = False  #: its caller was cancelled before the batch was sent

    def answer(self, result: dict[str, Any] | None, error: BaseException | None) -> None:
        """Hand the caller its result or error and wake it."""
        self.result, self.error = result, error
        self.done.set()


class _Batch:
    """The publish calls collecting for one request."""

    __slots__ = ("sent", "size", "waiting")

    def __init__(self, first: _Waiting) -> None:
        self.waiting = [first]
        self.size = first.size
        self.sent = False

    def fits(self, waiting: _Waiting) -> bool:
        """Whether ``waiting`` may join without overflowing the batch bounds."""
        return (
            len(self.waiting) < limits.PUBSUB_MAX_BATCH_MESSAGES
            and self.size + waiting.size <= limits.PUBSUB_MAX_BATCH_BYTES
        )


class PublishCoalescer:
    """Per topic, the batch collecting concurrent publish calls (one per client)."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self._collecting: dict[str, _Batch] = {}
        #: A batch this long is sent at once by the call that filled it (not at the end
        #: of the loop turn): the node starts on it while the client collects the next.
        self.send_at = limits.PUBSUB_CLIENT_SEND_AT

    async def publish(self, topic: str, message: dict[str, Any]) -> dict[str, Any]:
        """Publish ``message`` (a map of ``data``, ``key``, ``headers``, ``id``) to
        ``topic`` with whatever other calls publish to it meanwhile; its
        ``{partition, offset}``."""
        waiting = _Waiting(message)
        batch = self._collecting.get(topic)
        if batch is not None and batch.fits(waiting):
            batch.waiting.append(waiting)
            batch.size += waiting.size
            if len(batch.waiting) >= self.send_at:  # full enough: this call sends it now
                await self._flush(topic, batch)
        else:
            batch = self._collecting[topic] = _Batch(waiting)
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0)  # let the publishers ready to run join
            await self._flush(topic, batch)
        try:
            await waiting.done.wait()
        except BaseException:
            waiting.abandoned = True
            raise
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result

    async def _flush(self, topic: str, batch: _Batch) -> None:
        """Send ``batch`` unless sent already, shielded from the sender's cancellation
        (the other callers wait on it)."""
        if batch.sent:
            return
        batch.sent = True
        if self._collecting.get(topic) is batch:
            del self._collecting[topic]
        try:
            with anyio.CancelScope(shield=True):
                await self._send(topic, [w for w in batch.waiting if not w.abandoned])
        finally:  # never leave a caller waiting (e.g. KeyboardInterrupt)
            for one in batch.waiting:
                if not one.done.is_set():
                    one.answer(None, UnavailableError("the publish batch was not sent"))

    async def _send(self, topic: str, waiting: list[_Waiting]) -> None:
        """One request for ``waiting``; answer each (alone again if it was refused)."""
        try:
            if len(waiting) == 1:
                waiting[0].answer(await self._call({"topic": topic, **waiting[0].message}), None)
                return
            params = {"topic": topic, "messages": [w.message for w in waiting]}
            results = (await self._call(params))["results"]
        except InvalidArgumentError as exc:
            if len(waiting) == 1:
                waiting[0].answer(None, exc)
                return
            for one in waiting:  # find the bad message(s): each alone
                await self._send(topic, [one])
            return
        except Exception as exc:
            for one in waiting:
                one.answer(None, exc if one is waiting[0] else _copy(exc))
            return
        for one, result in zip(waiting, results, strict=True):
            one.answer(result, None)
