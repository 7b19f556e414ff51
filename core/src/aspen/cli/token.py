"""``aspen token …``: create, attenuate (offline), inspect, revoke, list and audit
capability tokens (see docs/tokens.md)."""

from __future__ import annotations

from typing import Any

import click

from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.duration import Duration
from aspen.cli.output import echo_json, emit, format_table

__all__ = ["Duration", "token"]

_caps_option = click.option(
    "--cap",
    "caps",
    multiple=True,
    metavar="CAP",
    help="A capability, resource:operation[:scope] (kv:read:/app/, cluster:admin); repeat.",
)


@click.group()
def token() -> None:
    """Capability tokens: create, attenuate offline, inspect, revoke, list, audit."""


@token.command()
@_caps_option
@click.option("--ttl", type=Duration(), help="Lifetime (90s, 10m, 1h, 7d); default: none.")
@click.option("--name", default="", help="A name shown by `aspen token list`.")
@click.option("--rate", type=float, help="Requests per second per node (root only).")
@click.option("--burst", type=int, help="Burst of the rate bucket (root only).")
@click.option("--streams", type=int, help="Open streams at once per node (root only).")
@json_option
@pass_cli
def create(
    cli: CliContext,
    caps: tuple[str, ...],
    ttl: float | None,
    name: str,
    rate: float | None,
    burst: int | None,
    streams: int | None,
) -> None:
    """Issue a token granting each --cap (you must hold each one yourself); prints
    {"id", "token"} with --json. The token works as ASPEN_TOKEN."""
    if not caps:
        raise click.UsageError("give at least one --cap")
    params: dict[str, Any] = {"capabilities": list(caps), "name": name}
    for field, value in (("ttl", ttl), ("rate", rate), ("burst", burst), ("streams", streams)):
        if value is not None:
            params[field] = value
    result = cli.client().call("token.create", params)
    emit(cli, result, lambda r: (f"id: {r['id']}", r["token"]))


@token.command()
@click.argument("token_text", metavar="TOKEN")
@_caps_option
@click.option("--ttl", type=Duration(), help="Expire within this (90s, 10m, 1h, 7d).")
@json_option
@pass_cli
def attenuate(cli: CliContext, token_text: str, caps: tuple[str, ...], ttl: float | None) -> None:
    """Print a narrower TOKEN: only the --cap given (each covered by TOKEN) and/or a shorter
    life. Works offline: no node is contacted."""
    from aspen.auth.capability import parse_capabilities
    from aspen.auth.tokens import attenuate as narrow_token

    narrowed = narrow_token(token_text, parse_capabilities(caps), ttl=ttl)
    emit(cli, {"token": narrowed}, narrowed)


@token.command()
@click.argument("token_text", metavar="TOKEN")
@json_option
@pass_cli
def inspect(cli: CliContext, token_text: str) -> None:
    """Show what TOKEN grants (offline): id, capabilities, expiry, chain."""
    from aspen.auth.tokens import inspect_token

    info = inspect_token(token_text).to_json()
    if cli.json:
        echo_json(info)
        return
    for name, value in info.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        click.echo(f"{name}: {shown}")


@token.command()
@click.argument("token_id", metavar="ID")
@json_option
@pass_cli
def revoke(cli: CliContext, token_id: str) -> None:
    """Revoke token ID and every token delegated from it, on every node."""
    result = cli.client().call("token.revoke", {"id": token_id})
    emit(cli, result, f"revoked {token_id}")


@token.command(name="list")
@json_option
@pass_cli
def list_tokens(cli: CliContext) -> None:
    """Issued tokens (id, name, capabilities, expiry, revoked): never their secrets."""
    result = cli.client().call("token.list")
    if cli.json:
        echo_json(result["tokens"])
        return
    rows = [
        (
            t["id"],
            t["name"],
            " ".join(t["capabilities"]),
            t["expires"] or "-",
            "revoked" if t["revoked"] else "",
        )
        for t in result["tokens"]
    ]
    click.echo(format_table(("ID", "NAME", "CAPABILITIES", "EXPIRES", "STATE"), rows))


@token.command()
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_cli
def audit(cli: CliContext, limit: int) -> None:
    """The connected node's audit log: denied requests, token creates and revokes."""
    result = cli.client().call("token.audit", {"limit": limit})
    if cli.json:
        echo_json(result["records"])
        return
    rows = [
        (r["event"], r["token"], r.get("method", ""), r.get("capability", ""), r.get("by", ""))
        for r in result["records"]
    ]
    click.echo(format_table(("EVENT", "TOKEN", "METHOD", "CAPABILITY", "BY"), rows))
