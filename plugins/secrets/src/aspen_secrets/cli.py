"""``aspen secrets …``: the ``vault`` CLI's generic verbs, ``kv`` for KV v2, and the engine
groups (``transit``, ``pki``, ``sops``) attached lazily when their modules import.

```
aspen secrets write secret/data/app data=…     # generic: any path, k=v pairs or - (JSON)
aspen secrets kv put app user=ann pass=s3cret  # KV v2 at --mount secret
aspen secrets kv get app --field pass
aspen --json secrets kv metadata get app
```
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from aspen_secrets.cli_common import logical_request, show

__all__ = ["ENGINE_GROUPS", "parse_pairs", "secrets_cli"]

#: Sub-groups attached when their module imports: name → ``module:attribute``.
ENGINE_GROUPS = {
    "transit": "aspen_secrets.engines.transit.cli:transit_cli",
    "pki": "aspen_secrets.engines.pki.cli:pki_cli",
    "sops": "aspen_secrets.sops.cli:sops_cli",
}


def parse_pairs(pairs: tuple[str, ...], *, allow_stdin: bool = True) -> dict[str, Any]:
    """``k=v`` arguments (``k=@file`` reads a file, ``k=-`` stdin) into a map; a lone ``-``
    reads a JSON object from stdin."""
    if allow_stdin and pairs == ("-",):
        try:
            data = json.loads(sys.stdin.read() or "{}")
        except ValueError as exc:
            raise click.BadParameter(f"stdin is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise click.BadParameter("stdin must hold a JSON object")
        return data
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}")
        if value == "-":
            value = sys.stdin.read()
        elif value.startswith("@"):
            try:
                value = Path(value[1:]).read_text()
            except OSError as exc:
                raise click.BadParameter(f"{key}: cannot read {value[1:]}: {exc}") from None
        out[key] = value
    return out


class _LazyGroup(click.Group):
    """A group whose engine sub-groups are imported only when used or listed."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in commands plus the engine groups that import."""
        names = set(super().list_commands(ctx))
        names.update(n for n in self._lazy if self._load(n) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, else an engine group (``None`` if it does not import)."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self._lazy:
            command = self._load(cmd_name)
        return command

    def _load(self, name: str) -> click.Command | None:
        module, _, attr = self._lazy[name].partition(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except Exception:
            return None
        return command if isinstance(command, click.Command) else None


@click.group("secrets", cls=_LazyGroup, lazy=ENGINE_GROUPS)
def secrets_cli() -> None:
    """Vault-compatible secrets: KV v2, transit, PKI and SOPS."""


# ----------------------------------------------------------------------------- generic
@secrets_cli.command("read")
@click.argument("path")
@click.argument("params", nargs=-1)
@click.option("--field", help="Print only this field of the data.")
def read_cmd(path: str, params: tuple[str, ...], field: str | None) -> None:
    """Read PATH (mount included), with optional k=v query parameters."""
    answer = logical_request("read", path, parse_pairs(params, allow_stdin=False))
    _check_status(answer, path)
    show(answer, field=field)


@secrets_cli.command("write")
@click.argument("path")
@click.argument("params", nargs=-1)
@click.option("--field", help="Print only this field of the data.")
def write_cmd(path: str, params: tuple[str, ...], field: str | None) -> None:
    """Write k=v pairs (or a JSON object on stdin with -) to PATH."""
    show(logical_request("write", path, parse_pairs(params)), field=field)


@secrets_cli.command("list")
@click.argument("path")
def list_cmd(path: str) -> None:
    """List the keys under PATH."""
    _show_keys(logical_request("list", path))


@secrets_cli.command("delete")
@click.argument("path")
@click.argument("params", nargs=-1)
def delete_cmd(path: str, params: tuple[str, ...]) -> None:
    """Delete PATH."""
    show(logical_request("delete", path, parse_pairs(params, allow_stdin=False)))


@secrets_cli.command("status")
@click.pass_context
def status_cmd(ctx: click.Context) -> None:
    """This node's secrets state: sealed or not, root key source, HTTP address."""
    from aspen.cli.context import CliContext

    cli = ctx.find_object(CliContext)
    if cli is None:
        raise click.UsageError("this command must run under the 'aspen' CLI")
    show({"data": cli.client().call("secrets.status")})


def _check_status(answer: dict[str, Any], path: str) -> None:
    """Exit 2 (as ``vault`` does) when the answer carries an error status, e.g. a read of
    a deleted KV v2 version (its metadata is still printed with ``--json``)."""
    status = answer.get("status")
    if isinstance(status, int) and status >= 400:
        from aspen.cli.context import CliContext

        cli = click.get_current_context().find_object(CliContext)
        if cli is not None and cli.json:
            show(answer)
        click.echo(f"No value found at {path} (status {status})", err=True)
        raise click.exceptions.Exit(2)


def _show_keys(answer: dict[str, Any]) -> None:
    """Print a LIST answer: one key per line (or JSON)."""
    from aspen.cli.context import CliContext

    cli = click.get_current_context().find_object(CliContext)
    keys = (answer.get("data") or {}).get("keys", [])
    if cli is not None and cli.json:
        show(answer)
        return
    for key in keys:
        click.echo(key)


# ----------------------------------------------------------------------------- kv v2
_mount_option = click.option(
    "--mount", default="secret", show_default=True, help="Where the KV v2 engine is mounted."
)


def _kv_path(mount: str, kind: str, path: str) -> str:
    return f"{mount.strip('/')}/{kind}/{path.strip('/')}".rstrip("/")


def _versions(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"versions must be integers, got {text!r}") from None


@secrets_cli.group("kv")
def kv_cli() -> None:
    """KV v2 secrets (like `vault kv`)."""


@kv_cli.command("put")
@_mount_option
@click.option("--cas", type=int, help="Write only if the current version is this (0: new).")
@click.argument("path")
@click.argument("params", nargs=-1, required=True)
def kv_put(mount: str, cas: int | None, path: str, params: tuple[str, ...]) -> None:
    """Write a new version of the secret at PATH from k=v pairs (or - for JSON)."""
    body: dict[str, Any] = {"data": parse_pairs(params)}
    if cas is not None:
        body["options"] = {"cas": cas}
    show(logical_request("write", _kv_path(mount, "data", path), body))


@kv_cli.command("get")
@_mount_option
@click.option("--version", type=int, help="Read this version (default: the latest).")
@click.option("--field", help="Print only this key of the secret.")
@click.argument("path")
def kv_get(mount: str, version: int | None, field: str | None, path: str) -> None:
    """Read the secret at PATH."""
    query = {"version": version} if version is not None else {}
    answer = logical_request("read", _kv_path(mount, "data", path), query)
    _check_status(answer, _kv_path(mount, "data", path))
    from aspen.cli.context import CliContext

    cli = click.get_current_context().find_object(CliContext)
    if cli is not None and cli.json and field is None:
        show(answer)
        return
    secret = ((answer.get("data") or {}).get("data")) or {}
    show({"data": secret, "warnings": answer.get("warnings")}, field=field)


@kv_cli.command("patch")
@_mount_option
@click.argument("path")
@click.argument("params", nargs=-1, required=True)
def kv_patch(mount: str, path: str, params: tuple[str, ...]) -> None:
    """Merge k=v pairs into the latest version of the secret at PATH."""
    show(logical_request("patch", _kv_path(mount, "data", path), {"data": parse_pairs(params)}))


@kv_cli.command("delete")
@_mount_option
@click.option("--versions", help="Comma list of versions (default: the latest).")
@click.argument("path")
def kv_delete(mount: str, versions: str | None, path: str) -> None:
    """Soft-delete the latest version (or --versions) of the secret at PATH."""
    if versions:
        body = {"versions": _versions(versions)}
        show(logical_request("write", _kv_path(mount, "delete", path), body))
    else:
        show(logical_request("delete", _kv_path(mount, "data", path)))


def _versions_command(name: str, help_text: str) -> None:
    @kv_cli.command(name, help=help_text)
    @_mount_option
    @click.option("--versions", required=True, help="Comma list of versions.")
    @click.argument("path")
    def command(mount: str, versions: str, path: str) -> None:
        body = {"versions": _versions(versions)}
        show(logical_request("write", _kv_path(mount, name, path), body))


_versions_command("undelete", "Restore soft-deleted --versions of the secret at PATH.")
_versions_command("destroy", "Permanently remove --versions of the secret at PATH.")


@kv_cli.command("list")
@_mount_option
@click.argument("path", default="")
def kv_list(mount: str, path: str) -> None:
    """List the secrets under PATH."""
    _show_keys(logical_request("list", _kv_path(mount, "metadata", path)))


@kv_cli.group("metadata")
def kv_metadata() -> None:
    """A secret's metadata and settings."""


@kv_metadata.command("get")
@_mount_option
@click.argument("path")
def kv_metadata_get(mount: str, path: str) -> None:
    """Show the metadata (versions, settings) of the secret at PATH."""
    show(logical_request("read", _kv_path(mount, "metadata", path)))


@kv_metadata.command("put")
@_mount_option
@click.option("--max-versions", type=int, help="Versions to keep (0: the engine default).")
@click.option("--cas-required/--no-cas-required", default=None, help="Require cas on writes.")
@click.option("--delete-version-after", help="Delete versions after this long (e.g. 768h).")
@click.option("--custom-metadata", multiple=True, help="k=v; repeat for more.")
@click.argument("path")
def kv_metadata_put(
    mount: str,
    max_versions: int | None,
    cas_required: bool | None,
    delete_version_after: str | None,
    custom_metadata: tuple[str, ...],
    path: str,
) -> None:
    """Change the settings of the secret at PATH."""
    body: dict[str, Any] = {}
    if max_versions is not None:
        body["max_versions"] = max_versions
    if cas_required is not None:
        body["cas_required"] = cas_required
    if delete_version_after is not None:
        body["delete_version_after"] = delete_version_after
    if custom_metadata:
        body["custom_metadata"] = parse_pairs(custom_metadata, allow_stdin=False)
    show(logical_request("write", _kv_path(mount, "metadata", path), body))


@kv_metadata.command("delete")
@_mount_option
@click.argument("path")
def kv_metadata_delete(mount: str, path: str) -> None:
    """Delete the secret at PATH with all its versions and metadata."""
    show(logical_request("delete", _kv_path(mount, "metadata", path)))
