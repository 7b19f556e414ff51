"""The ``aspen`` command line: ``make_cli(pm)`` builds it, ``main()`` runs it.

Plugin commands use :func:`pass_client` to get a connected client built from the global
options (``--endpoint``, ``--token-file``, ``--timeout``), and :class:`CliContext` (via
``pass_cli``) for the output mode (``cli.json``).
"""

from __future__ import annotations

from aspen.cli.context import CliContext, json_option, pass_cli, pass_client
from aspen.cli.main import AspenGroup, main, make_cli

__all__ = [
    "AspenGroup",
    "CliContext",
    "json_option",
    "main",
    "make_cli",
    "pass_cli",
    "pass_client",
]
