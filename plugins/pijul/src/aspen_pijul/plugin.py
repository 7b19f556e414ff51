"""The ``pijul`` plugin's hooks: the ``aspen pijul …`` command group."""

from __future__ import annotations

from typing import Any

import aspen


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen pijul …``."""
    from aspen_pijul.cli import pijul_cli

    return [pijul_cli]


@aspen.hookimpl
def aspen_rpc_handlers() -> list[Any]:
    """``pijul.*``: cluster repositories."""
    from aspen_pijul.rpc import rpc_handlers

    return rpc_handlers()
