"""``aspen plugins``: what is installed, loaded, disabled or failed, and why."""

from __future__ import annotations

import click

from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.output import echo_json, format_table

__all__ = ["plugins"]


@click.command()
@json_option
@pass_cli
@click.pass_context
def plugins(ctx: click.Context, cli: CliContext) -> None:
    """List plugins of this installation: name, distribution, version, hooks, status, error.

    Every registration hook is run, so a plugin that breaks its contract shows as failed.
    """
    pm = cli.plugin_manager()
    pm.collect_registrations()
    root = ctx.find_root().command
    if hasattr(root, "plugin_commands"):
        root.plugin_commands()  # records CLI collisions with built-in commands
    infos = pm.infos()
    if cli.json:
        echo_json([info.to_json() for info in infos])
        return
    if not infos:
        click.echo("No plugins installed.")
        return
    rows = [
        (
            i.name,
            i.distribution,
            i.version,
            i.status,
            ",".join(h.removeprefix("aspen_") for h in i.hooks) or "-",
            i.error,
        )
        for i in infos
    ]
    click.echo(format_table(("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "ERROR"), rows))
