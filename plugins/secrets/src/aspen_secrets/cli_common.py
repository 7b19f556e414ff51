"""What every ``aspen secrets …`` command shares: one logical request over RPC, and output.

Engine CLI groups (``aspen secrets kv|transit|pki``) are thin: they build the request
data from their options, call :func:`logical_request`, and print with :func:`show`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from aspen.cli.context import CliContext
from aspen.cli.output import echo_json

__all__ = ["RPC_REQUEST", "logical_request", "show"]

#: The one RPC method behind every engine operation: ``{"operation", "path", "data"}`` in,
#: ``{"data": map | None, "warnings": [...]}`` (or ``{"raw": bytes, "content_type"}``) out.
RPC_REQUEST = "secrets.request"


def logical_request(
    operation: str, path: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send one logical request (``path`` includes the mount: ``secret/data/app``) through
    the CLI's client and return the RPC answer."""
    cli = click.get_current_context().find_object(CliContext)
    if cli is None:
        raise click.UsageError("this command must run under the 'aspen' CLI")
    params = {"operation": operation, "path": path.strip("/"), "data": data or {}}
    return cli.client().call(RPC_REQUEST, params)


def show(answer: dict[str, Any], *, field: str | None = None) -> None:
    """Print an answer: JSON with ``--json``, else ``key: value`` lines of its data (or
    only ``field`` of it, raw, for scripting)."""
    cli = click.get_current_context().find_object(CliContext)
    if answer.get("raw") is not None:
        raw = answer["raw"]
        click.echo(raw.decode() if isinstance(raw, bytes) else raw, nl=False)
        return
    data = answer.get("data")
    if cli is not None and cli.json:
        echo_json(data if field is None else (data or {}).get(field))
        return
    if field is not None:
        value = (data or {}).get(field)
        click.echo(value if isinstance(value, str) else json.dumps(value))
        return
    for warning in answer.get("warnings") or ():
        click.echo(f"warning: {warning}", err=True)
    if not data:
        click.echo("Success!")
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        click.echo(f"{key.ljust(width)}  {text}")
