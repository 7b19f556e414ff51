"""``aspen cluster …``: see and change the cluster's membership."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aspen.cli.context import CliContext, json_option, pass_cli, resolve_token
from aspen.cli.output import echo_json, emit, format_table
from aspen.cli.status import disk_summary
from aspen.node.config import DEFAULT_LISTEN, default_peer_listen

__all__ = ["cluster", "cluster_view"]


@click.group()
def cluster() -> None:
    """Cluster membership and Raft status."""


def cluster_view(cli: CliContext) -> dict[str, Any]:
    """Ask the connected node for the members, then each member for its own Raft view."""
    import os

    import aspen
    from aspen.errors import AspenError

    local = cli.client().call("cluster.status")
    token = resolve_token(cli.token_file, os.environ)
    members = []
    for node_id, member in sorted(local["members"].items()):
        row: dict[str, Any] = {
            "id": node_id,
            "endpoint": member.get("client", ""),
            "peer": member.get("peer", ""),
        }
        try:
            with aspen.connect(row["endpoint"], token=token, timeout=min(cli.timeout, 3)) as c:
                view = c.call("cluster.status")
            raft = view.get("raft", {})
            role = view["role"]
            if node_id in local["conf"]["learners"]:
                role = "learner"
            row.update(
                role=role,
                term=raft.get("term", 0),
                commit_index=raft.get("commit", 0),
                applied_index=view.get("applied_index", 0),
                disk=view.get("disk", {}),
                reachable=True,
            )
        except (AspenError, OSError) as exc:
            row.update(
                role="unreachable",
                term=0,
                commit_index=0,
                applied_index=0,
                disk={},
                reachable=False,
                error=str(exc),
            )
        members.append(row)
    leader = next((m["id"] for m in members if m["role"] == "leader"), local.get("leader"))
    applied = max((m["applied_index"] for m in members), default=0)
    for m in members:
        m["lag"] = applied - m["applied_index"]
    return {"leader": leader, "members": members}


@cluster.command()
@json_option
@pass_cli
def status(cli: CliContext) -> None:
    """Leader, and per member: role, term, commit and applied index, lag, free disk space."""
    view = cluster_view(cli)
    if cli.json:
        echo_json(view)
        return
    click.echo(f"leader: {view['leader'] or '(none)'}")
    rows = [
        (
            m["id"],
            m["endpoint"],
            m["role"],
            m["term"],
            m["commit_index"],
            m["applied_index"],
            m["lag"],
            disk_summary(m["disk"], short=True) if m["reachable"] else "",
        )
        for m in view["members"]
    ]
    headers = ("id", "endpoint", "role", "term", "commit", "applied", "lag", "disk")
    click.echo(format_table(headers, rows))
    for m in view["members"]:
        if m["disk"].get("full"):
            click.echo(f"{m['id']}: writes failing: {m['disk']['full']}")


def _simple(name: str, method: str, doc: str, *, with_addresses: bool = False) -> click.Command:
    """A command that calls ``method`` with the node id (and addresses) and prints the result."""

    @click.argument("node_id")
    @json_option
    @pass_cli
    def command(cli: CliContext, node_id: str, **addresses: str) -> None:
        result = cli.client().call(method, {"id": node_id, **addresses})
        emit(cli, result, f"{name} {node_id}: done")

    command.__doc__ = doc
    if with_addresses:
        command = click.option("--client", required=True, help="The member's client host:port.")(
            command
        )
        command = click.option("--peer", required=True, help="The member's peer host:port.")(
            command
        )
    return cluster.command(name)(command)


_simple(
    "add-learner",
    "cluster.add_learner",
    "Add NODE_ID as a learner (it replicates, never votes).",
    with_addresses=True,
)
_simple("promote", "cluster.promote", "Promote learner NODE_ID to voter once it has caught up.")
_simple("remove", "cluster.remove", "Remove member NODE_ID (refused if quorum would be lost).")
_simple("transfer-leader", "cluster.transfer_leader", "Hand leadership to voter NODE_ID.")


@cluster.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="Client host:port.")
@click.option("--peer-listen", default=None, help="Peer host:port (default: client port + 1).")
@json_option
@pass_cli
def init(cli: CliContext, data_dir: Path, listen: str, peer_listen: str | None) -> None:
    """Create a new cluster in DATA_DIR (CA, node key, root and join tokens) without starting
    it; `aspen node start --data-dir DATA_DIR` then founds it. (A fresh node started without
    --join does this by itself.)"""
    from aspen.transport.join import init_cluster

    peer_listen = peer_listen or default_peer_listen(listen)
    try:
        created = init_cluster(data_dir, [peer_listen, listen])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if cli.json:
        echo_json(
            {
                "cluster_id": created.cluster_id,
                "root_token": created.root_token,
                "join_token": created.join_token,
            }
        )
        return
    click.echo(f"cluster {created.cluster_id} created in {data_dir}")
    click.echo(f"root token (clients):  {created.root_token}")
    click.echo(f"join token (new nodes): {created.join_token}")
    click.echo(f"start it: aspen node start --data-dir {data_dir} --listen {listen}")


@cluster.command()
@json_option
@pass_cli
def snapshot(cli: CliContext) -> None:
    """Compact the connected node's Raft log up to its applied index."""
    result = cli.client().call("cluster.snapshot")
    if cli.json:
        echo_json(result)
    else:
        click.echo(
            f"log compacted to index {result['index']} ({result['size_bytes']} bytes of state)"
        )
