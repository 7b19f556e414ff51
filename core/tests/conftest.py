"""Shared fixtures for the core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's tests run without the workspace's plugins (aspen-hooks, aspen-secrets…):
    what they check must not depend on what else is installed. Tests that want plugins
    name them with ``@pytest.mark.aspen_plugins``."""
    monkeypatch.setenv("ASPEN_LOAD_PLUGINS", "")


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio (what nodes run on)."""
    return "asyncio"


@pytest.fixture
def running_node(tmp_path) -> Iterator[NodeThread]:
    """A real node (real LMDB, real TCP on 127.0.0.1) with no plugins, in a thread."""
    with NodeThread(NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0")) as node:
        yield node
