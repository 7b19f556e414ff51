"""The opt-in worker inside a node (``[jobs] workers``), on one real node in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import wait_for


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NodeThread]:
    """A node with aspen-jobs whose in-node worker serves the queue ``local``."""
    monkeypatch.setenv("ASPEN_JOBS_WORKERS", "local")
    monkeypatch.setenv("ASPEN_JOBS_WORKER_CONCURRENCY", "2")
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config, make_plugin_manager(load=["jobs"], disable=())) as running:
        yield running


def test_an_in_node_worker_runs_its_queues_jobs(node: NodeThread):
    with node.client() as c:
        job_id = c.call("jobs.submit", {"queue": "local", "command": "echo inside"})["id"]
        other = c.call("jobs.submit", {"queue": "elsewhere", "command": "echo no"})["id"]
        job = wait_for(
            lambda: (j := c.call("jobs.get", {"id": job_id}))["state"] == "succeeded" and j,
            timeout=30,
            interval=0.1,
        )
        assert job["attempts"][0]["worker"].startswith("node ")
        assert c.call("jobs.result", {"id": job_id})["stdout"] == "inside\n"
        assert c.call("jobs.get", {"id": other})["state"] == "queued"  # not its queue
