"""The hardened HTTP listener (:mod:`aspen.http`) on real sockets: slowloris headers and
trickled bodies are cut off, the connection cap refuses beyond it, idle kept-alive
connections close, oversized and malformed requests get JSON errors in the plugin's shape.
Short bounds keep the tests quick; every wait has a deadline."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from aspen.http import HttpLimits, HttpServer
from aspen.testing import wait_for

#: Seconds any single socket read may block before the test fails.
READ_DEADLINE = 10.0


def shape(status: int, message: str) -> dict[str, Any]:
    """The plugin's error shape used by these tests."""
    return {"problem": {"status": status, "message": message}}


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with the number of body bytes it read."""
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"read": size}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def listener(app: Any = echo_app, **bounds: Any) -> Iterator[tuple[tuple[str, int], HttpServer]]:
    """Serve ``app`` with ``bounds`` on a free port; yields ``((host, port), server)``."""
    server = HttpServer(
        app, "127.0.0.1:0", name="test", error_body=shape, limits=HttpLimits(**bounds)
    )
    host, _, port = server.bind().rpartition(":")
    with start_blocking_portal() as portal:
        done = portal.start_task_soon(server.serve)
        try:
            yield (host, int(port)), server
        finally:
            portal.call(server.stop)
            done.result(timeout=READ_DEADLINE)


def connect(address: tuple[str, int]) -> socket.socket:
    """A blocking socket to ``address`` whose reads fail after READ_DEADLINE."""
    return socket.create_connection(address, timeout=READ_DEADLINE)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """``(status, headers, JSON body)`` of one HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def test_slowloris_headers_get_408_and_close() -> None:
    with listener(header_timeout=0.5, max_connections=100) as (address, _):
        socks = [connect(address) for _ in range(30)]
        for i, sock in enumerate(socks):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            if i % 2:
                sock.sendall(b"X-Slow: 1\r\n")  # still trickling
        for sock in socks:
            status, headers, body = parse(read_to_close(sock))
            assert status == 408 and headers["connection"] == "close"
            assert "HTTP_HEADER_TIMEOUT_SECONDS" in body["problem"]["message"]
            sock.close()
        silent = connect(address)  # a connection that never sends a byte is cut off too
        assert parse(read_to_close(silent))[0] == 408
        silent.close()
        ok = connect(address)
        ok.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert parse(read_to_close(ok))[:1] == (200,)
        ok.close()


def test_connection_cap_refuses_beyond_it_with_json_503() -> None:
    with listener(max_connections=3, header_timeout=30) as (address, _):
        held = [connect(address) for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # admitted: headers pending
        extra = connect(address)
        status, headers, body = parse(read_to_close(extra))
        assert status == 503 and headers["content-type"] == "application/json"
        assert "HTTP_MAX_CONNECTIONS" in body["problem"]["message"]
        extra.close()
        held.pop().close()  # a slot frees up: the next connection is served

        def served() -> bool:
            sock = connect(address)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            sock.shutdown(socket.SHUT_WR)
            with sock:
                return parse(read_to_close(sock))[0] == 200

        wait_for(served, timeout=READ_DEADLINE, message="a freed slot admits a connection")
        for sock in held:
            sock.close()


def test_malformed_http_and_big_headers_get_json_errors() -> None:
    with listener(max_header_bytes=4096) as (address, server):
        sock = connect(address)
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, _, body = parse(read_to_close(sock))
        assert status == 400 and body == {
            "problem": {"status": 400, "message": "malformed HTTP request"}
        }
        sock.close()
        sock = connect(address)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        status, _, body = parse(read_to_close(sock))
        assert status == 431 and "HTTP_MAX_HEADER_BYTES" in body["problem"]["message"]
        sock.close()
        held = connect(address)  # answered 400, then held open by the client
        held.sendall(b"NOT HTTP\r\n\r\n")
        assert parse(read_to_close(held))[0] == 400  # the node half-closed it
        wait_for(
            lambda: server.stats()["connections"] == 0,
            timeout=READ_DEADLINE,
            message="the node closes a lingering connection the client keeps open",
        )
        held.close()


def test_slow_and_big_bodies() -> None:
    with listener(body_timeout=0.5, min_body_rate=1_000_000, max_body_bytes=1000) as (address, _):
        slow = connect(address)
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"x" * 10)
        status, _, body = parse(read_to_close(slow))
        assert status == 408 and "HTTP_MIN_BODY_BYTES_PER_SECOND" in body["problem"]["message"]
        slow.close()

        declared = connect(address)
        declared.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, _, body = parse(read_to_close(declared))
        assert status == 413 and "HTTP_MAX_BODY_BYTES (1000 bytes)" in body["problem"]["message"]
        declared.close()

        chunked = connect(address)
        chunk = b"x" * 600
        chunked.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
            + b"0\r\n\r\n"
        )
        status, _, body = parse(read_to_close(chunked))
        assert status == 413
        chunked.close()


def test_idle_keep_alive_connection_closes() -> None:
    with listener(idle_timeout=0.3) as (address, _):
        sock = connect(address)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_to_close(sock)  # answered, then closed once idle
        assert parse(raw)[0] == 200
        sock.close()


def test_stop_with_a_lingering_and_a_half_sent_connection() -> None:
    with listener() as (address, _):
        answered = connect(address)
        answered.sendall(b"NOT HTTP\r\n\r\n")
        assert answered.recv(65536).startswith(b"HTTP/1.1 400")  # now lingering
        half = connect(address)
        half.sendall(b"GET / HTTP/1.1\r\n")
    # the listener stopped (the context manager waited for it) with both still open
    assert read_to_close(half) == b""
    answered.close()
    half.close()


async def method_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``<method> <path> <body>`` in parts (no length: the listener frames it);
    ``/fail`` raises before answering, ``/early`` answers before reading the body,
    ``/split`` sends a header with a line break."""
    if scope["path"] == "/fail":
        raise RuntimeError("the app failed")
    if scope["path"] == "/split":  # a header value that would split the response
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb: c")]}
        )
        return
    if scope["path"] == "/early":  # answers without reading the body
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"early"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (scope["method"].encode(), b" ", scope["path"].encode(), b" ", body):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response (Content-Length or chunked) off a kept-alive connection."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode().split("\r\n")
    del buffer[: end + 4]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buffer) < size:
            buffer += sock.recv(65536)
        body = bytes(buffer[:size])
        del buffer[:size]
        return int(lines[0].split()[1]), headers, body
    assert headers["transfer-encoding"] == "chunked"
    body = b""
    while True:
        while b"\r\n" not in buffer:
            buffer += sock.recv(65536)
        line_end = buffer.index(b"\r\n")
        size = int(buffer[:line_end], 16)
        while len(buffer) < line_end + 2 + size + 2:
            buffer += sock.recv(65536)
        body += buffer[line_end + 2 : line_end + 2 + size]
        del buffer[: line_end + 2 + size + 2]
        if not size:
            return int(lines[0].split()[1]), headers, body


def test_extension_methods_pipelining_and_chunked_bodies() -> None:
    with listener(method_app) as (address, _):
        sock = connect(address)
        sock.sendall(
            b"LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        buffer = bytearray()
        assert read_response(sock, buffer)[::2] == (200, b"LIST /v1/secret/metadata/ ")
        assert read_response(sock, buffer)[::2] == (200, b"POST /a abcde")
        while b"\r\n\r\n" not in buffer:  # HEAD: headers only, whatever they announce
            buffer += sock.recv(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and not rest.startswith(b"HEAD")
        buffer[:] = rest
        status, headers, body = read_response(sock, buffer)
        assert (status, body, headers["connection"]) == (200, b"PUT /b ok", "close")
        assert read_to_close(sock) == b"" and not buffer
        sock.close()


def test_expect_continue_gets_an_interim_answer() -> None:
    with listener(method_app) as (address, _):
        sock = connect(address)
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        assert read_response(sock, bytearray())[::2] == (200, b"POST /c body")
        sock.close()


@pytest.mark.parametrize("path", ["/fail", "/split"])
def test_an_app_failure_is_a_json_500_in_the_plugins_shape(path: str) -> None:
    with listener(method_app) as (address, _):
        sock = connect(address)
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        status, _, body = parse(read_to_close(sock))
        assert status == 500 and body == {"problem": {"status": 500, "message": "internal error"}}
        sock.close()


def test_http_1_0_gets_its_answer_and_a_close() -> None:
    with listener(method_app) as (address, _):
        sock = connect(address)
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        raw = read_to_close(sock)  # no chunked coding for 1.0: the body ends with the connection
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head
        assert body == b"GET /old "
        sock.close()


def test_an_answer_before_the_body_keeps_the_connection() -> None:
    with listener(method_app) as (address, _):
        sock = connect(address)
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        assert (status, body) == (400, b"early") and "connection" not in headers
        sock.sendall(b"hello")  # the rest of the first body: read and dropped
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer)[::2] == (200, b"GET /next ")
        sock.close()


def test_a_cancelled_listener_closes_its_connections() -> None:
    server = HttpServer(echo_app, "127.0.0.1:0", name="test", limits=HttpLimits(idle_timeout=60))
    host, _, port = server.bind().rpartition(":")
    with start_blocking_portal() as portal:
        serving = portal.start_task_soon(server.serve)
        sock = connect((host, int(port)))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, bytearray())[0] == 200  # answered and kept alive
        serving.cancel()  # the node cancels its tasks: no connection may stay open
        assert read_to_close(sock) == b""
        sock.close()
