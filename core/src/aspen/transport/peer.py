"""Peer links: mutual TLS 1.3 between cluster members, pinned by node key.

:class:`PeerTransport` listens on the node's peer port and keeps one outbound link per
peer. Both ends of a link present a certificate issued by the cluster CA (the only trust
anchor); each derives the other's node id from its certificate key, and the hello must
name that id and the cluster id. The accepting side also asks ``is_member``; an unknown
key is refused with a log line. A connection with no certificate may only join (it is
handed to ``on_join``, see :mod:`aspen.transport.join`).

Wire (after the TLS handshake), every message a length-prefixed msgpack frame:

* dialer: ``{"type": "hello", "version", "cluster_id", "node_id", "kind", "header"?}``
  with ``kind`` ``"messages"`` (a link: frames follow, one way) or ``"stream"``;
* acceptor: ``{"type": "hello", "version", "cluster_id", "node_id"}`` or
  ``{"type": "error", "error": {code, message, details}}`` and close;
* a stream sends ``{"chunk": bytes}`` frames then ``{"end": true}``; the receiver answers
  ``{"type": "result", "result": ...}`` or an error frame.
* a fetch (kind ``"fetch"``, the request in ``header``) is a stream the other way: the
  acceptor sends ``{"chunk": bytes}`` frames from ``on_fetch`` then ``{"end": true}``, or an
  error frame (blob copies between members, :mod:`aspen.blobs.transfer`).

Sending never blocks: :meth:`PeerTransport.send` queues an encoded frame on the peer's
bounded queue (a full queue drops and counts; Raft retransmits); everything queued in one
loop iteration goes out in one write (:mod:`aspen.transport.peer_link`). Links connect
lazily and reconnect with jittered exponential backoff. Garbage or an oversized frame
closes only that link.

Two I/O drivers: ``asyncio`` (on asyncio or uvloop: asyncio's TLS transport, frames
handed to ``on_message`` straight from the protocol callback, :mod:`aspen.transport.aio`)
and ``anyio`` (TLS streams, portable to trio); measured about 3x apart in round trips.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

import anyio
import anyio.abc

from aspen.errors import (
    AspenError,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnauthorizedError,
    UnavailableError,
)
from aspen.limits import (
    MAX_FRAME_BYTES,
    MAX_PEER_BLOB_TRANSFERS,
    MAX_PEER_CONNECTIONS,
    MAX_PEER_STREAMS,
    PEER_CONNECT_TIMEOUT_SECONDS,
    PEER_HANDSHAKE_TIMEOUT_SECONDS,
    PEER_QUEUE_BYTES,
    PEER_QUEUE_MESSAGES,
    PEER_RECONNECT_MAX_SECONDS,
    PEER_RECONNECT_MIN_SECONDS,
    PEER_STREAM_IDLE_TIMEOUT_SECONDS,
    PEER_STREAM_RESULT_TIMEOUT_SECONDS,
)
from aspen.transport.aio import FrameProtocol, accept_tls, connect_tls, listen_socket
from aspen.transport.framed import (
    LINK_ERRORS,
    FramedStream,
    describe_error,
    error_frame,
    open_tls,
    tune_peer_socket,
    wrap_tls,
)
from aspen.transport.framing import FrameError, encode_frame, running_on_asyncio
from aspen.transport.peer_link import NO_LINK_STATS, PeerLink
from aspen.transport.streams import StreamReader, StreamSender
from aspen.transport.tls import (
    NodeCredentials,
    peer_client_context,
    peer_node_id,
    server_context,
    split_address,
)
from aspen.transport.wire import ConnectionFailed, Hello, parse_hello

__all__ = [
    "PEER_PROTOCOL_VERSION",
    "Driver",
    "IsMember",
    "OnFetch",
    "OnJoin",
    "OnMessage",
    "OnStream",
    "PeerTransport",
]

log = logging.getLogger("aspen.transport.peer")

#: The peer protocol version this node speaks.
PEER_PROTOCOL_VERSION = 1
_VERSIONS = (PEER_PROTOCOL_VERSION,)

#: ``is_member(node_id)``: may this (authenticated) node talk to us?
IsMember = Callable[[str], bool]
#: ``on_message(peer_id, frame)``: called on the event loop for every received frame.
OnMessage = Callable[[str, dict[str, Any]], None]
#: ``await on_stream(peer_id, header, chunks)``: consume a stream; the result is sent back.
OnStream = Callable[[str, dict[str, Any], AsyncIterator[bytes]], Awaitable[Any]]
#: ``on_fetch(peer_id, header)``: the chunks to send back for a fetch request.
OnFetch = Callable[[str, dict[str, Any]], AsyncIterator[bytes]]
#: ``await on_join(first_frame, remote)``: answer a certificate-less join connection.
OnJoin = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]

_KINDS = ("messages", "stream", "fetch")

#: ``"asyncio"``: asyncio's TLS transport and protocols (the fast path, on asyncio/uvloop);
#: ``"anyio"``: anyio TLS streams (portable); ``"auto"``: asyncio when running on it.
Driver = Literal["auto", "asyncio", "anyio"]
#: Connections a listener lets wait for ``accept`` (the asyncio driver).
_BACKLOG = 1024


class PeerTransport:
    """Authenticated, encrypted links to the other members; see the module docstring."""

    def __init__(
        self,
        credentials: NodeCredentials,
        listen: str,
        *,
        is_member: IsMember,
        on_message: OnMessage,
        on_stream: OnStream | None = None,
        on_join: OnJoin | None = None,
        on_fetch: OnFetch | None = None,
        queue_messages: int = PEER_QUEUE_MESSAGES,
        queue_bytes: int = PEER_QUEUE_BYTES,
        max_frame: int = MAX_FRAME_BYTES,
        max_connections: int = MAX_PEER_CONNECTIONS,
        max_streams: int = MAX_PEER_STREAMS,
        reconnect_min: float = PEER_RECONNECT_MIN_SECONDS,
        reconnect_max: float = PEER_RECONNECT_MAX_SECONDS,
        handshake_timeout: float = PEER_HANDSHAKE_TIMEOUT_SECONDS,
        stream_idle_timeout: float = PEER_STREAM_IDLE_TIMEOUT_SECONDS,
        driver: Driver = "auto",
    ) -> None:
        self.credentials = credentials
        self.node_id = credentials.node_id
        self.cluster_id = credentials.cluster_id
        self.listen = listen
        self.queue_messages = queue_messages
        self.queue_bytes = queue_bytes
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.max_streams = max_streams
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.handshake_timeout = handshake_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.driver = driver
        #: The bound peer port once :meth:`serve` has started.
        self.port: int | None = None
        self._is_member = is_member
        self._on_message = on_message
        self._on_stream = on_stream
        self._on_join = on_join
        self._on_fetch = on_fetch
        self._server_ctx = server_context(credentials, peers=True)
        self._client_ctx = peer_client_context(credentials)
        self._tg: anyio.abc.TaskGroup | None = None
        self._links: dict[str, PeerLink] = {}
        self._addresses: dict[str, str] = {}
        self._inbound: dict[str, set[anyio.CancelScope]] = {}
        self._received: dict[str, int] = {}
        self._counters = dict.fromkeys(
            (
                "connections",
                "refused",
                "bad_frames",
                "joins",
                "streams_active",
                "blob_transfers_active",
            ),
            0,
        )
        self._counters.update(streams_sent=0, streams_received=0)
        self._hello = self._hello_frame()

    def _hello_frame(self, **extra: Any) -> dict[str, Any]:
        """This node's hello."""
        return {
            "type": "hello",
            "version": PEER_PROTOCOL_VERSION,
            "cluster_id": self.cluster_id,
            "node_id": self.node_id,
            **extra,
        }

    # ------------------------------------------------------------------ public API
    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on the peer address and run the links until cancelled;
        ``task_status.started(port)``."""
        if self.driver == "auto":
            self.driver = "asyncio" if running_on_asyncio() else "anyio"
        host, port = split_address(self.listen)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                if self.driver == "asyncio":
                    await self._listen_asyncio(host, port, task_status)
                else:
                    await self._listen_anyio(host, port, task_status)
            finally:
                self._tg = None

    def _started(self, port: int, task_status: anyio.abc.TaskStatus[int]) -> None:
        """Record the bound port, start the links queued so far, report readiness."""
        self.port = port
        for link in self._links.values():
            self._start_link(link)
        task_status.started(port)

    async def _listen_anyio(
        self, host: str, port: int, task_status: anyio.abc.TaskStatus[int]
    ) -> None:
        """Accept on an anyio listener; each connection gets an anyio TLS stream."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            self._started(listener.extra(anyio.abc.SocketAttribute.local_port), task_status)
            await listener.serve(self._accept_anyio, task_group=self._tg)

    async def _listen_asyncio(
        self, host: str, port: int, task_status: anyio.abc.TaskStatus[int]
    ) -> None:
        """Accept on a plain socket; each connection's TLS runs on asyncio's transport."""
        loop = asyncio.get_running_loop()
        lsock = listen_socket(host, port, _BACKLOG)
        try:
            self._started(lsock.getsockname()[1], task_status)
            while True:
                try:
                    sock, address = await loop.sock_accept(lsock)
                except OSError as exc:  # e.g. out of file descriptors: do not spin
                    log.error("accepting peer connections failed: %s", exc)
                    await anyio.sleep(self.reconnect_max)
                    continue
                assert self._tg is not None
                self._tg.start_soon(self._accept_asyncio, sock, f"{address[0]}:{address[1]}")
        finally:
            lsock.close()

    def send(self, peer_id: str, address: str | None, msg: dict[str, Any]) -> bool:
        """Queue ``msg`` for ``peer_id`` (at ``address``, or its known one); never blocks.

        Returns False when the peer's queue is full and the message was dropped (counted).
        Raises :class:`~aspen.transport.framing.FrameError` if ``msg`` cannot be encoded
        within ``MAX_FRAME_BYTES`` (a bug of the caller: bound what you send).
        """
        link = self._links.get(peer_id)
        if link is None:
            link = self._new_link(peer_id)
        if address is not None and self._addresses.get(peer_id) != address:
            self.update_addresses({peer_id: address})
        return link.enqueue(
            encode_frame(msg, max_frame=self.max_frame), self.queue_messages, self.queue_bytes
        )

    async def send_stream(
        self,
        peer_id: str,
        address: str | None,
        header: dict[str, Any],
        chunks: AsyncIterator[bytes],
        *,
        result_timeout: float = PEER_STREAM_RESULT_TIMEOUT_SECONDS,
    ) -> Any:
        """Stream ``chunks`` to ``peer_id`` over a connection of its own (small messages
        keep flowing on the link); return what the receiver's ``on_stream`` returned.

        Raises ``UnavailableError`` if the peer cannot be reached or the connection
        breaks, the receiver's error if it refused or failed, ``TimeoutError`` (Aspen's) when it
        does not answer within ``result_timeout`` seconds after the last chunk.
        """
        framed = await self._dial_own(peer_id, address, "stream", header, "stream to")
        try:
            result = await StreamSender(framed, peer_id).run(chunks, result_timeout)  # type: ignore[arg-type]
        finally:
            await framed.aclose()
        self._counters["streams_sent"] += 1
        return result

    async def fetch(
        self, peer_id: str, address: str | None, header: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        """Ask ``peer_id`` for the stream ``header`` names (its ``on_fetch`` answers) over a
        connection of its own; yield each chunk as it arrives (TCP paces the sender).

        Raises ``UnavailableError`` if the peer cannot be reached or the stream breaks off,
        the peer's error if it refused or failed.
        """
        framed = await self._dial_own(peer_id, address, "fetch", header, "fetch from")
        try:
            reader = StreamReader(framed, peer_id, self.stream_idle_timeout)  # type: ignore[arg-type]
            async for chunk in reader.chunks():
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await framed.aclose()

    async def _dial_own(
        self, peer_id: str, address: str | None, kind: str, header: dict[str, Any], what: str
    ) -> FramedStream | FrameProtocol:
        """Open a connection of its own to ``peer_id`` (a stream or a fetch); an unreachable
        peer is ``UnavailableError("cannot <what> peer …")``, a refusal is the peer's error."""
        if address is None:
            address = self._addresses.get(peer_id)
        if address is None:
            raise UnavailableError(f"no address known for peer {peer_id}", peer=peer_id)
        try:
            return await self._dial(peer_id, address, kind, header)
        except (UnauthorizedError, InvalidArgumentError, ResourceExhaustedError):
            raise
        except LINK_ERRORS as exc:
            raise UnavailableError(
                f"cannot {what} peer {peer_id} at {address}: {describe_error(exc)}",
                peer=peer_id,
            ) from exc

    def update_addresses(self, addresses: Mapping[str, str]) -> None:
        """Set the peer addresses (``{peer_id: "host:port"}``); a connected link whose
        address changed reconnects. Peers not named keep theirs (see :meth:`remove_peer`)."""
        for peer_id, address in addresses.items():
            if peer_id == self.node_id or self._addresses.get(peer_id) == address:
                continue
            self._addresses[peer_id] = address
            link = self._links.get(peer_id)
            if link is not None:
                link.address_known.set()
                if link.conn_scope is not None:
                    link.conn_scope.cancel()

    def remove_peer(self, peer_id: str) -> None:
        """Forget a peer that left the cluster: drop its queue, close its connections."""
        self._addresses.pop(peer_id, None)
        link = self._links.pop(peer_id, None)
        if link is not None:
            link.task_scope.cancel()
        for scope in self._inbound.pop(peer_id, ()):
            scope.cancel()

    def stats(self) -> dict[str, Any]:
        """Counters: connections, refusals, bad frames, joins, streams, and per peer the
        link state, queue, sent/dropped/received messages and (re)connects."""
        peers: dict[str, dict[str, Any]] = {}
        for peer_id in sorted(set(self._links) | set(self._received)):
            link = self._links.get(peer_id)
            peers[peer_id] = {
                "address": self._addresses.get(peer_id),
                **(link.stats() if link is not None else NO_LINK_STATS),
                "received": self._received.get(peer_id, 0),
            }
        return {"node_id": self.node_id, "port": self.port, **self._counters, "peers": peers}

    # ------------------------------------------------------------------ outbound links
    def _new_link(self, peer_id: str) -> PeerLink:
        """Create the link to ``peer_id`` (its task starts once serving)."""
        link = self._links[peer_id] = PeerLink(peer_id)
        if peer_id in self._addresses:
            link.address_known.set()
        if self._tg is not None:
            self._start_link(link)
        return link

    def _start_link(self, link: PeerLink) -> None:
        """Run the link's task in the transport's task group."""
        if not link.started and self._tg is not None:
            link.started = True
            self._tg.start_soon(self._run_link, link, name=f"peer-link-{link.peer_id}")

    async def _run_link(self, link: PeerLink) -> None:
        """Connect when there is something to send, pump frames, reconnect with backoff."""
        delay = self.reconnect_min
        with link.task_scope:
            while True:
                while not link.queue:
                    link.wake = anyio.Event()
                    await link.wake.wait()
                address = self._addresses.get(link.peer_id)
                if address is None:
                    link.last_error = "no address known"
                    link.address_known = anyio.Event()
                    await link.address_known.wait()
                    continue
                try:
                    framed = await self._dial(link.peer_id, address, "messages")
                except (*LINK_ERRORS, ValueError) as exc:  # type: ignore[misc]
                    self._link_failed(link, address, exc)
                    await anyio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                delay = self.reconnect_min
                link.connects += 1
                level = logging.INFO if link.failing or link.connects > 1 else logging.DEBUG
                log.log(level, "link to peer %s at %s is up", link.peer_id, address)
                link.failing = False
                reason = await link.pump(framed)
                link.last_error = reason
                log.info("link to peer %s at %s lost: %s", link.peer_id, address, reason)

    def _link_failed(self, link: PeerLink, address: str, exc: BaseException) -> None:
        """Count a failed connect; log the first of a series at warning level."""
        link.failures += 1
        link.last_error = describe_error(exc)
        level = logging.DEBUG if link.failing else logging.WARNING
        link.failing = True
        log.log(level, "cannot reach peer %s at %s: %s", link.peer_id, address, link.last_error)

    async def _dial(
        self, peer_id: str, address: str, kind: str, header: dict[str, Any] | None = None
    ) -> FramedStream | FrameProtocol:
        """Connect to ``peer_id`` at ``address``, check its certificate is that node's,
        and exchange hellos; return the open stream."""
        host, port = split_address(address)
        framed: FramedStream | FrameProtocol
        if self.driver == "asyncio" or (self.driver == "auto" and running_on_asyncio()):
            framed = await connect_tls(
                host,
                port,
                self._client_ctx,
                connect_timeout=PEER_CONNECT_TIMEOUT_SECONDS,
                handshake_timeout=self.handshake_timeout,
                max_frame=self.max_frame,
            )
        else:
            tls = await open_tls(
                host,
                port,
                self._client_ctx,
                connect_timeout=PEER_CONNECT_TIMEOUT_SECONDS,
                handshake_timeout=self.handshake_timeout,
            )
            framed = FramedStream(tls, self.max_frame)
        try:
            actual = peer_node_id(framed.ssl_object)
            if actual != peer_id:
                raise UnauthorizedError(f"{address} is node {actual}, not {peer_id}")
            hello = self._hello_frame(kind=kind)
            if header is not None:
                hello["header"] = header
            with anyio.fail_after(self.handshake_timeout):
                await framed.send(hello)
                try:
                    reply = await framed.recv()
                except anyio.EndOfStream:
                    raise UnavailableError(
                        f"{address} closed the connection during the hello "
                        "(did it refuse our certificate? see its log)"
                    ) from None
            answer = parse_hello(reply, _VERSIONS)
            if type(answer) is ConnectionFailed:
                raise answer.error
            if answer.fields.get("cluster_id") != self.cluster_id:  # type: ignore[union-attr]
                raise UnauthorizedError(f"{address} did not answer with this cluster's hello")
        except BaseException:
            await framed.aclose()
            raise
        return framed

    # ------------------------------------------------------------------ inbound
    async def _accept_anyio(self, sock: anyio.abc.SocketStream) -> None:
        """Serve one connection accepted by the anyio listener."""
        try:
            host, port = sock.extra(anyio.abc.SocketAttribute.remote_address)[:2]  # type: ignore[str-unpack]
            remote = f"{host}:{port}"
        except Exception:
            remote = "?"

        async def handshake() -> FramedStream:
            tune_peer_socket(sock.extra(anyio.abc.SocketAttribute.raw_socket, None))
            tls = await wrap_tls(sock, self._server_ctx, server_side=True)
            return FramedStream(tls, self.max_frame)

        try:
            await self._serve_inbound(remote, handshake)
        finally:
            await anyio.aclose_forcefully(sock)

    async def _accept_asyncio(self, sock: socket.socket, remote: str) -> None:
        """Serve one connection accepted by the asyncio listener."""
        proto: FrameProtocol | None = None

        async def handshake() -> FrameProtocol:
            nonlocal proto
            proto = await accept_tls(
                sock,
                self._server_ctx,
                handshake_timeout=self.handshake_timeout,
                max_frame=self.max_frame,
            )
            return proto

        try:
            await self._serve_inbound(remote, handshake)
        finally:
            if proto is None:
                sock.close()  # refused before TLS was up (closing twice is harmless)

    def _refuse(self, remote: str, reason: str) -> None:
        """Count and log a refused inbound connection."""
        self._counters["refused"] += 1
        log.warning("refused peer connection from %s: %s", remote, reason)

    async def _serve_inbound(
        self, remote: str, handshake: Callable[[], Awaitable[FramedStream | FrameProtocol]]
    ) -> None:
        """Bound, handshake, hello, then serve one inbound connection; never raises."""
        counters = self._counters
        if counters["connections"] >= self.max_connections:
            self._refuse(remote, f"too many peer connections ({self.max_connections})")
            return
        counters["connections"] += 1
        framed: FramedStream | FrameProtocol | None = None
        try:
            try:
                with anyio.fail_after(self.handshake_timeout):
                    framed = await handshake()
                    peer_id = peer_node_id(framed.ssl_object)
                    hello = await framed.recv()
            except LINK_ERRORS as exc:
                self._refuse(remote, describe_error(exc))
                return
            await self._serve_hello(framed, peer_id, hello, remote)
        except LINK_ERRORS as exc:
            log.debug("peer connection from %s closed: %s", remote, describe_error(exc))
        except Exception as exc:  # a bug here must not take the listener down
            log.error("peer connection from %s failed", remote, exc_info=exc)
        finally:
            counters["connections"] -= 1
            if framed is not None:
                await framed.aclose()

    async def _serve_hello(
        self,
        framed: FramedStream | FrameProtocol,
        peer_id: str | None,
        hello: dict[str, Any],
        remote: str,
    ) -> None:
        """Answer the hello, then serve a link, a stream, or a join."""
        if peer_id is None:
            await self._serve_certless(framed, hello, remote)
            return
        try:
            kind = self._check_hello(peer_id, hello)
        except AspenError as exc:
            reason = exc.message if peer_id in exc.message else f"{exc.message} ({peer_id})"
            self._refuse(remote, reason)
            with anyio.move_on_after(self.handshake_timeout):
                await framed.send(error_frame(exc))
            return
        await framed.send(self._hello)
        if kind == "stream":
            await self._receive_stream(peer_id, framed, hello.get("header") or {})
        elif kind == "fetch":
            await self._serve_fetch(peer_id, framed, hello.get("header") or {})
        else:
            await self._receive_messages(peer_id, framed, remote)

    def _check_hello(self, peer_id: str, hello: dict[str, Any]) -> str:
        """Validate a certified peer's hello; return its kind or raise why it is refused."""
        if type(parse_hello(hello, _VERSIONS)) is not Hello:
            raise InvalidArgumentError("expected a peer hello, not an error frame")
        if hello.get("cluster_id") != self.cluster_id:
            raise UnauthorizedError(
                f"cluster {hello.get('cluster_id')!r} is not this node's ({self.cluster_id})"
            )
        if hello.get("node_id") != peer_id:
            raise UnauthorizedError(
                f"the hello names node {hello.get('node_id')!r} but the certificate is {peer_id}"
            )
        kind = hello.get("kind")
        if kind not in _KINDS:
            raise InvalidArgumentError(f"unknown connection kind {kind!r}")
        try:
            member = self._is_member(peer_id)
        except Exception as exc:
            log.error("is_member(%s) failed", peer_id, exc_info=exc)
            member = False
        if not member:
            raise UnauthorizedError(f"node {peer_id} is not a member of this cluster")
        if kind == "fetch" and self._on_fetch is None:
            raise UnavailableError("this node does not serve fetches")
        if kind == "stream" and self._on_stream is None:
            raise UnavailableError("this node does not accept peer streams")
        if kind != "messages":
            counter, bound, name = self._stream_bound(kind, hello.get("header"))
            if self._counters[counter] >= bound:
                raise ResourceExhaustedError(
                    f"too many {kind}s at once ({name} = {bound})", limit=bound
                )
        return kind

    def _stream_bound(self, kind: str, header: object) -> tuple[str, int, str]:
        """The counter and bound of a stream or fetch: blob transfers (fetches, and streams
        whose header says ``"kind": "blob"`` or ``"blob-call"``) count apart from snapshots."""
        blob = kind == "fetch" or (
            isinstance(header, dict) and header.get("kind") in ("blob", "blob-call")
        )
        if blob:
            return "blob_transfers_active", MAX_PEER_BLOB_TRANSFERS, "MAX_PEER_BLOB_TRANSFERS"
        return "streams_active", self.max_streams, "MAX_PEER_STREAMS"

    async def _serve_certless(
        self, framed: FramedStream | FrameProtocol, hello: dict[str, Any], remote: str
    ) -> None:
        """A connection without a certificate: a join, or refused."""
        if hello.get("type") != "join" or self._on_join is None:
            what = "a join" if hello.get("type") == "join" else "anything but a join"
            exc = UnauthorizedError(
                "peer connections need a certificate issued by the cluster CA "
                f"(a connection without one may not send {what} here)"
            )
            self._refuse(remote, "no client certificate")
            await framed.send(error_frame(exc))
            return
        self._counters["joins"] += 1
        try:
            reply = await self._on_join(hello, remote)
        except AspenError as exc:
            reply = error_frame(exc)
        except Exception as exc:
            log.error("join request from %s failed", remote, exc_info=exc)
            reply = error_frame(InternalError("the join failed on this member (see its log)"))
        with anyio.move_on_after(self.handshake_timeout):
            await framed.send(reply)

    async def _receive_messages(
        self, peer_id: str, framed: FramedStream | FrameProtocol, remote: str
    ) -> None:
        """Deliver every frame of an inbound link to ``on_message`` until it closes."""
        scopes = self._inbound.setdefault(peer_id, set())
        on_message = self._on_message
        received = self._received
        received.setdefault(peer_id, 0)

        def deliver(frame: dict[str, Any]) -> None:
            received[peer_id] += 1
            try:
                on_message(peer_id, frame)
            except Exception as exc:
                log.error("on_message for peer %s failed", peer_id, exc_info=exc)

        with anyio.CancelScope() as scope:
            scopes.add(scope)
            try:
                await framed.deliver(deliver)
            except FrameError as exc:
                self._counters["bad_frames"] += 1
                log.warning("closing link from peer %s (%s): %s", peer_id, remote, exc.message)
            except LINK_ERRORS as exc:
                log.info("link from peer %s (%s) closed: %s", peer_id, remote, describe_error(exc))
            finally:
                scopes.discard(scope)

    async def _receive_stream(
        self, peer_id: str, framed: FramedStream | FrameProtocol, header: dict[str, Any]
    ) -> None:
        """Hand an inbound stream to ``on_stream`` and answer with its result."""
        assert self._on_stream is not None
        counters = self._counters
        counter = self._stream_bound("stream", header)[0]
        counters[counter] += 1
        reader = StreamReader(framed, peer_id, self.stream_idle_timeout)  # type: ignore[arg-type]
        try:
            result = await self._on_stream(peer_id, header, reader.chunks())
            reply = {"type": "result", "result": result}
            counters["streams_received"] += 1
        except AspenError as exc:
            reply = error_frame(exc)
        except Exception as exc:
            log.error("on_stream for peer %s failed", peer_id, exc_info=exc)
            reply = error_frame(InternalError(f"receiving the stream failed: {exc}"))
        finally:
            counters[counter] -= 1
        if not reader.broken:
            with anyio.move_on_after(self.handshake_timeout):
                await framed.send(reply)

    async def _serve_fetch(
        self, peer_id: str, framed: FramedStream | FrameProtocol, header: dict[str, Any]
    ) -> None:
        """Answer a fetch: ``on_fetch``'s chunks, then ``end`` (or an error frame)."""
        assert self._on_fetch is not None
        counters = self._counters
        counters["blob_transfers_active"] += 1
        chunks = self._on_fetch(peer_id, header)
        try:
            async for chunk in chunks:
                await framed.send({"chunk": chunk})
            await framed.send({"end": True})
        except AspenError as exc:
            await framed.send(error_frame(exc))
        except LINK_ERRORS:
            raise
        except Exception as exc:
            log.error("on_fetch for peer %s failed", peer_id, exc_info=exc)
            await framed.send(error_frame(InternalError(f"serving the fetch failed: {exc}")))
        finally:
            counters["blob_transfers_active"] -= 1
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
