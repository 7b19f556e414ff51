"""The listener's sans-IO HTTP/1.1 request parser (:mod:`aspen.http.parse`), bytes only:
extension methods such as Vault's ``LIST`` are accepted, ambiguous framing (request
smuggling) is refused, chunked bodies decode however they are split."""

from __future__ import annotations

import pytest

from aspen.http.parse import ChunkedDecoder, MalformedRequest, parse_head


def test_extension_methods_and_the_target_are_parsed() -> None:
    head = parse_head(b"LIST /v1/secret/metadata/?x=1&y= HTTP/1.1\r\nHost: a\r\nX-A:  b ")
    assert head.method == "LIST"
    assert (head.raw_path, head.query, head.version) == (b"/v1/secret/metadata/", b"x=1&y=", "1.1")
    assert head.headers == [(b"host", b"a"), (b"x-a", b"b")]
    assert head.keep_alive and head.content_length is None and not head.chunked
    assert parse_head(b"PROPFIND / HTTP/1.1\r\nHost: a").method == "PROPFIND"


def test_connection_and_version_decide_keep_alive() -> None:
    assert not parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close").keep_alive
    assert not parse_head(b"GET / HTTP/1.0").keep_alive
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive").keep_alive


def test_body_framing_headers() -> None:
    head = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12")
    assert head.content_length == 12
    head = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked")
    assert head.chunked
    head = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1")
    assert head.expect_continue


@pytest.mark.parametrize(
    "block",
    [
        b"NOT HTTP",
        b"GET / HTTP/2.0\r\nHost: a",
        b"GET  / HTTP/1.1\r\nHost: a",
        b"G(T / HTTP/1.1\r\nHost: a",
        b"GET http://a/ HTTP/1.1\r\nHost: a",  # only origin-form targets
        b"GET /\xff HTTP/1.1\r\nHost: a",  # the target must be visible ASCII
        b"GET / HTTP/1.1",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b",
        b"GET / HTTP/1.1\r\nHost a",  # header without a colon
        b"GET / HTTP/1.1\r\nHost : a",  # space before the colon
        b"GET / HTTP/1.1\r\nHost: a\r\n folded",  # obsolete line folding
        b"GET / HTTP/1.1\r\nHost: a\nX: b",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\rX: b",  # bare CR
        b"GET / HTTP/1.1\r\nHost: a\x00",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked",
    ],
)
def test_malformed_or_ambiguous_heads_are_refused(block: bytes) -> None:
    with pytest.raises(MalformedRequest) as caught:
        parse_head(block)
    assert caught.value.status == 400


def test_unknown_transfer_coding_is_501() -> None:
    with pytest.raises(MalformedRequest) as caught:
        parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked")
    assert caught.value.status == 501


BODY = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"


def test_chunked_body_decodes_in_one_piece() -> None:
    decoder = ChunkedDecoder(max_trailer=100)
    assert decoder.feed(BODY) == b"hello world"
    assert decoder.done and decoder.rest == b"NEXT"


def test_chunked_body_decodes_byte_by_byte() -> None:
    decoder = ChunkedDecoder(max_trailer=100)
    out = b"".join(decoder.feed(BODY[i : i + 1]) for i in range(len(BODY) - 4))
    assert out == b"hello world" and decoder.done and decoder.rest == b""


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",  # not hex
        b"\r\n",  # no size
        b"5\r\nhelloXX",  # data not followed by CRLF
        b"1" * 2000,  # a size line without end
        b"11111111111111111\r\n",  # over 16 hex digits
    ],
)
def test_malformed_chunked_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        ChunkedDecoder(max_trailer=100).feed(body)


def test_chunked_trailers_are_bounded() -> None:
    decoder = ChunkedDecoder(max_trailer=100)
    with pytest.raises(MalformedRequest, match="trailers"):
        decoder.feed(b"0\r\n" + b"X: " + b"y" * 200)
