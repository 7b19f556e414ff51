"""``aspen node …``: run a node."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from aspen import limits
from aspen.cli.context import CliContext, pass_cli
from aspen.cli.output import EXIT_ERROR, fail
from aspen.limits import MAX_ADDRESS_CHARS
from aspen.node.config import (
    DEFAULT_LISTEN,
    NodeConfig,
    address_in_use,
    default_data_dir,
    default_peer_listen,
    parse_hostport,
)

__all__ = ["node"]


def _check_address(value: str) -> None:
    """Raise ``click.BadParameter`` unless ``value`` is a host:port of a bounded length."""
    if len(value) > MAX_ADDRESS_CHARS:
        raise click.BadParameter(
            f"address is {len(value)} characters long: at most {MAX_ADDRESS_CHARS} "
            f"(MAX_ADDRESS_CHARS)"
        )
    try:
        parse_hostport(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_listen(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    _check_address(value)
    return value


def _check_join(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--join`` is JOIN_TOKEN@HOST:PORT (the member's peer address)."""
    if value is None:
        return None
    token, sep, address = value.rpartition("@")
    if not sep or not token or not address:
        raise click.BadParameter("expected JOIN_TOKEN@HOST:PORT (a member's peer address)")
    _check_address(address)
    return value


def _refuse_taken(what: str, address: str) -> None:
    """Exit with a one-line error when something already listens on ``address``."""
    host, port = parse_hostport(address)
    if port and address_in_use(host, port):
        fail(
            f"error: cannot listen on {host}:{port} ({what}): the address is already in use "
            f"(another node?)",
            EXIT_ERROR,
        )


def _check_optional_listen(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    return None if value is None else _check_listen(ctx, param, value)


class _StartCommand(click.Command):
    """``node start`` plus a flag for every plugin config option marked ``start_flag``.

    The plugin flags are built when the command parses or shows help (loading the
    plugins then, not for every ``aspen`` command). A given flag sets the option's
    ``ASPEN_<PLUGIN>_<OPTION>`` variable for the node, so it wins over file and environment.
    """

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        """The built-in parameters, then the plugin flags."""
        return [*super().get_params(ctx), *self._plugin_params(ctx)]

    def _plugin_params(self, ctx: click.Context) -> list[click.Parameter]:
        cached = ctx.meta.get("aspen.start_flags")
        if cached is not None:
            return cached
        params: list[click.Parameter] = []
        cli = ctx.find_object(CliContext)
        if cli is not None:
            from aspen.plugins.config import env_var_name

            for section in cli.plugin_manager().config_sections():
                for opt in section.options:
                    if opt.start_flag:
                        params.append(_plugin_flag(section.name, opt, env_var_name))
        ctx.meta["aspen.start_flags"] = params
        return params


def _plugin_flag(section: str, opt: Any, env_var_name: Any) -> click.Option:
    """A click option whose parameter name is the environment variable it sets."""
    var = env_var_name(section, opt.name)
    decls = [f"{opt.flag}/--no-{opt.flag[2:]}"] if opt.type is bool else [opt.flag]
    click_type: Any = click.Path(path_type=Path) if issubclass(opt.type, Path) else opt.type
    return click.Option(
        [*decls, var.lower()],
        type=None if opt.type is bool else click_type,
        default=None,
        help=f"[{section}] {opt.help} (sets {var})".replace(" ()", ""),
    )


@click.group()
def node() -> None:
    """Run an Aspen node."""


@node.command(cls=_StartCommand)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the node keeps its data (created if missing). "
    "Default: $ASPEN_DATA_DIR or ~/.local/share/aspen/node.",
)
@click.option(
    "--listen",
    envvar="ASPEN_LISTEN",
    default=DEFAULT_LISTEN,
    show_default=True,
    callback=_check_listen,
    help="host:port to serve clients on (port 0 picks a free one).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file with [<plugin>] sections for plugin configuration.",
)
@click.option(
    "--peer-listen",
    envvar="ASPEN_PEER_LISTEN",
    default=None,
    callback=_check_optional_listen,
    help="host:port for Raft traffic from other nodes (default: the client port + 1).",
)
@click.option(
    "--advertise-peer",
    envvar="ASPEN_ADVERTISE_PEER",
    default=None,
    callback=_check_optional_listen,
    help="host:port other members dial for Raft traffic, if not --peer-listen (NAT, proxy).",
)
@click.option(
    "--join",
    envvar="ASPEN_JOIN",
    default=None,
    callback=_check_join,
    help="Join an existing cluster: JOIN_TOKEN@PEER_HOST:PORT of any member (its peer port, "
    "client + 1 by default; first start only).",
)
@click.option(
    "--lease-reads/--no-lease-reads",
    envvar="ASPEN_LEASE_READS",
    default=False,
    help="Answer linearizable reads on the leader from its lease, without a heartbeat "
    "round; safe only while node clocks drift less than 10 % (see docs).",
)
@click.option(
    "--apply-batch-seconds",
    envvar="ASPEN_APPLY_BATCH_SECONDS",
    type=click.FloatRange(0, limits.MAX_APPLY_BATCH_SECONDS),
    default=limits.APPLY_BATCH_SECONDS,
    show_default=True,
    help="Longest the state machine's LMDB commit waits after an apply, so one commit "
    "carries many writes (each is durable in the Raft-log WAL first; reads never wait for "
    "it). 0: commit every driver cycle.",
)
@pass_cli
def start(
    cli: CliContext,
    data_dir: Path | None,
    listen: str,
    config_file: Path | None,
    peer_listen: str | None,
    advertise_peer: str | None,
    join: str | None,
    lease_reads: bool,
    apply_batch_seconds: float,
    **plugin_flags: Any,
) -> None:
    """Start a node with every installed plugin; runs until Ctrl-C or SIGTERM.

    A fresh data directory without --join starts a new one-node cluster (add more nodes
    with --join); an existing one resumes where it stopped."""
    from aspen.node.runner import run_node

    for var, value in plugin_flags.items():
        if value is not None:
            os.environ[var.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    peer_what = "--peer-listen" if peer_listen else "the peer port: client + 1, or --peer-listen"
    peer_listen = peer_listen or default_peer_listen(listen)
    _refuse_taken("--listen", listen)
    _refuse_taken(peer_what, peer_listen)
    data_dir = data_dir or default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = NodeConfig(
        data_dir=data_dir,
        listen=listen,
        config_file=config_file,
        peer_listen=peer_listen,
        advertise_peer=advertise_peer,
        join=join,
        lease_reads=lease_reads,
        apply_batch_seconds=apply_batch_seconds,
    )
    pm = cli.plugin_manager()
    for info in pm.infos():
        if info.status == "failed":
            click.echo(f"warning: plugin {info.name!r} failed: {info.error}", err=True)
    run_node(config, pm)
