"""``aspen schedule …``: the schedules of aspen-jobs as a top-level command (the same
commands as ``aspen jobs schedule …``; the methods are ``jobs.schedule.*``)."""

from __future__ import annotations

from typing import Any

import aspen


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen schedule …``."""
    from aspen_jobs.cli import schedule_group

    return [schedule_group("schedule")]
