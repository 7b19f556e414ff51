"""``aspen secrets sops …``: decrypt and encrypt SOPS files locally (no node needed).

Exit codes follow :mod:`aspen.cli.output`: 0 success, 2 (:data:`EXIT_USAGE`) for bad
input (malformed file, bad key file, no identity opens the data key), and
:data:`EXIT_MAC_MISMATCH` (4) when the file's MAC or a value fails to authenticate.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from aspen.cli.context import CliContext
from aspen.cli.output import EXIT_ERROR, EXIT_USAGE, echo_json, exit_code_for, fail
from aspen.errors import AspenError
from aspen_secrets.sops.age import load_age_identities
from aspen_secrets.sops.document import decrypt_bytes, encrypt_bytes, read_bounded
from aspen_secrets.sops.errors import SopsError, SopsMacMismatchError
from aspen_secrets.sops.stores import FORMATS, emit_plain, format_for_path

__all__ = ["EXIT_MAC_MISMATCH", "sops_cli"]

#: Exit status when a file fails its integrity check (distinct from malformed input, 2).
EXIT_MAC_MISMATCH = EXIT_ERROR

_FORMAT = click.Choice(FORMATS)


def _fail(exc: AspenError) -> None:
    code = EXIT_MAC_MISMATCH if isinstance(exc, SopsMacMismatchError) else exit_code_for(exc)
    fail("error: " + " ".join(exc.message.split()), code)


def _json_wanted(local: bool) -> bool:
    cli = click.get_current_context().find_object(CliContext)
    return local or (cli is not None and cli.json)


def _jsonable(value: Any) -> Any:
    """Bytes (non-UTF-8 cleartext) as ``{"b64": ...}``; everything else unchanged."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so ``path`` is never half-written."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _recipients(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.group("sops")
def sops_cli() -> None:
    """SOPS files encrypted for age keys: decrypt (checking the MAC) and encrypt."""


@sops_cli.command("decrypt")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--age-key-file",
    envvar="SOPS_AGE_KEY_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="age identities (AGE-SECRET-KEY-1… lines); default $SOPS_AGE_KEY_FILE.",
)
@click.option("--format", "input_format", type=_FORMAT, help="Default: from the extension.")
@click.option("--output-format", type=_FORMAT, help="Write the cleartext in this format.")
@click.option("--json", "as_json", is_flag=True, help="Print the document as typed JSON.")
def decrypt(
    file: Path,
    age_key_file: Path | None,
    input_format: str | None,
    output_format: str | None,
    as_json: bool,
) -> None:
    """Print the cleartext of the SOPS FILE, after checking its MAC."""
    if age_key_file is None:
        fail("error: no age key file: pass --age-key-file or set SOPS_AGE_KEY_FILE", EXIT_USAGE)
    fmt = input_format or format_for_path(file)
    try:
        identities = load_age_identities(age_key_file)
        document = decrypt_bytes(read_bounded(file), fmt, identities)
        if _json_wanted(as_json):
            echo_json(_jsonable(document))
            return
        click.echo(emit_plain(document, output_format or fmt), nl=False)
    except AspenError as exc:
        _fail(exc)


@sops_cli.command("encrypt")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--age",
    "age_recipients",
    multiple=True,
    envvar="SOPS_AGE_RECIPIENTS",
    help="age recipient(s) age1…, comma-separated or repeated; default $SOPS_AGE_RECIPIENTS.",
)
@click.option("--format", "input_format", type=_FORMAT, help="Default: from the extension.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
@click.option("--unencrypted-suffix", help="Keys with this suffix stay clear (default).")
@click.option("--encrypted-suffix", help="Encrypt only keys with this suffix.")
@click.option("--unencrypted-regex", help="Keys matching this regex stay clear.")
@click.option("--encrypted-regex", help="Encrypt only keys matching this regex.")
@click.option("--mac-only-encrypted", is_flag=True, help="MAC only the encrypted values.")
def encrypt(
    file: Path,
    age_recipients: tuple[str, ...],
    input_format: str | None,
    output: Path | None,
    **rules: Any,
) -> None:
    """Encrypt the cleartext FILE for age recipients and write a SOPS file."""
    recipients = _recipients(age_recipients)
    if not recipients:
        fail("error: no recipients: pass --age or set SOPS_AGE_RECIPIENTS", EXIT_USAGE)
    fmt = input_format or format_for_path(file)
    try:
        data = encrypt_bytes(read_bounded(file), fmt, recipients, **rules)
        if output is None:
            click.echo(data, nl=False)
            return
        try:
            _write_atomically(output, data)
        except OSError as exc:
            raise SopsError(f"cannot write {output}: {exc.strerror}") from None
    except AspenError as exc:
        _fail(exc)
