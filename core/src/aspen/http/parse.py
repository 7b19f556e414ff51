"""A strict, sans-IO HTTP/1.1 request parser: a request head and chunked bodies, as bytes.

No sockets, no clock: :func:`parse_head` turns one complete header block (the bytes before
the blank line) into a :class:`RequestHead`, and :class:`ChunkedDecoder` turns the bytes
of a ``Transfer-Encoding: chunked`` body into its data. Anything off the grammar raises
:class:`MalformedRequest` (answered 400 by the listener; ``status`` 501 for a transfer
coding other than chunked). It accepts any method that is an RFC 9110 token, so
extension methods such as Vault's ``LIST`` reach the app.

What it refuses, on purpose (request smuggling and ambiguity): obsolete line folding,
bare CR or LF, control bytes, a request target that is not visible ASCII, a header name
that is not a token or has space before its colon, both ``Content-Length`` and
``Transfer-Encoding`` (or two different lengths), ``Transfer-Encoding`` on HTTP/1.0, and
an HTTP/1.1 request without exactly one ``Host``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ChunkedDecoder", "MalformedRequest", "RequestHead", "parse_head"]

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])")
_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
#: Control bytes other than HTAB, CR and LF (CR and LF are checked to come in pairs).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Longest chunk-size line (size and extensions) a chunked body may have.
_MAX_CHUNK_LINE = 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


class MalformedRequest(Exception):
    """The bytes are not a request this parser accepts; ``status`` is the answer's."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(slots=True)
class RequestHead:
    """One parsed request line and header block."""

    method: str
    #: The target's path, still percent-encoded, and its query (without ``?``).
    raw_path: bytes
    query: bytes
    #: ``"1.1"`` or ``"1.0"``.
    version: str
    #: ``(lower-case name, value)`` in the order received.
    headers: list[tuple[bytes, bytes]]
    #: Declared body length (``None``: no ``Content-Length``).
    content_length: int | None
    chunked: bool
    #: Whether the client allows the connection to be reused after this request.
    keep_alive: bool
    #: ``Expect: 100-continue``: the client waits for an interim answer before its body.
    expect_continue: bool


def parse_head(block: bytes) -> RequestHead:
    """Parse a request line and its headers (``block``: everything before the blank
    line, without it); raises :class:`MalformedRequest`."""
    crlf = block.count(b"\r\n")
    if _CONTROL.search(block) or block.count(b"\r") != crlf or block.count(b"\n") != crlf:
        raise MalformedRequest("control bytes, or a bare CR or LF, in the request head")
    lines = block.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise MalformedRequest("malformed request line")
    method, target, minor = match.groups()
    if not target.startswith(b"/"):
        raise MalformedRequest("the request target must be a path (origin form)")
    raw_path, _, query = target.partition(b"?")
    headers: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    transfer_encoding: bytes | None = None
    connection = b""
    hosts = 0
    expect_continue = False
    for line in lines[1:]:
        found = _HEADER.fullmatch(line)
        if found is None:
            raise MalformedRequest("malformed header line")
        name = found[1].lower()
        value = found[2]
        headers.append((name, value))
        if name == b"content-length":
            if not value.isdigit():
                raise MalformedRequest("Content-Length is not a number")
            if content_length is not None and content_length != int(value):
                raise MalformedRequest("two different Content-Length headers")
            content_length = int(value)
        elif name == b"transfer-encoding":
            if transfer_encoding is not None:
                raise MalformedRequest("more than one Transfer-Encoding header")
            transfer_encoding = value.lower()
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            connection += b"," + value.lower()
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
    version = "1.1" if minor == b"1" else "1.0"
    if version == "1.1" and hosts != 1:
        raise MalformedRequest("an HTTP/1.1 request needs exactly one Host header")
    chunked = False
    if transfer_encoding is not None:
        if content_length is not None or version == "1.0":
            raise MalformedRequest("Transfer-Encoding with Content-Length or on HTTP/1.0")
        if transfer_encoding != b"chunked":
            raise MalformedRequest("only the chunked transfer coding is supported", 501)
        chunked = True
    tokens = {t.strip() for t in connection.split(b",")}
    keep_alive = b"keep-alive" in tokens if version == "1.0" else b"close" not in tokens
    return RequestHead(
        method=method.decode("ascii"),
        raw_path=raw_path,
        query=query,
        version=version,
        headers=headers,
        content_length=content_length,
        chunked=chunked,
        keep_alive=keep_alive,
        expect_continue=expect_continue,
    )


class ChunkedDecoder:
    """Decodes a chunked body fed in pieces: :meth:`feed` returns the data decoded so far
    and whether the body (last chunk and trailers) is complete; bytes past the body's end
    are kept in :attr:`rest`. Trailers are read and dropped, bounded by ``max_trailer``."""

    def __init__(self, max_trailer: int) -> None:
        self.max_trailer = max_trailer
        self.done = False
        #: Bytes received after the body's end (the next pipelined request).
        self.rest = b""
        self._buffer = bytearray()
        self._remaining = 0  # data bytes left in the current chunk
        self._after_data = False  # the CRLF after a chunk's data is due
        self._trailers = False

    def feed(self, data: bytes) -> bytes:
        """Decode ``data``; returns the body bytes it completed (raises
        :class:`MalformedRequest`)."""
        buf = self._buffer
        buf += data
        out = bytearray()
        while not self.done:
            if self._remaining:
                take = min(self._remaining, len(buf))
                if not take:
                    break
                out += buf[:take]
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    break
                self._after_data = True
            if self._after_data:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise MalformedRequest("chunk data not followed by CRLF")
                del buf[:2]
                self._after_data = False
            if self._trailers:
                if not self._read_trailers():
                    break
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_CHUNK_LINE:
                    raise MalformedRequest("chunk size line too long")
                break
            size = bytes(buf[:end]).partition(b";")[0].strip(b" \t")
            if not size or len(size) > 16 or not _HEX.issuperset(size):
                raise MalformedRequest("malformed chunk size")
            del buf[: end + 2]
            self._remaining = int(size, 16)
            if not self._remaining:
                self._trailers = True
        return bytes(out)

    def _read_trailers(self) -> bool:
        """Skip trailer lines up to the blank line; ``True`` once the body is complete."""
        buf = self._buffer
        if buf[:2] == b"\r\n":
            end = 0
        else:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_trailer:
                    raise MalformedRequest("chunked trailers too long")
                return False
            end += 2
        self.rest = bytes(buf[end + 2 :])
        buf.clear()
        self.done = True
        return True
