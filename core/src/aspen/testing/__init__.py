"""Test helpers for Aspen and its plugins.

The pytest fixtures (``pm``, ``node``, ``cli``) live in :mod:`aspen.testing.pytest_plugin`,
which pytest loads automatically once ``aspen-core`` is installed. This package itself
imports neither pytest nor a node, so it is safe to use anywhere.
"""

from __future__ import annotations

from aspen.testing.cli import CliInvoker
from aspen.testing.waiting import free_base_port, free_port, wait_for

__all__ = ["CliInvoker", "free_base_port", "free_port", "wait_for"]
