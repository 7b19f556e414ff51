"""Fixtures for the secrets plugin's tests: a real node running only the ``secrets``
plugin, its Vault-compatible HTTP API on a free port, and an ``hvac`` client on it.

* ``secrets_node``: a :class:`aspen.node.runner.NodeThread` (real LMDB, real TCP) whose
  keyring is open; ``secrets_node.http_address`` is ``host:port`` of its HTTP API.
* ``vault``: an ``hvac.Client`` on that API with the node's root token.
* ``vault_url``: ``http://host:port`` of it (for raw ``httpx`` requests).
* ``secrets_cli``: runs ``aspen …`` in-process against the node.
* ``secrets_node_factory``: starts more secrets nodes (e.g. on the same data directory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, wait_for

#: Seconds a fresh node has to open its keyring.
READY_TIMEOUT = 20.0


def secrets_status(node: NodeThread) -> dict[str, Any]:
    """``secrets.status`` of a running node."""
    with node.client() as c:
        return c.call("secrets.status")


def start_secrets_node(data_dir: Path, *, ready: bool = True) -> NodeThread:
    """Start a node with only the ``secrets`` plugin; wait for its keyring unless not
    ``ready`` (the caller checks the state, e.g. sealed)."""
    pm = make_plugin_manager(load=["secrets"], disable=())
    config = NodeConfig(data_dir=data_dir, listen="127.0.0.1:0", sync=False)
    node = NodeThread(config, pm).start()
    try:
        status = wait_for(
            lambda: (s := secrets_status(node))["state"] != "starting" and s,
            timeout=READY_TIMEOUT,
            message="the secrets plugin opens its keyring",
        )
        if ready:
            assert status["state"] == "ready", status
            assert status["http_address"], status
        node.http_address = status["http_address"]  # type: ignore[attr-defined]
    except BaseException:
        node.stop()
        raise
    return node


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio, as nodes do."""
    return "asyncio"


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment every secrets node of a test runs with: HTTP on a free port."""
    monkeypatch.setenv("ASPEN_SECRETS_HTTP_LISTEN", "127.0.0.1:0")
    for var in ("ASPEN_SECRETS_ROOT_KEY_FILE", "ASPEN_SECRETS_SECRETS_FILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def secrets_node_factory(secrets_env: None) -> Iterator[Callable[..., NodeThread]]:
    """``start(data_dir, ready=True)`` starts a secrets node (see :func:`start_secrets_node`);
    every node started is stopped after the test (stopping one twice is fine)."""
    started: list[NodeThread] = []

    def start(data_dir: Path, *, ready: bool = True) -> NodeThread:
        node = start_secrets_node(data_dir, ready=ready)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(started):
            node.stop()


@pytest.fixture
def secrets_node(secrets_node_factory: Callable[..., NodeThread], tmp_path: Path) -> NodeThread:
    """A running node with the ``secrets`` plugin; ``.http_address`` is its HTTP API."""
    return secrets_node_factory(tmp_path / "secrets-node")


@pytest.fixture
def vault_url(secrets_node: NodeThread) -> str:
    """``http://host:port`` of the node's Vault-compatible API."""
    return f"http://{secrets_node.http_address}"  # type: ignore[attr-defined]


@pytest.fixture
def vault(secrets_node: NodeThread, vault_url: str) -> Iterator[Any]:
    """An ``hvac.Client`` on the node's HTTP API, with its root token."""
    import hvac

    client = hvac.Client(url=vault_url, token=secrets_node.token, timeout=30)
    try:
        yield client
    finally:
        client.adapter.close()


@pytest.fixture
def secrets_cli(secrets_node: NodeThread) -> CliInvoker:
    """Run ``aspen …`` in-process against ``secrets_node`` (with the secrets CLI group)."""
    pm = make_plugin_manager(load=["secrets"], disable=())
    return CliInvoker(
        pm, {"ASPEN_ENDPOINT": secrets_node.endpoint, "ASPEN_TOKEN": secrets_node.token}
    )
