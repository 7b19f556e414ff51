"""``aspen secrets pki …``: create a root CA, write roles, issue and revoke certificates,
and fetch the CA certificate and CRL over the ``secrets.request`` RPC.

```
aspen secrets pki root "Example Root" --ttl 8760h --key-type ec
aspen secrets pki role web allowed_domains=example.com allow_subdomains=true
aspen secrets pki issue web www.example.com --alt-names api.example.com --ttl 24h
aspen secrets pki revoke 1f:0a:…
aspen secrets pki ca > ca.pem; aspen secrets pki crl > crl.pem
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from aspen_secrets.cli_common import logical_request, show

__all__ = ["pki_cli"]


def _mount_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--mount", default="pki", show_default=True, help="Where the engine is mounted."
    )(func)


@click.group("pki")
def pki_cli() -> None:
    """A certificate authority: roles, issuing, revocation (Vault's PKI)."""


@pki_cli.command("root")
@click.argument("common_name")
@click.option("--ttl", default=None, help="Lifetime, e.g. 8760h (capped by the mount).")
@click.option("--key-type", type=click.Choice(["rsa", "ec", "ed25519"]), default="rsa")
@click.option("--exported", is_flag=True, help="Also print the CA's private key (once).")
@_mount_option
def root_cmd(common_name: str, ttl: str | None, key_type: str, exported: bool, mount: str) -> None:
    """Generate the mount's root CA named COMMON_NAME."""
    data: dict[str, Any] = {"common_name": common_name, "key_type": key_type}
    if ttl:
        data["ttl"] = ttl
    kind = "exported" if exported else "internal"
    show(logical_request("write", f"{mount}/root/generate/{kind}", data))


@pki_cli.command("role")
@click.argument("name")
@click.argument("fields", nargs=-1)
@_mount_option
def role_cmd(name: str, fields: tuple[str, ...], mount: str) -> None:
    """Create or replace role NAME from key=value FIELDS (or - for JSON on stdin)."""
    from aspen_secrets.cli import parse_pairs

    show(logical_request("write", f"{mount}/roles/{name}", parse_pairs(fields)))


@pki_cli.command("issue")
@click.argument("role")
@click.argument("common_name")
@click.option("--alt-names", default="", help="Comma-separated DNS names or emails.")
@click.option("--ip-sans", default="", help="Comma-separated IP addresses.")
@click.option("--ttl", default=None, help="Lifetime, e.g. 24h (capped by the role).")
@_mount_option
def issue_cmd(
    role: str, common_name: str, alt_names: str, ip_sans: str, ttl: str | None, mount: str
) -> None:
    """Issue a certificate and a new key for COMMON_NAME under ROLE."""
    data: dict[str, Any] = {"common_name": common_name}
    for key, value in (("alt_names", alt_names), ("ip_sans", ip_sans), ("ttl", ttl)):
        if value:
            data[key] = value
    show(logical_request("write", f"{mount}/issue/{role}", data))


@pki_cli.command("revoke")
@click.argument("serial")
@_mount_option
def revoke_cmd(serial: str, mount: str) -> None:
    """Revoke the certificate with SERIAL (``1f:0a:…``)."""
    show(logical_request("write", f"{mount}/revoke", {"serial_number": serial}))


@pki_cli.command("ca")
@click.option("--chain", is_flag=True, help="Print the whole chain up to the root.")
@_mount_option
def ca_cmd(chain: bool, mount: str) -> None:
    """Print the CA certificate (PEM)."""
    show(logical_request("read", f"{mount}/{'ca_chain' if chain else 'ca/pem'}"))


@pki_cli.command("crl")
@_mount_option
def crl_cmd(mount: str) -> None:
    """Print the current CRL (PEM)."""
    show(logical_request("read", f"{mount}/crl/pem"))
