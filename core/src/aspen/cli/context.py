"""What every CLI command shares: where the node is, the token, the output mode, a client."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from aspen.cli.output import EXIT_USAGE, fail
from aspen.node.config import default_data_dir
from aspen.transport.datadir import ROOT_TOKEN_FILE

__all__ = ["CliContext", "json_option", "pass_cli", "pass_client", "resolve_token"]

F = TypeVar("F", bound=Callable[..., Any])


def resolve_token(token_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """The token: ``--token-file``, else ``$ASPEN_TOKEN``, else the default root-token file."""
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {token_file}: {exc.strerror}", param_hint="--token-file"
            ) from None
    if environ.get("ASPEN_TOKEN"):
        return environ["ASPEN_TOKEN"].strip()
    try:
        return (default_data_dir() / ROOT_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


@dataclass
class CliContext:
    """The global options, plus a client opened on first use and closed with the command."""

    endpoint: str
    token_file: Path | None
    json: bool
    timeout: float
    #: Returns the plugin manager (loaded on first call).
    plugin_manager: Callable[[], Any]
    #: Where ``endpoint`` came from, for messages: ``--endpoint`` or ``ASPEN_ENDPOINT``.
    endpoint_source: str = "--endpoint"
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        """A connected sync client (``aspen.connect``), closed when the command ends.

        A malformed endpoint or a missing token ends the command with a one-line usage
        error (exit code 2) before anything is dialled.
        """
        if self._client is None:
            import aspen

            self._check_endpoint()
            token = resolve_token(self.token_file, os.environ)
            if token is None:
                fail(
                    "error: ASPEN_TOKEN is not set (and no --token-file, no root token in "
                    f"{default_data_dir() / ROOT_TOKEN_FILE}); for the cluster ./start runs: "
                    "set -a; . .aspen/dev/env; set +a",
                    EXIT_USAGE,
                )
            client = aspen.connect(self.endpoint, token=token, timeout=self.timeout)
            click.get_current_context().call_on_close(client.close)
            self._client = client
        return self._client

    def _check_endpoint(self) -> None:
        """Exit with a usage error unless every endpoint is ``[tcp://]host:port``."""
        from aspen.client.connection import parse_endpoint

        endpoints = [e for e in self.endpoint.split(",") if e.strip()]
        if not endpoints:
            fail(f"error: {self.endpoint_source} is empty: give host:port", EXIT_USAGE)
        for endpoint in endpoints:
            try:
                parse_endpoint(endpoint)
            except ValueError as exc:
                fail(f"error: {self.endpoint_source}: {exc} (e.g. 127.0.0.1:7401)", EXIT_USAGE)


#: Decorator passing the :class:`CliContext` as the first argument.
pass_cli = click.make_pass_decorator(CliContext)


def pass_client(func: F) -> F:
    """Decorator for (plugin) commands: pass a connected sync client as the first argument."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cli = click.get_current_context().find_object(CliContext)
        if cli is None:
            raise click.UsageError("this command must run under the 'aspen' CLI")
        return func(cli.client(), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    cli = ctx.find_object(CliContext)
    if value and cli is not None:
        cli.json = True


def json_option(func: F) -> F:
    """Add a local ``--json`` flag (same as the global ``aspen --json``)."""
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help="Print JSON instead of text.",
    )(func)
