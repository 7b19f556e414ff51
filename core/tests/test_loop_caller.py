"""The cycle thread's hand-off to the event loop (``replicator._loop_caller``).

Work handed from the write-cycle thread runs as plain loop callbacks, outside any task.
What it does there (queue a message to a peer that just joined, which builds the peer's
link with anyio primitives; spawn a snapshot stream) must work: a learner that joined
mid-cycle was never sent its snapshot when it did not.
"""

from __future__ import annotations

import threading

import anyio
import pytest

from aspen.node.replicator import _loop_caller


@pytest.mark.anyio
async def test_handed_off_callbacks_can_build_anyio_primitives() -> None:
    call = _loop_caller()
    built: list[object] = []
    done = anyio.Event()

    def on_loop() -> None:  # what a new peer link builds
        built.append(anyio.CancelScope())
        built.append(anyio.Event())
        done.set()

    threading.Thread(target=call, args=(on_loop,)).start()
    with anyio.fail_after(5):
        await done.wait()
    assert len(built) == 2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
