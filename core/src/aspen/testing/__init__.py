"""Test helpers for Aspen and its plugins.

The pytest fixtures (``pm``, ``node``, ``cli``, ``cluster``) live in
:mod:`aspen.testing.pytest_plugin`, which pytest loads automatically once ``aspen-core`` is
installed. This package itself imports neither pytest nor a node, so it is safe to use
anywhere: :func:`wait_for` / :func:`async_wait_for` wait on a condition with a deadline,
:func:`local_cluster` runs a multi-node cluster of real processes.
"""

from __future__ import annotations

from aspen.testing.cli import CliInvoker
from aspen.testing.cluster import LocalCluster, local_cluster
from aspen.testing.waiting import (
    async_wait_for,
    free_base_port,
    free_node_port,
    free_port,
    wait_for,
)

__all__ = [
    "CliInvoker",
    "LocalCluster",
    "async_wait_for",
    "free_base_port",
    "free_node_port",
    "free_port",
    "local_cluster",
    "wait_for",
]
