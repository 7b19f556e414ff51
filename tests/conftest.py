"""Helpers for the end-to-end tests: free ports, real node processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import aspen
from aspen.errors import AspenError
from aspen.node.devcluster import node_command
from aspen.testing import free_node_port

#: Seconds a freshly started node process has to answer.
NODE_START_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _core_only_nodes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node processes of these tests run the core alone (the workspace's plugins would add
    their own writes); a test marked ``with_installed_plugins`` runs them all."""
    if request.node.get_closest_marker("with_installed_plugins") is None:
        monkeypatch.setenv("ASPEN_LOAD_PLUGINS", "")


@dataclass
class NodeProcess:
    """A node running as its own OS process (``python -m aspen node start``)."""

    data_dir: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "root-token").read_text().strip()

    def start(self, env: dict[str, str] | None = None) -> NodeProcess:
        """Start the process and wait until it serves requests."""
        log = open(self.data_dir.parent / f"node-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            node_command(self.data_dir, self.endpoint),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + NODE_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}; see {log.name}")
            try:
                with aspen.connect(self.endpoint, token=self.token, timeout=2) as c:
                    c.status()
                return self
            except (AspenError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL the process: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def node_process(tmp_path) -> Iterator[NodeProcess]:
    """A node process on a free port; stopped after the test."""
    node = NodeProcess(tmp_path / "node", free_node_port())
    try:
        yield node
    finally:
        node.stop()
