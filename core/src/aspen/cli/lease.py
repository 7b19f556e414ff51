"""``aspen lease …``: grant, keepalive, revoke, ttl, list."""

from __future__ import annotations

import time

import click

from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.output import bytes_field, echo_json, emit, show_bytes

__all__ = ["lease"]


class LeaseId(click.ParamType):
    """A lease id: decimal, or hexadecimal with ``0x``."""

    name = "lease_id"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        """Parse the id."""
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 0)
        except ValueError:
            self.fail(f"{value!r} is not a lease id (decimal, or hex with 0x)", param, ctx)


LEASE_ID = LeaseId()


@click.group()
def lease() -> None:
    """Leases: keys that disappear when their lease expires or is revoked."""


@lease.command()
@click.argument("ttl", type=click.IntRange(min=1))
@json_option
@pass_cli
def grant(cli: CliContext, ttl: int) -> None:
    """Grant a lease of TTL seconds and print its id."""
    granted = cli.client().lease.grant(ttl)
    emit(
        cli,
        {"id": granted.id, "ttl": granted.ttl},
        f"lease {granted.id} granted with TTL {granted.ttl}s",
    )


@lease.command()
@click.argument("lease_id", type=LEASE_ID)
@click.option("--once", is_flag=True, help="Renew once and exit.")
@json_option
@pass_cli
def keepalive(cli: CliContext, lease_id: int, once: bool) -> None:
    """Keep LEASE_ID alive: renew it every TTL/3 seconds until Ctrl-C (or once with --once)."""
    client = cli.client()
    try:
        while True:
            ttl = client.lease.keepalive(lease_id)
            if cli.json:
                echo_json({"id": lease_id, "ttl": ttl}, lines=True)
            else:
                click.echo(f"lease {lease_id} kept alive, TTL {ttl}s")
            if once:
                return
            time.sleep(max(ttl / 3, 0.5))
    except KeyboardInterrupt:
        pass


@lease.command()
@click.argument("lease_id", type=LEASE_ID)
@json_option
@pass_cli
def revoke(cli: CliContext, lease_id: int) -> None:
    """Revoke LEASE_ID now, deleting every key attached to it."""
    cli.client().lease.revoke(lease_id)
    emit(cli, {"id": lease_id, "revoked": True}, f"lease {lease_id} revoked")


@lease.command()
@click.argument("lease_id", type=LEASE_ID)
@click.option("--keys", is_flag=True, help="Also list the keys attached to it.")
@json_option
@pass_cli
def ttl(cli: CliContext, lease_id: int, keys: bool) -> None:
    """Show the remaining and granted TTL of LEASE_ID (exit code 1 if it does not exist)."""
    info = cli.client().lease.ttl(lease_id, keys=keys)
    if cli.json:
        out = {"id": info.id, "ttl": info.ttl, "granted_ttl": info.granted_ttl}
        if keys:
            out["keys"] = [bytes_field("key", k) for k in info.keys]
        echo_json(out)
        return
    click.echo(f"lease {info.id}: {info.ttl}s left of {info.granted_ttl}s")
    for key in info.keys:
        click.echo(f"  {show_bytes(key)}")


@lease.command("list")
@json_option
@pass_cli
def list_(cli: CliContext) -> None:
    """List the ids of every live lease."""
    ids = cli.client().lease.list()
    if cli.json:
        echo_json(ids)
    else:
        for lease_id in ids:
            click.echo(lease_id)
