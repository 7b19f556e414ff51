"""Helpers of the aspen-jobs tests: worker processes and CLI calls on a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aspen.testing import LocalCluster


def cli_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment reaching ``cluster`` with its root token."""
    return {**os.environ, "ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token}


def aspen(
    cluster: LocalCluster, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``aspen ARGS`` against ``cluster``."""
    done = subprocess.run(
        [sys.executable, "-m", "aspen", *args],
        env=cli_env(cluster),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"aspen {' '.join(args)} failed: {done.stderr}")
    return done


def aspen_json(cluster: LocalCluster, *args: str) -> Any:
    """``aspen ARGS --json``, parsed."""
    return json.loads(aspen(cluster, *args, "--json").stdout)


def start_worker(
    cluster: LocalCluster, queues: str, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """``aspen jobs worker --queues QUEUES EXTRA`` as a process (its output in ``log``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "aspen", "jobs", "worker", "--queues", queues, *extra],
        env=cli_env(cluster),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def restart_dead(cluster: LocalCluster) -> None:
    """Restart every node that was killed, and wait for a leader."""
    for i in range(1, cluster.nodes + 1):
        if not cluster.alive(i):
            cluster.restart(i)
    cluster.leader_index()
