"""The framed msgpack session as one sans-IO state machine (docs/protocol.md).

:class:`WireConnection` knows the wire protocol and nothing about sockets, tasks or event
loops, in the style of h11: the I/O driver feeds it what it read with
:meth:`~WireConnection.receive_data` and gets typed events back; it turns events into bytes
with :meth:`~WireConnection.send` and writes them; it reports the bytes the peer took with
:meth:`~WireConnection.bytes_written`. The same machine serves the RPC server, the client and
the peer links (``peer=True``: the hello carries the cluster and node ids and frames after it
are opaque maps), so every driver shares one parser, one hello, one set of limits.

States (each side starts in ``AWAITING_HELLO``)::

    AWAITING_HELLO --(hello received)--> OPEN --(ConnectionFailed sent or received)--> CLOSING
          |                                 |                                            |
          +------------(close())------------+-------------------(close())---------------+--> CLOSED

Invariants:

* The first frame received must be a hello of a supported ``version`` (else
  :class:`WireError`, and the caller sends :class:`ConnectionFailed` and closes); nothing else
  is parsed before it, and no second hello is accepted.
* A client sends its :class:`Hello` first and requests only after it; a server sends its
  :class:`Hello` (or :class:`ConnectionFailed`) before any reply.
* No frame is produced or accepted once ``CLOSING``, except one :class:`ConnectionFailed` if
  none was sent yet (why the connection closes); nothing at all once ``CLOSED``. After a
  :class:`WireError` from :meth:`~WireConnection.receive_data` the machine is ``CLOSING``:
  the connection cannot be resynchronised.
* No frame over ``max_frame`` bytes is buffered or produced (:class:`FrameError` names it).
* ``bytes_queued`` is exactly the bytes returned by :meth:`~WireConnection.send` that the
  driver has not yet reported written; ``reading_allowed`` is false while it is over
  ``max_queued_bytes``, so a peer that does not read its replies is not read either (TCP slows
  it down), and nothing is buffered without bound.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from aspen.errors import AspenError, InvalidArgumentError, error_from_wire
from aspen.limits import MAX_FRAME_BYTES, MAX_QUEUED_REPLY_BYTES_PER_CONNECTION
from aspen.transport.framing import FrameDecoder, FrameError, encode_frame

__all__ = [
    "PROTOCOL_VERSION",
    "Cancel",
    "ConnectionFailed",
    "Event",
    "Failure",
    "Hello",
    "InvalidRequest",
    "Item",
    "LocalProtocolError",
    "Message",
    "Request",
    "Result",
    "Role",
    "WireConnection",
    "WireError",
    "WireState",
    "parse_hello",
]

#: The client protocol version (docs/protocol.md).
PROTOCOL_VERSION = 1


class WireState(enum.Enum):
    """Where a connection is in its life; see the module docstring."""

    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Role(enum.Enum):
    """Which end of the connection this machine is."""

    CLIENT = "client"
    SERVER = "server"


class WireError(FrameError):
    """The peer broke the protocol (garbage, no hello, wrong version, bad frame)."""


class LocalProtocolError(RuntimeError):
    """This side tried to send something the protocol does not allow now (a bug)."""


# ---------------------------------------------------------------------------- events
class Event:
    """Base of everything :meth:`WireConnection.receive_data` returns or ``send`` takes."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        """Events are equal when of one type with equal fields (for tests)."""
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self) -> str:
        """``Type(field=value, ...)``."""
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    __hash__ = None  # type: ignore[assignment]


class Hello(Event):
    """A hello: ``fields`` are its map without ``type`` and ``version`` (token, client,
    node_id, server, features, cluster_id, kind, ...)."""

    __slots__ = ("fields", "version")

    def __init__(self, fields: dict[str, Any], version: int = PROTOCOL_VERSION) -> None:
        self.fields = fields
        self.version = version


class Request(Event):
    """A client's request ``id`` for ``method`` with ``params`` (a map); ``size`` is the
    frame's body size in bytes (for flow control)."""

    __slots__ = ("id", "method", "params", "size")

    def __init__(self, id: int, method: str, params: dict[str, Any], size: int = 0) -> None:
        self.id = id
        self.method = method
        self.params = params
        self.size = size


class InvalidRequest(Event):
    """A request frame with an id but a malformed method or params: answer ``error``."""

    __slots__ = ("error", "id")
    #: Request bytes it holds while held back (none worth counting).
    size = 0

    def __init__(self, id: int, error: AspenError) -> None:
        self.id = id
        self.error = error


class Cancel(Event):
    """The client gives up on request ``id``."""

    __slots__ = ("id",)
    #: Request bytes it holds while held back (none worth counting).
    size = 0

    def __init__(self, id: int) -> None:
        self.id = id


class Result(Event):
    """The final answer of request ``id``."""

    __slots__ = ("id", "result")

    def __init__(self, id: int, result: Any) -> None:
        self.id = id
        self.result = result


class Item(Event):
    """One item of streaming request ``id``."""

    __slots__ = ("id", "item")

    def __init__(self, id: int, item: Any) -> None:
        self.id = id
        self.item = item


class Failure(Event):
    """Request ``id`` failed with ``error``."""

    __slots__ = ("error", "id")

    def __init__(self, id: int, error: AspenError) -> None:
        self.id = id
        self.error = error


class ConnectionFailed(Event):
    """A connection-level error: the sender closes after it."""

    __slots__ = ("error",)

    def __init__(self, error: AspenError) -> None:
        self.error = error


class Message(Event):
    """An opaque frame after the hello of a peer link (a Raft message, a stream chunk)."""

    __slots__ = ("frame",)

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame


# ---------------------------------------------------------------------------- machine
def parse_hello(frame: dict[str, Any], versions: Sequence[int]) -> Hello | ConnectionFailed:
    """The first frame of a connection as an event: a :class:`Hello` of one of ``versions``,
    or the other side's :class:`ConnectionFailed`; raise :class:`WireError` for anything else
    (version negotiation: the error names the supported versions)."""
    kind = frame.get("type")
    if kind == "error" or ("error" in frame and frame.get("id") is None and kind != "hello"):
        return ConnectionFailed(error_from_wire(frame.get("error")))
    if kind != "hello":
        raise WireError("expected a hello frame first (see docs/protocol.md)", expected="hello")
    version = frame.get("version")
    if type(version) is not int or version not in versions:  # True == 1
        raise WireError(
            f"protocol version {version!r} is not supported; this side speaks "
            f"version {' or '.join(map(str, versions))}",
            supported=list(versions),
        )
    return Hello({k: v for k, v in frame.items() if k != "type" and k != "version"}, version)


_AWAITING, _OPEN, _CLOSING, _CLOSED = (
    WireState.AWAITING_HELLO,
    WireState.OPEN,
    WireState.CLOSING,
    WireState.CLOSED,
)


_NOTHING: frozenset[type] = frozenset()
_SERVER_SENDS = frozenset({Result, Item, Failure})
_CLIENT_SENDS = frozenset({Request, Cancel})
_PEER_SENDS = frozenset({Message})


class WireConnection:
    """One end of one framed msgpack connection; see the module docstring."""

    __slots__ = (
        "_decoder",
        "_sendable",
        "bytes_queued",
        "failed_sent",
        "hello_sent",
        "max_frame",
        "max_queued_bytes",
        "peer",
        "role",
        "state",
        "their_hello",
        "versions",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_frame: int = MAX_FRAME_BYTES,
        max_queued_bytes: int = MAX_QUEUED_REPLY_BYTES_PER_CONNECTION,
        versions: Sequence[int] = (PROTOCOL_VERSION,),
        peer: bool = False,
    ) -> None:
        self.role = role
        #: ``True`` for a peer link: frames after the hello are :class:`Message` events.
        self.peer = peer
        self.max_frame = max_frame
        self.max_queued_bytes = max_queued_bytes
        #: The protocol versions this side accepts in the peer's hello.
        self.versions = tuple(versions)
        self.state = _AWAITING
        #: Event types :meth:`send` encodes without the full checks (none until open).
        self._sendable: frozenset[type] = _NOTHING
        self.hello_sent = False
        #: Whether a :class:`ConnectionFailed` was sent (at most one is).
        self.failed_sent = False
        #: The peer's hello once received.
        self.their_hello: Hello | None = None
        #: Bytes produced by :meth:`send` that the driver has not reported written.
        self.bytes_queued = 0
        self._decoder = FrameDecoder(max_frame, record_sizes=role is Role.SERVER)

    # ------------------------------------------------------------------ input
    @property
    def buffered(self) -> int:
        """Received bytes held back waiting for the rest of a frame."""
        return self._decoder.buffered

    @property
    def reading_allowed(self) -> bool:
        """Whether the driver should read: open and not over its queued-bytes bound."""
        return self.state is not _CLOSED and self.bytes_queued <= self.max_queued_bytes

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse every complete frame of what was buffered plus ``data`` into events.

        Raises :class:`WireError` (and moves to ``CLOSING``) when the peer broke the
        protocol; the caller sends :class:`ConnectionFailed` (a server) and closes.
        """
        state = self.state
        if state is _CLOSED or state is _CLOSING:
            return []
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except FrameError as exc:
            self._set_state(_CLOSING)
            raise WireError(exc.message, **exc.details) from exc
        if not frames:
            return []
        sizes = decoder.sizes
        try:
            if state is _AWAITING:
                events: list[Event] = [self._hello(frames[0])]
                if self.state is _CLOSING:  # the other side's error instead of a hello
                    return events
                start = 1
            else:
                events = []
                start = 0
            if self.peer:
                events.extend([Message(f) for f in frames[start:]])
            elif self.role is Role.SERVER:
                assert sizes is not None
                self._server_frames(frames, sizes, start, events)
            else:
                self._client_frames(frames, start, events)
        except WireError:
            self._set_state(_CLOSING)
            raise
        finally:
            if sizes is not None:
                sizes.clear()
        return events

    def _hello(self, frame: dict[str, Any]) -> Event:
        """Check the peer's first frame: a hello of a supported version (or its error)."""
        event = parse_hello(frame, self.versions)
        if type(event) is Hello:
            self.their_hello = event
            self._set_state(_OPEN)
        else:
            self._set_state(_CLOSING)
        return event

    def _server_frames(
        self, frames: list[dict[str, Any]], sizes: list[int], start: int, out: list[Event]
    ) -> None:
        """Turn request and cancel frames into events."""
        for i in range(start, len(frames)):
            frame = frames[i]
            rid = frame.get("id")
            if type(rid) is not int:
                if "cancel" in frame:
                    cancel = frame["cancel"]
                    if type(cancel) is int:
                        out.append(Cancel(cancel))
                    continue
                raise WireError("a request frame needs an integer 'id' (or 'cancel')")
            method = frame.get("method")
            params = frame.get("params")
            if type(method) is not str:
                err: AspenError = InvalidArgumentError(
                    f"'method' must be a str, not {type(method).__name__}", field="method"
                )
                out.append(InvalidRequest(rid, err))
            elif type(params) is dict:
                out.append(Request(rid, method, params, sizes[i]))
            elif params is None:
                out.append(Request(rid, method, {}, sizes[i]))
            else:
                err = InvalidArgumentError(
                    f"params of {method} must be a map, not {type(params).__name__}",
                    field="params",
                )
                out.append(InvalidRequest(rid, err))

    def _client_frames(self, frames: list[dict[str, Any]], start: int, out: list[Event]) -> None:
        """Turn reply frames into events (frames of no request are ignored)."""
        for i in range(start, len(frames)):
            frame = frames[i]
            rid = frame.get("id")
            if type(rid) is not int:
                if "error" in frame:
                    self._set_state(_CLOSING)
                    out.append(ConnectionFailed(error_from_wire(frame["error"])))
                    return
                continue
            if "item" in frame:
                out.append(Item(rid, frame["item"]))
            elif "error" in frame:
                out.append(Failure(rid, error_from_wire(frame["error"])))
            else:
                out.append(Result(rid, frame.get("result")))

    # ------------------------------------------------------------------ output
    def send(self, event: Event) -> bytes:
        """Return the bytes of ``event`` (counted in ``bytes_queued`` until reported written).

        Raises :class:`LocalProtocolError` when the event is not allowed in this state or
        role, :class:`FrameError` when it does not fit in ``max_frame`` (nothing changes then).
        """
        kind = type(event)
        if kind in self._sendable:  # the hot path: open both ways, an event of this role
            if kind is Result:
                frame: dict[str, Any] = {"id": event.id, "result": event.result}  # type: ignore[attr-defined]
            elif kind is Request:
                frame = {"id": event.id, "method": event.method, "params": event.params}  # type: ignore[attr-defined]
            elif kind is Message:
                frame = event.frame  # type: ignore[attr-defined]
            elif kind is Item:
                frame = {"id": event.id, "item": event.item}  # type: ignore[attr-defined]
            else:
                return self._send_checked(event)
            data = encode_frame(frame, max_frame=self.max_frame)
            self.bytes_queued += len(data)
            return data
        return self._send_checked(event)

    def _send_checked(self, event: Event) -> bytes:
        """:meth:`send` with every check (hellos, errors, anything out of turn)."""
        state = self.state
        kind = type(event)
        if state is _CLOSING and kind is ConnectionFailed and not self.failed_sent:
            pass  # the peer broke the protocol: say why before closing
        elif state is _CLOSED or state is _CLOSING:
            raise LocalProtocolError(
                f"cannot send {kind.__name__}: the connection is {state.value}"
            )
        if kind is Result:
            frame: dict[str, Any] = {"id": event.id, "result": event.result}  # type: ignore[attr-defined]
        elif kind is Item:
            frame = {"id": event.id, "item": event.item}  # type: ignore[attr-defined]
        elif kind is Request:
            frame = {"id": event.id, "method": event.method, "params": event.params}  # type: ignore[attr-defined]
        elif kind is Message:
            frame = event.frame  # type: ignore[attr-defined]
        elif kind is Failure:
            frame = {"id": event.id, "error": event.error.to_wire()}  # type: ignore[attr-defined]
        elif kind is Cancel:
            frame = {"cancel": event.id}  # type: ignore[attr-defined]
        elif kind is Hello:
            if self.hello_sent:
                raise LocalProtocolError("the hello was already sent")
            frame = {"type": "hello", "version": event.version, **event.fields}  # type: ignore[attr-defined]
        elif kind is ConnectionFailed:
            frame = {"type": "error", "error": event.error.to_wire()}  # type: ignore[attr-defined]
        else:
            raise LocalProtocolError(f"{kind.__name__} is not an event this side sends")
        self._check_allowed(kind)
        data = encode_frame(frame, max_frame=self.max_frame)
        if kind is Hello:
            self.hello_sent = True
            self._update_sendable()
        elif kind is ConnectionFailed:
            self.failed_sent = True
            self._set_state(_CLOSING)
        self.bytes_queued += len(data)
        return data

    def _set_state(self, state: WireState) -> None:
        """Move to ``state`` (and update what may be sent without the full checks)."""
        self.state = state
        self._update_sendable()

    def _update_sendable(self) -> None:
        """Events of this role go by the hot path once both hellos are through and open."""
        if self.state is _OPEN and self.hello_sent:
            if self.peer:
                self._sendable = _PEER_SENDS
            else:
                self._sendable = _SERVER_SENDS if self.role is Role.SERVER else _CLIENT_SENDS
        else:
            self._sendable = _NOTHING

    def _check_allowed(self, kind: type) -> None:
        """Raise :class:`LocalProtocolError` if ``kind`` may not be sent now."""
        if kind is Hello or kind is ConnectionFailed:
            return
        if not self.hello_sent:
            raise LocalProtocolError(f"cannot send {kind.__name__} before the hello")
        if self.peer:
            if kind is not Message:
                raise LocalProtocolError(f"a peer link sends Message, not {kind.__name__}")
        elif self.role is Role.SERVER:
            if kind is Request or kind is Cancel or kind is Message:
                raise LocalProtocolError(f"a server does not send {kind.__name__}")
        elif kind is not Request and kind is not Cancel:
            raise LocalProtocolError(f"a client does not send {kind.__name__}")

    def bytes_written(self, nbytes: int) -> None:
        """The driver handed ``nbytes`` of what :meth:`send` returned to the peer."""
        self.bytes_queued = max(0, self.bytes_queued - nbytes)

    def close(self) -> None:
        """The connection is gone: nothing more is sent or received."""
        self._set_state(_CLOSED)
        self.bytes_queued = 0
