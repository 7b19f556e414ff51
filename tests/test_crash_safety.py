"""kill -9 at any moment loses no acknowledged write and leaves a store that opens."""

from __future__ import annotations

import random
import threading
import time

import pytest

import aspen
from aspen.errors import AspenError

#: kill/restart cycles per test run.
CYCLES = 4
#: concurrent writers (each its own connection), so kills land inside group commits.
WRITERS = 8


def _writer(endpoint: str, token: str, name: str, acked: dict, stop: threading.Event) -> None:
    try:
        with aspen.connect(endpoint, token=token, timeout=5) as c:
            i = 0
            while not stop.is_set():
                key, value = f"{name}/{i:06d}", f"value-{name}-{i}".encode()
                c.kv.put(key, value)
                acked[key] = value  # only after the node acknowledged it
                i += 1
    except (AspenError, OSError):
        pass  # the node died under us: writes not acknowledged are allowed to be lost


@pytest.mark.slow
def test_kill9_during_concurrent_writes_loses_nothing_acknowledged(node_process) -> None:
    rng = random.Random(20261123)
    acked: dict[str, bytes] = {}
    for cycle in range(CYCLES):
        node_process.start()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_writer,
                args=(node_process.endpoint, node_process.token, f"c{cycle}w{w}", acked, stop),
            )
            for w in range(WRITERS)
        ]
        for t in threads:
            t.start()
        # let writes flow, then kill without warning at a random moment
        deadline = time.monotonic() + 10
        target = len(acked) + rng.randint(200, 1500)
        while len(acked) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        node_process.kill9()
        stop.set()
        for t in threads:
            t.join(20)
        assert len(acked) >= target - 8, "writers made no progress before the kill"

    node_process.start()
    with aspen.connect(node_process.endpoint, token=node_process.token) as c:
        present = {kv.key.decode(): kv.value for kv in _scan_all(c)}
    missing = [k for k, v in acked.items() if present.get(k) != v]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def _scan_all(c):
    start = b"\0"
    while True:
        page = c.kv.range(start, end=b"\0", limit=5000)
        yield from page.kvs
        if not page.more:
            return
        start = page.kvs[-1].key + b"\0"
