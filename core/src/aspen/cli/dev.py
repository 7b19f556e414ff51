"""``aspen dev up``: a local multi-process cluster for development and tests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["dev"]


@click.group()
def dev() -> None:
    """Local development helpers."""


@dev.command()
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    default=7400,
    show_default=True,
    help="Node i serves clients on BASE_PORT+i and peers on BASE_PORT+100+i.",
)
def up(nodes: int, data_dir: Path, base_port: int) -> None:
    """Run a local NODES-node cluster in the foreground until Ctrl-C or SIGTERM."""
    from aspen.node.devcluster import DevCluster

    cluster = DevCluster(data_dir, nodes, base_port)
    code = 0
    try:
        cluster.up()
        click.echo(
            f"Aspen dev cluster of {nodes} nodes is up ({data_dir}).\n"
            f"  set -a; . {data_dir / 'env'}; set +a   # exports ASPEN_ENDPOINT, ASPEN_TOKEN\n"
            f"  aspen cluster status\n"
            f"Press Ctrl-C to stop every node."
        )
        code = cluster.wait()
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        code = 3
    finally:
        cluster.down()
    sys.exit(code)
