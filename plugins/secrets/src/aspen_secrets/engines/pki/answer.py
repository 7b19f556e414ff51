"""The answers of the certificate-producing endpoints, in the requested format.

``pem`` (default): PEM texts. ``der``: base64 DER. ``pem_bundle``: ``certificate`` holds
the private key (if any), the certificate and its issuing chain, concatenated.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from aspen_secrets.engines.pki.certs import format_serial
from aspen_secrets.engines.pki.keys import PrivateKey, encode_private_key, key_type_of
from aspen_secrets.engines.pki.pem import FORMATS, encode_cert
from aspen_secrets.engines.pki.records import unix
from aspen_secrets.fields import get_str

__all__ = ["OutputFormat", "cert_answer", "encode_key", "output_format"]

_KEY_FORMATS = ("der", "pkcs8", "pem")


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """A request's ``format`` and ``private_key_format``."""

    format: str = "pem"
    private_key_format: str = "der"


def output_format(data: Mapping[str, Any]) -> OutputFormat:
    """Read ``format`` and ``private_key_format`` (400 on unknown values)."""
    fields = dict(data)
    fmt = get_str(fields, "format", "pem", choices=FORMATS) or "pem"
    key_format = get_str(fields, "private_key_format", "der", choices=(*_KEY_FORMATS, ""))
    return OutputFormat(fmt, key_format or "der")


def encode_key(key: PrivateKey, out: OutputFormat) -> str:
    """A private key for an answer: PEM, or base64 DER for ``der``."""
    pkcs8 = out.private_key_format == "pkcs8"
    if out.format != "der":
        return encode_private_key(key, "pkcs8" if pkcs8 else "der").decode().strip()
    if pkcs8 or isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.PKCS8
    else:
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
    return base64.b64encode(der).decode()


def cert_answer(
    cert: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    out: OutputFormat,
    *,
    private_key: PrivateKey | None = None,
    with_chain: bool = True,
) -> dict[str, Any]:
    """``certificate``, ``issuing_ca`` (``chain[0]``), ``ca_chain``, ``serial_number``,
    ``expiration`` and, with a key, ``private_key`` and ``private_key_type``."""
    answer: dict[str, Any] = {
        "certificate": encode_cert(cert, out.format),
        "issuing_ca": encode_cert(chain[0], out.format),
        "serial_number": format_serial(cert.serial_number),
        "expiration": unix(cert.not_valid_after_utc),
    }
    if with_chain:
        answer["ca_chain"] = [encode_cert(c, out.format) for c in chain]
    if private_key is not None:
        answer["private_key"] = encode_key(private_key, out)
        answer["private_key_type"] = key_type_of(private_key).type
    if out.format == "pem_bundle":
        parts = [answer["private_key"]] if private_key is not None else []
        parts.append(answer["certificate"])
        parts += [encode_cert(c, "pem") for c in chain if c != cert]
        answer["certificate"] = "\n".join(parts)
    return answer
