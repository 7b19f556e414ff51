"""The ``aspen`` command: global options, built-in commands, lazily attached plugin commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

import aspen
from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.output import EXIT_ERROR, echo_json, exit_code_for, fail
from aspen.cli.status import render_status
from aspen.errors import AspenError
from aspen.limits import DEFAULT_REQUEST_TIMEOUT_SECONDS
from aspen.node.config import DEFAULT_LISTEN

__all__ = ["AspenGroup", "main", "make_cli"]

_EPILOG = """\b
Exit codes: 0 ok; 1 not found or compare failed; 2 usage or invalid argument;
3 node unavailable (cannot connect, not leader, timeout); 4 any other error.
"""


class AspenGroup(click.Group):
    """The root group: built-in commands first; plugin commands are attached on first need.

    Looking up a built-in command (``aspen kv get``) never loads plugins. Listing commands
    (``aspen --help``) or running a name that is not built in asks the plugin manager.
    """

    def __init__(self, *args: Any, pm: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pm = pm
        self._plugin_commands: dict[str, click.Command] | None = None

    def plugin_manager(self) -> Any:
        """The plugin manager, created (installed plugins loaded) on first use."""
        if self._pm is None:
            from aspen.plugins.manager import make_plugin_manager

            self._pm = make_plugin_manager()
        return self._pm

    def plugin_commands(self) -> dict[str, click.Command]:
        """Plugin commands by name; one colliding with a built-in is refused (and reported)."""
        if self._plugin_commands is None:
            pm = self.plugin_manager()
            attached: dict[str, click.Command] = {}
            for name, command in pm.cli_commands().items():
                if name in self.commands:
                    error = f"its command {name!r} collides with the built-in 'aspen {name}'"
                    click.echo(f"error: plugin {name!r} refused: {error}", err=True)
                    pm.mark_failed(name, error)
                else:
                    attached[name] = command
            self._plugin_commands = attached
        return self._plugin_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in and plugin command names, sorted."""
        return sorted({*self.commands, *self.plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, else a plugin's."""
        return self.commands.get(cmd_name) or self.plugin_commands().get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; expected errors become a message on stderr and an exit code."""
        try:
            return super().invoke(ctx)
        except (AspenError, OSError, BaseExceptionGroup) as exc:
            error = _single_error(exc)
            if isinstance(error, AspenError):
                fail(f"error: {error.message}", exit_code_for(error))
            if isinstance(error, OSError):
                endpoint = ctx.obj.endpoint if isinstance(ctx.obj, CliContext) else "?"
                code = exit_code_for(error)
                where = f"cannot reach the node at {endpoint}: " if code != EXIT_ERROR else ""
                fail(f"error: {where}{error.strerror or error}", code)
            raise


def _single_error(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups, else ``exc``: a node's task groups
    wrap what it raises (a taken port, a refused join) in groups of one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def make_cli(pm: Any = None) -> click.Group:
    """Build the ``aspen`` command; ``pm`` is the plugin manager (None: load on first need)."""
    from aspen.cli.blob import blob
    from aspen.cli.cluster import cluster
    from aspen.cli.dev import dev
    from aspen.cli.events import events
    from aspen.cli.kv import kv
    from aspen.cli.lease import lease
    from aspen.cli.node import node
    from aspen.cli.plugins import plugins
    from aspen.cli.token import token

    @click.group(cls=AspenGroup, pm=pm, epilog=_EPILOG)
    @click.option(
        "--endpoint",
        envvar="ASPEN_ENDPOINT",
        default=DEFAULT_LISTEN,
        show_default=True,
        help="host:port of a node (env ASPEN_ENDPOINT).",
    )
    @click.option(
        "--token-file",
        envvar="ASPEN_TOKEN_FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="File holding the token (else env ASPEN_TOKEN, else the default node's root token).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_REQUEST_TIMEOUT_SECONDS,
        show_default=True,
        help="Seconds to wait for each request.",
    )
    @click.version_option(aspen.__version__, prog_name="aspen")
    @click.pass_context
    def cli(
        ctx: click.Context, endpoint: str, token_file: Path | None, as_json: bool, timeout: float
    ) -> None:
        """Aspen: a strongly consistent key-value store with plugins."""
        group = ctx.command
        assert isinstance(group, AspenGroup)
        from_env = ctx.get_parameter_source("endpoint") == click.core.ParameterSource.ENVIRONMENT
        ctx.obj = CliContext(
            endpoint,
            token_file,
            as_json,
            timeout,
            group.plugin_manager,
            endpoint_source="ASPEN_ENDPOINT" if from_env else "--endpoint",
        )

    for command in (blob, cluster, dev, events, kv, lease, node, plugins, status, token):
        cli.add_command(command)
    return cli


@click.command()
@json_option
@pass_cli
def status(cli: CliContext) -> None:
    """Show the node's status (identity, role, revisions, sizes, free disk space, plugins)."""
    info = cli.client().status()
    if cli.json:
        echo_json(info)
        return
    click.echo(render_status(info))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``aspen`` console script."""
    # Plugin load failures are shown by `aspen plugins` (and logged by a node), not
    # printed before every command's output.
    logging.getLogger("aspen.plugins").addHandler(logging.NullHandler())
    make_cli().main(args=argv, prog_name="aspen")
