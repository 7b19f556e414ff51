"""Peer streams: large payloads (snapshots) over a connection of their own.

The sender writes ``{"chunk": bytes}`` frames (at most ``PEER_STREAM_CHUNK_BYTES`` each)
then ``{"end": true}``; the receiver answers ``{"type": "result", "result": ...}`` or an
error frame, possibly before the end (then the sender stops).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from aspen.errors import InvalidArgumentError, UnavailableError, error_from_wire
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen.limits import PEER_STREAM_CHUNK_BYTES
from aspen.transport.framed import LINK_ERRORS, FramedStream, describe_error

__all__ = ["StreamReader", "StreamSender"]


class StreamReader:
    """The receiving side of a stream: chunk frames until ``end``."""

    def __init__(self, framed: FramedStream, peer_id: str, idle_timeout: float) -> None:
        self.framed = framed
        self.peer_id = peer_id
        self.idle_timeout = idle_timeout
        self.broken = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield each chunk; raise ``UnavailableError`` if the stream breaks off."""
        while True:
            try:
                with anyio.fail_after(self.idle_timeout):
                    frame = await self.framed.recv()
            except LINK_ERRORS as exc:
                self.broken = True
                raise UnavailableError(
                    f"stream from peer {self.peer_id} broke off: {describe_error(exc)}"
                ) from exc
            chunk = frame.get("chunk")
            if type(chunk) is bytes:
                yield chunk
            elif frame.get("end") is True:
                return
            elif frame.get("type") == "error":  # the sender of a fetch refused or failed
                raise error_from_wire(frame.get("error"))
            else:
                raise InvalidArgumentError(f"unexpected frame in a stream: {sorted(frame)}")


class StreamSender:
    """The sending side of a stream: chunks out, one answer back (possibly early)."""

    def __init__(self, framed: FramedStream, peer_id: str) -> None:
        self.framed = framed
        self.peer_id = peer_id
        self.answered = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    async def _await_answer(self) -> None:
        """Receive the receiver's result or error (it may come before the end)."""
        try:
            frame = await self.framed.recv()
        except LINK_ERRORS as exc:
            self.error = UnavailableError(
                f"stream to peer {self.peer_id} broke off: {describe_error(exc)}"
            )
        else:
            if frame.get("type") == "result":
                self.result = frame.get("result")
            elif frame.get("type") == "error":
                self.error = error_from_wire(frame.get("error"))
            else:
                self.error = UnavailableError(f"unexpected answer to a stream: {sorted(frame)}")
        self.answered.set()

    async def _send(self, frame: dict[str, Any]) -> bool:
        """Send one frame; False when the receiver has gone (its answer tells why)."""
        try:
            await self.framed.send(frame)
        except LINK_ERRORS:
            return False
        return True

    async def _send_all(self, chunks: AsyncIterator[bytes]) -> None:
        """Send every chunk (split to ``PEER_STREAM_CHUNK_BYTES``), then ``end``; errors of
        the chunks' producer propagate."""
        send = self._send
        async for chunk in chunks:
            if self.answered.is_set():
                return
            for start in range(0, len(chunk), PEER_STREAM_CHUNK_BYTES):
                if not await send({"chunk": bytes(chunk[start : start + PEER_STREAM_CHUNK_BYTES])}):
                    return
        await send({"end": True})

    async def run(self, chunks: AsyncIterator[bytes], result_timeout: float) -> Any:
        """Send the stream, wait for the answer; return the result or raise the error."""
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._await_answer)
            try:
                await self._send_all(chunks)
            except Exception as exc:  # the producer of the chunks failed
                failure = exc
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
            if failure is None:
                with anyio.move_on_after(result_timeout):
                    await self.answered.wait()
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if self.error is not None:
            raise self.error
        if not self.answered.is_set():
            raise AspenTimeoutError(
                f"peer {self.peer_id} did not answer the stream within {result_timeout:g} s"
            )
        return self.result
