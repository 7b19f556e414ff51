"""Running a node: in the foreground until a signal (``aspen node start``), or in a
background thread (tests and the ``node`` pytest fixture)."""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from aspen.node.config import NodeConfig
from aspen.node.node import Node
from aspen.transport.datadir import ROOT_TOKEN_FILE

__all__ = ["NodeThread", "backend_options", "run_node"]


def backend_options() -> dict[str, Any]:
    """anyio backend options for a node: asyncio on uvloop where uvloop is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _banner(node: Node) -> str:
    token_file = Path(node.data_dir) / ROOT_TOKEN_FILE
    return (
        f"Aspen node {node.id} is serving on {node.endpoint} (data in {node.data_dir}).\n"
        f"Talk to it from another shell:\n"
        f"  export ASPEN_ENDPOINT={node.endpoint}\n"
        f"  export ASPEN_TOKEN=$(cat {token_file})\n"
        f"  aspen kv put hello world && aspen kv get hello\n"
        f"Press Ctrl-C to stop.\n"
    )


async def _serve_until_signal(node: Node) -> None:
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print("Stopping…", file=sys.stderr, flush=True)
                    node.stop()
                    return

        async def run_then_finish(*, task_status: anyio.abc.TaskStatus[str]) -> None:
            await node.run(task_status=task_status)
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_signal)
        await tg.start(run_then_finish)
        print(_banner(node), flush=True)


def run_node(config: NodeConfig, pm: Any | None = None) -> None:
    """Run one node in the foreground until SIGINT or SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    node = Node(config, pm)
    anyio.run(_serve_until_signal, node, backend="asyncio", backend_options=backend_options())


class NodeThread:
    """A real node on its own event loop thread: ``with NodeThread(config, pm) as n: ...``.

    ``endpoint``, ``token`` and ``data_dir`` tell how to reach it; ``client()`` opens a sync
    client; ``call(fn, *args)`` runs a coroutine function on the node's loop.
    """

    def __init__(self, config: NodeConfig, pm: Any | None = None) -> None:
        self.config = config
        self.node = Node(config, pm)
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self._future: Any = None

    @property
    def endpoint(self) -> str:
        """``host:port`` the node serves on."""
        return self.node.endpoint

    @property
    def token(self) -> str:
        """The node's root token."""
        return self.node.token

    @property
    def data_dir(self) -> Path:
        """The node's data directory."""
        return self.node.data_dir

    def start(self) -> NodeThread:
        """Start the node and wait until it serves."""
        self._portal = self._stack.enter_context(
            start_blocking_portal("asyncio", backend_options())
        )
        self._future, _ = self._portal.start_task(self.node.run, name="aspen-node")
        return self

    def call(self, func: Any, *args: Any) -> Any:
        """Run ``func(*args)`` (sync or async) on the node's event loop and return its result."""
        assert self._portal is not None, "node not started"
        return self._portal.call(func, *args)

    def client(self, **kwargs: Any) -> Any:
        """Open a sync client to this node (close it, or use it in a ``with``)."""
        import aspen

        return aspen.connect(self.endpoint, token=self.token, **kwargs)

    def stop(self) -> None:
        """Stop the node (plugins shut down, storage closed) and its thread."""
        if self._portal is None:
            return
        try:
            self._portal.call(self.node.stop)
            self._future.result(timeout=30)
        finally:
            self._portal = None
            self._stack.close()

    def __enter__(self) -> NodeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
