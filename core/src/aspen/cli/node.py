"""``aspen node …``: run a node."""

from __future__ import annotations

from pathlib import Path

import click

from aspen.cli.context import CliContext, pass_cli
from aspen.node.config import (
    DEFAULT_LISTEN,
    NodeConfig,
    default_data_dir,
    default_peer_listen,
    parse_hostport,
)

__all__ = ["node"]


def _check_listen(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        parse_hostport(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _check_optional_listen(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    return None if value is None else _check_listen(ctx, param, value)


@click.group()
def node() -> None:
    """Run an Aspen node."""


@node.command()
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
    help="Join an existing cluster: JOIN_TOKEN@PEER_HOST:PORT of any member (first start only).",
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
) -> None:
    """Start a node with every installed plugin; runs until Ctrl-C or SIGTERM.

    A fresh data directory without --join starts a new one-node cluster (add more nodes
    with --join); an existing one resumes where it stopped."""
    from aspen.node.runner import run_node

    data_dir = data_dir or default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    peer_listen = peer_listen or default_peer_listen(listen)
    config = NodeConfig(
        data_dir=data_dir,
        listen=listen,
        config_file=config_file,
        peer_listen=peer_listen,
        advertise_peer=advertise_peer,
        join=join,
    )
    pm = cli.plugin_manager()
    for info in pm.infos():
        if info.status == "failed":
            click.echo(f"warning: plugin {info.name!r} failed: {info.error}", err=True)
    run_node(config, pm)
