"""The ``aspen`` command line: ``make_cli(pm)`` builds it, ``main()`` runs it.

Plugin commands use :func:`pass_client` to get a connected client built from the global
options (``--endpoint``, ``--token-file``, ``--timeout``), and :class:`CliContext` (via
``pass_cli``) for the output mode (``cli.json``): :func:`emit`, :func:`emit_table` and
:func:`show_result` print an answer in that mode, :func:`plain` turns its bytes into text,
and :class:`Duration` parses ``90s``/``10m``/``1h30m`` options into seconds.
"""

from __future__ import annotations

from aspen.cli.context import CliContext, json_option, pass_cli, pass_client
from aspen.cli.duration import Duration
from aspen.cli.main import AspenGroup, main, make_cli
from aspen.cli.output import emit, emit_table, plain, show_result

__all__ = [
    "AspenGroup",
    "CliContext",
    "Duration",
    "emit",
    "emit_table",
    "json_option",
    "main",
    "make_cli",
    "pass_cli",
    "pass_client",
    "plain",
    "show_result",
]
