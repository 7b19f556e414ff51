"""The ``coord`` plugin's hooks: its RPC methods and its CLI group."""

from __future__ import annotations

from typing import Any

import aspen


@aspen.hookimpl
def aspen_rpc_handlers() -> list[Any]:
    """``coord.*``."""
    from aspen_coord.rpc import rpc_handlers

    return rpc_handlers()


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen coord …``."""
    from aspen_coord.cli import coord_cli

    return [coord_cli]
