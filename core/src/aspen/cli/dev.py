"""``aspen dev up``: a local multi-process cluster for development and tests."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from aspen.cli.output import EXIT_ERROR, EXIT_UNAVAILABLE
from aspen.node.devcluster import RESTART_POLICIES, AddressInUseError, DevCluster, RestartPolicy

__all__ = ["dev"]


@click.group()
def dev() -> None:
    """Local development helpers."""


#: What the banner says about a node that exits, by restart policy.
_RESTART_NOTES: dict[RestartPolicy, str] = {
    "on-failure": "A node that fails is restarted; the others keep serving.",
    "never": "A node that exits stays down (--restart never); the others keep serving.",
}


def _report(message: str) -> None:
    """A supervisor message on stderr, with the time of day."""
    click.echo(f"[{time.strftime('%H:%M:%S')}] {message}", err=True)


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
@click.option(
    "--restart",
    type=click.Choice(RESTART_POLICIES),
    default=RESTART_POLICIES[0],
    show_default=True,
    help="Restart a node that fails (non-zero exit, killed), with backoff; or never.",
)
def up(nodes: int, data_dir: Path, base_port: int, restart: RestartPolicy) -> None:
    """Run a local NODES-node cluster in the foreground until Ctrl-C or SIGTERM.

    A node that exits is reported on stderr; the others keep serving, and with
    --restart on-failure (the default) the node is started again after a short backoff.
    """
    cluster = DevCluster(data_dir, nodes, base_port)
    code = 0
    # SIGTERM while the nodes start stops them as Ctrl-C does (they run in their own
    # sessions and would outlive this process otherwise)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cluster.up()
        click.echo(
            f"Aspen dev cluster of {nodes} nodes is up ({data_dir}).\n"
            f"  set -a; . {data_dir / 'env'}; set +a   # exports ASPEN_ENDPOINT, ASPEN_TOKEN\n"
            f"  aspen cluster status\n"
            f"Node i's process id is in {data_dir}/n<i>.pid, its log in {data_dir}/n<i>.log.\n"
            f"{_RESTART_NOTES[restart]}\n"
            f"Press Ctrl-C to stop every node.",
        )
        sys.stdout.flush()
        code = cluster.supervise(restart, _report)
    except AddressInUseError as exc:
        click.echo(f"error: {exc}", err=True)
        code = EXIT_ERROR
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        code = EXIT_UNAVAILABLE
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the nodes start
        code = 0
    finally:
        cluster.down()
    if code == 0:
        click.echo("Stopped every node.")
    sys.exit(code)
