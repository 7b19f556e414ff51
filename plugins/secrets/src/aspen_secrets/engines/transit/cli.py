"""``aspen secrets transit …``: create, rotate, encrypt, decrypt, sign and verify with
transit keys over the ``secrets.request`` RPC."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import click

from aspen_secrets.cli_common import logical_request, show

__all__ = ["transit_cli"]


def _mount_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--mount", default="transit", show_default=True, help="Where the engine is mounted."
    )(func)


def _base64_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--base64", "is_b64", is_flag=True, help=help_text)


def _signing_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``sign`` and ``verify`` share (algorithms, base64 input, mount)."""
    func = _mount_option(func)
    func = _base64_option("MESSAGE is already base64.")(func)
    func = click.option(
        "--signature-algorithm", default="pss", show_default=True, help="RSA only."
    )(func)
    return click.option("--hash-algorithm", default="sha2-256", show_default=True)(func)


def _signing_data(
    message: str, is_b64: bool, hash_algorithm: str, signature_algorithm: str
) -> dict[str, Any]:
    return {
        "input": _payload(message, is_b64),
        "hash_algorithm": hash_algorithm,
        "signature_algorithm": signature_algorithm,
    }


def _payload(text: str, is_b64: bool) -> str:
    """``text`` as the base64 the API wants (checked when it already is base64)."""
    if not is_b64:
        return base64.b64encode(text.encode()).decode()
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise click.BadParameter("not valid base64") from None
    return text


@click.group("transit")
def transit_cli() -> None:
    """Encryption as a service with named, versioned keys (Vault's transit)."""


@transit_cli.command("create")
@click.argument("name")
@click.option("--type", "key_type", default="aes256-gcm96", show_default=True)
@click.option("--derived", is_flag=True, help="Derive a key per request context.")
@click.option("--exportable", is_flag=True, help="Allow exporting the key material.")
@_mount_option
def create_cmd(name: str, key_type: str, derived: bool, exportable: bool, mount: str) -> None:
    """Create key NAME."""
    data = {"type": key_type, "derived": derived, "exportable": exportable}
    show(logical_request("write", f"{mount}/keys/{name}", data))


@transit_cli.command("rotate")
@click.argument("name")
@_mount_option
def rotate_cmd(name: str, mount: str) -> None:
    """Add a new version to key NAME."""
    show(logical_request("write", f"{mount}/keys/{name}/rotate"), field="latest_version")


@transit_cli.command("encrypt")
@click.argument("name")
@click.argument("plaintext")
@_base64_option("PLAINTEXT is already base64.")
@_mount_option
def encrypt_cmd(name: str, plaintext: str, is_b64: bool, mount: str) -> None:
    """Encrypt PLAINTEXT with key NAME; prints the ciphertext."""
    data = {"plaintext": _payload(plaintext, is_b64)}
    show(logical_request("write", f"{mount}/encrypt/{name}", data), field="ciphertext")


@transit_cli.command("decrypt")
@click.argument("name")
@click.argument("ciphertext")
@_base64_option("Print the plaintext in base64.")
@_mount_option
def decrypt_cmd(name: str, ciphertext: str, is_b64: bool, mount: str) -> None:
    """Decrypt CIPHERTEXT with key NAME; prints the plaintext."""
    answer = logical_request("write", f"{mount}/decrypt/{name}", {"ciphertext": ciphertext})
    encoded = (answer.get("data") or {}).get("plaintext", "")
    if is_b64:
        click.echo(encoded)
    else:
        click.echo(base64.b64decode(encoded).decode("utf-8", errors="replace"))


@transit_cli.command("sign")
@click.argument("name")
@click.argument("message")
@_signing_options
def sign_cmd(
    name: str,
    message: str,
    hash_algorithm: str,
    signature_algorithm: str,
    is_b64: bool,
    mount: str,
) -> None:
    """Sign MESSAGE with key NAME; prints the signature."""
    data = _signing_data(message, is_b64, hash_algorithm, signature_algorithm)
    show(logical_request("write", f"{mount}/sign/{name}", data), field="signature")


@transit_cli.command("verify")
@click.argument("name")
@click.argument("message")
@click.argument("signature")
@_signing_options
def verify_cmd(
    name: str,
    message: str,
    signature: str,
    hash_algorithm: str,
    signature_algorithm: str,
    is_b64: bool,
    mount: str,
) -> None:
    """Check SIGNATURE of MESSAGE with key NAME; prints true or false, exits 1 if false."""
    data = {
        **_signing_data(message, is_b64, hash_algorithm, signature_algorithm),
        "signature": signature,
    }
    answer = logical_request("write", f"{mount}/verify/{name}", data)
    show(answer, field="valid")
    if not (answer.get("data") or {}).get("valid"):
        raise SystemExit(1)
