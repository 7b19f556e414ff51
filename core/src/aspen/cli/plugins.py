"""``aspen plugins``: what the nodes loaded, disabled or failed, and why.

By default the command asks the cluster: ``cluster.status`` on the node it connects to for
the members, then ``node.plugins`` on every member (a plugin may be installed on some nodes
and not others, and only a node knows whether its ``aspen_startup`` failed). With
``--local``, or when no node answers, it shows this installation's view instead (the
plugins the CLI itself finds, with every registration hook run) and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import click

from aspen import limits
from aspen.cli.context import CliContext, json_option, pass_cli, resolve_token
from aspen.cli.output import echo_json, format_table
from aspen.errors import AspenError

__all__ = ["NodePlugins", "ask_nodes", "plugins"]

_COLUMNS = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "ERROR")


@dataclass
class NodePlugins:
    """One member's answer to ``node.plugins`` (or why it gave none)."""

    node_id: str
    endpoint: str
    plugins: list[dict[str, Any]] = field(default_factory=list)
    #: Why the member could not be asked ("" when it answered).
    error: str = ""


def _describe(exc: BaseException) -> str:
    """A one-line reason for a failed call."""
    return str(exc) or type(exc).__name__


def _ask(client: Any, node_id: str, endpoint: str) -> NodePlugins:
    """``node.plugins`` on one connected member."""
    try:
        answer = client.call("node.plugins")
    except (AspenError, OSError) as exc:
        return NodePlugins(node_id, endpoint, error=_describe(exc))
    return NodePlugins(answer.get("node_id") or node_id, endpoint, list(answer["plugins"]))


def ask_nodes(cli: CliContext) -> tuple[list[NodePlugins] | None, str]:
    """Every member's plugins, or ``(None, why)`` when the cluster cannot be asked."""
    import aspen

    token = resolve_token(cli.token_file, os.environ)
    if not token:
        return None, "no token to ask the cluster (set ASPEN_TOKEN or --token-file)"
    try:
        client = cli.client()
        status = client.call("cluster.status")
        here = _ask(client, status["id"], client.endpoint or cli.endpoint)
    except (AspenError, OSError) as exc:
        return None, f"no node answered at {cli.endpoint}: {_describe(exc)}"
    if here.error:  # a node without node.plugins (older) or one that refused
        return None, f"{cli.endpoint} did not list its plugins: {here.error}"
    answers = [here]
    for node_id, addresses in sorted(status.get("members", {}).items()):
        if node_id == here.node_id:
            continue
        endpoint = str(addresses.get("client", ""))
        try:
            with aspen.connect(
                endpoint,
                token=token,
                timeout=cli.timeout,
                connect_timeout=min(cli.timeout, limits.CONNECT_TIMEOUT_SECONDS),
            ) as other:
                answers.append(_ask(other, node_id, endpoint))
        except (AspenError, OSError) as exc:
            answers.append(NodePlugins(node_id, endpoint, error=_describe(exc)))
    return answers, ""


def _hooks(info: dict[str, Any]) -> str:
    return ",".join(h.removeprefix("aspen_") for h in info.get("hooks", ())) or "-"


def _row(info: dict[str, Any]) -> tuple[str, ...]:
    return (
        info.get("name", ""),
        info.get("distribution", ""),
        info.get("version", ""),
        info.get("status", ""),
        _hooks(info),
        info.get("error", ""),
    )


def _show_nodes(cli: CliContext, answers: list[NodePlugins]) -> None:
    """The cluster view: one row per plugin per member (a member that did not answer: one
    ``unreachable`` row)."""
    entries = []
    for answer in answers:
        where = {"view": "node", "node": answer.node_id, "endpoint": answer.endpoint}
        if answer.error:
            entries.append({**where, "name": "", "status": "unreachable", "error": answer.error})
        entries.extend({**where, **info} for info in answer.plugins)
    if cli.json:
        echo_json(entries)
        return
    asked = len(answers)
    click.echo(
        f"Plugins of the nodes ({asked} member{'s' * (asked != 1)} asked through "
        f"{cli.endpoint}; --local for this installation's own view):"
    )
    if not entries:
        click.echo("No plugins on any node.")
        return
    rows = [(e["node"][:12], e.get("endpoint", ""), *_row(e)) for e in entries]
    click.echo(format_table(("NODE", "ENDPOINT", *_COLUMNS), rows))


def _show_local(ctx: click.Context, cli: CliContext, why: str) -> None:
    """This installation's view (every registration hook run, so contract breaks show)."""
    pm = cli.plugin_manager()
    pm.collect_registrations()
    root = ctx.find_root().command
    if hasattr(root, "plugin_commands"):
        root.plugin_commands()  # records CLI collisions with built-in commands
    infos = [{"view": "local", **info.to_json()} for info in pm.infos()]
    if cli.json:
        echo_json(infos)
        return
    click.echo(f"Plugins of this installation (local view: {why}):")
    if not infos:
        click.echo("No plugins installed.")
        return
    click.echo(format_table(_COLUMNS, [_row(info) for info in infos]))


@click.command()
@click.option(
    "--local",
    is_flag=True,
    help="Show this installation's plugins without asking the nodes.",
)
@json_option
@pass_cli
@click.pass_context
def plugins(ctx: click.Context, cli: CliContext, local: bool) -> None:
    """List plugins: name, distribution, version, hooks, status (loaded, disabled, failed),
    error.

    Asks every node of the cluster what it loaded (``node.plugins``); with --local, or when
    no node answers, shows this installation's view and says which view is shown. JSON rows
    carry ``view`` ("node" or "local") and, from nodes, ``node`` and ``endpoint``.
    """
    if local:
        _show_local(ctx, cli, "--local")
        return
    answers, why = ask_nodes(cli)
    if answers is None:
        _show_local(ctx, cli, why)
    else:
        _show_nodes(cli, answers)
