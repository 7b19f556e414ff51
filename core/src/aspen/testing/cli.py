"""Running the ``aspen`` CLI in-process against a node (click's CliRunner)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from click.testing import CliRunner, Result

__all__ = ["CliInvoker"]


class CliInvoker:
    """Call it with CLI arguments: ``cli("kv", "get", "k")`` returns a click ``Result``.

    ``pm`` is the plugin manager whose commands the CLI offers; ``env`` is set while the
    command runs (the ``cli`` fixture sets ``ASPEN_ENDPOINT`` and ``ASPEN_TOKEN``).
    """

    def __init__(self, pm: Any = None, env: Mapping[str, str] | None = None) -> None:
        self.pm = pm
        self.env = dict(env or {})

    def __call__(
        self, *args: str | os.PathLike[str], input: str | bytes | None = None, **env: str
    ) -> Result:
        """Run ``aspen ARGS...`` with ``input`` on stdin and extra ``env``; returns the Result."""
        from aspen.cli import make_cli

        runner = CliRunner()
        return runner.invoke(
            make_cli(self.pm),
            [os.fspath(a) for a in args],
            input=input,
            env={**self.env, **env},
            catch_exceptions=False,
        )
