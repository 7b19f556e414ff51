"""A blocking client socket that speaks frames and nothing else: for tests and benchmarks
that need to misbehave (pipeline requests, never read) where the real client would not."""

from __future__ import annotations

import socket
from typing import Any

from aspen.client.connection import PROTOCOL_VERSION, _tls_context, parse_endpoint
from aspen.transport.framing import FrameDecoder, encode_frame
from aspen.transport.tokens import parse_cluster_token

__all__ = ["RawSocketClient"]


class RawSocketClient:
    """A connected socket (TLS for a cluster token) that said hello; read nothing else
    unless :meth:`recv_frames` is called."""

    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0) -> None:
        host, port = parse_endpoint(endpoint)
        sock = socket.create_connection((host, port), timeout=timeout)
        if parse_cluster_token(token) is not None:
            sock = _tls_context().wrap_socket(sock)
        self.sock = sock
        self.decoder = FrameDecoder()
        self.pending: list[dict[str, Any]] = []
        self.send_frames([{"type": "hello", "version": PROTOCOL_VERSION, "token": token}])
        (hello,) = self.recv_frames(1)
        if hello.get("type") != "hello":
            raise ConnectionError(f"hello refused: {hello!r}")

    def send_frames(self, frames: list[dict[str, Any]]) -> None:
        """Send ``frames`` in one write."""
        self.sock.sendall(b"".join(encode_frame(f) for f in frames))

    def recv_frames(self, n: int) -> list[dict[str, Any]]:
        """Read until ``n`` frames have arrived; return the next ``n``."""
        frames = self.pending
        while len(frames) < n:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"connection closed after {len(frames)} of {n} frames")
            frames.extend(self.decoder.feed(data))
        self.pending = frames[n:]
        return frames[:n]

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
