"""Issue 9, client connections, against a real node (real LMDB, real sockets): replies
that are not read slow their connection down instead of filling the node's memory, a fast
pipelining client is paced instead of disconnected, watches per connection are bounded,
and the small client fixes (value size named before framing, a forgotten sync client does
not hang the interpreter at exit)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import pytest

import aspen
from aspen import errors
from aspen.limits import MAX_VALUE_BYTES, MAX_WATCHES_PER_CONNECTION
from aspen.node.runner import NodeThread
from aspen.testing import wait_for
from aspen.testing.rawclient import RawSocketClient

#: Three values of this size under ``big/``: one ``kv.range big/`` reply is cut at
#: MAX_RANGE_PAGE_BYTES, two values (about 2 MB), with ``more``.
BIG_VALUE = 1_000_000


def test_unread_big_replies_pause_that_connection_only(running_node: NodeThread) -> None:
    # the issue: 1,500 pipelined 3 MB kv.range replies never read took the node to 8.8 GB
    # and stopped new handshakes; scaled down, the shape is the same
    with aspen.connect(running_node.endpoint, token=running_node.token) as c:
        for i in range(3):
            c.kv.put(f"big/{i}", os.urandom(BIG_VALUE))
    n = 150
    request = {"method": "kv.range", "params": {"key": b"big/", "end": b"big0"}}
    raw = RawSocketClient(running_node.endpoint, running_node.token)
    try:
        raw.send_frames([{"id": i + 1, **request} for i in range(n)])
        server = running_node.node.parts.server
        wait_for(lambda: server.stats()["connections_paused"] == 1, timeout=60)
        # the node goes on serving everyone else: writes and new handshakes
        with aspen.connect(running_node.endpoint, token=running_node.token) as other:
            for i in range(20):
                other.kv.put("small", str(i))
            assert other.kv.get("small").value == b"19"
        assert server.stats()["connections_paused"] == 1
        # and every held request is answered once the client reads
        frames = raw.recv_frames(n)
        assert sorted(f["id"] for f in frames) == list(range(1, n + 1))
        assert all(len(f["result"]["kvs"]) == 2 and f["result"]["more"] for f in frames)
    finally:
        raw.close()


def test_20k_gathered_gets_on_one_client_all_succeed(running_node: NodeThread) -> None:
    # the issue: 20k gathered gets on one AsyncClient -> connection reset, 15-20k failures
    async def main() -> list[Any]:
        async with aspen.aconnect(running_node.endpoint, token=running_node.token) as c:
            await c.kv.put("g", "v")
            gets = (c.kv.get("g") for _ in range(20_000))
            return await asyncio.gather(*gets, return_exceptions=True)

    results = asyncio.run(main())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert all(r.value == b"v" for r in results)


def test_watches_per_connection_are_bounded(running_node: NodeThread) -> None:
    async def main() -> None:
        async with (
            aspen.aconnect(running_node.endpoint, token=running_node.token) as c,
            AsyncExitStack() as stack,
        ):
            watches = [
                await stack.enter_async_context(c.watch(f"w/{i}"))
                for i in range(MAX_WATCHES_PER_CONNECTION)
            ]
            with pytest.raises(errors.ResourceExhaustedError, match="MAX_WATCHES_PER_CONNECTION"):
                async with c.watch("one-too-many"):
                    pass
            await watches[0].aclose()  # a cancelled watch frees its place
            wait_for_watch = c.watch("w/again")
            async with wait_for_watch:
                pass
            await c.kv.put("w/1", "x")  # the others still work
            async for response in watches[1]:
                assert [e.kv.value for e in response.events] == [b"x"]
                break

    asyncio.run(main())


def test_value_over_max_value_bytes_is_refused_naming_it(running_node: NodeThread) -> None:
    with aspen.connect(running_node.endpoint, token=running_node.token) as c:
        with pytest.raises(errors.InvalidArgumentError, match="MAX_VALUE_BYTES") as info:
            c.kv.put("k", b"x" * (10 * 1024 * 1024))
        assert info.value.details["limit"] == MAX_VALUE_BYTES
        assert "MAX_FRAME_BYTES" not in info.value.message
        c.kv.put("k", b"x" * MAX_VALUE_BYTES)  # the bound itself is fine


def test_unclosed_sync_client_does_not_hang_the_interpreter(running_node: NodeThread) -> None:
    script = (
        "import sys, aspen\n"
        "c = aspen.connect(sys.argv[1], token=sys.argv[2])\n"
        "c.kv.put('exit', 'ok')\n"
        "print('done', flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, running_node.endpoint, running_node.token],
        capture_output=True,
        text=True,
        timeout=60,  # hung forever before the fix
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
