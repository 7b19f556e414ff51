"""Reading PEM input (certificates, chains, CSRs, bundles) with clear errors, and writing
certificates in the formats Vault answers with (``pem``, ``der``, ``pem_bundle``)."""

from __future__ import annotations

import base64
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits

__all__ = [
    "FORMATS",
    "cert_der",
    "cert_pem",
    "encode_cert",
    "parse_cert",
    "parse_certs",
    "parse_csr",
    "pem_blocks",
]

#: The output formats of issue/sign/generate.
FORMATS = ("pem", "der", "pem_bundle")

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


def _bytes(text: str | bytes, what: str) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    if len(data) > limits.PKI_MAX_PEM_BYTES:
        raise InvalidArgumentError(f"{what} is larger than {limits.PKI_MAX_PEM_BYTES} bytes")
    return data


def pem_blocks(text: str | bytes, what: str) -> list[tuple[str, bytes]]:
    """Every ``(label, block)`` PEM block in ``text`` (e.g. ``("CERTIFICATE", b"---…")``)."""
    data = _bytes(text, what)
    blocks = [(m.group(1).decode(), m.group(0)) for m in _BLOCK.finditer(data)]
    if not blocks:
        raise InvalidArgumentError(f"{what} is not PEM: no '-----BEGIN …-----' block found")
    return blocks


def parse_certs(text: str | bytes, what: str = "certificate") -> list[x509.Certificate]:
    """The certificates of a PEM text, in order (at most ``PKI_MAX_CHAIN_CERTS``)."""
    blocks = [block for label, block in pem_blocks(text, what) if label == "CERTIFICATE"]
    if not blocks:
        raise InvalidArgumentError(f"{what} holds no 'CERTIFICATE' PEM block")
    if len(blocks) > limits.PKI_MAX_CHAIN_CERTS:
        raise InvalidArgumentError(
            f"{what} holds more than {limits.PKI_MAX_CHAIN_CERTS} certificates"
        )
    certs = []
    for index, block in enumerate(blocks):
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise InvalidArgumentError(
                f"{what}: certificate #{index + 1} is invalid: {exc}"
            ) from None
    return certs


def parse_cert(text: str | bytes, what: str = "certificate") -> x509.Certificate:
    """Exactly one certificate from PEM."""
    certs = parse_certs(text, what)
    if len(certs) != 1:
        raise InvalidArgumentError(f"{what} must hold exactly one certificate")
    return certs[0]


def parse_csr(text: str | bytes) -> x509.CertificateSigningRequest:
    """A PEM certificate signing request whose self-signature is valid."""
    blocks = [b for label, b in pem_blocks(text, "csr") if label.endswith("CERTIFICATE REQUEST")]
    if len(blocks) != 1:
        raise InvalidArgumentError("csr must hold exactly one 'CERTIFICATE REQUEST' PEM block")
    try:
        csr = x509.load_pem_x509_csr(blocks[0])
        valid = csr.is_signature_valid
    except ValueError as exc:
        raise InvalidArgumentError(f"csr is invalid: {exc}") from None
    if not valid:
        raise InvalidArgumentError("csr signature is invalid")
    return csr


def cert_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text (ending in a newline)."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_der(cert: x509.Certificate) -> bytes:
    """The certificate as DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def encode_cert(cert: x509.Certificate, fmt: str) -> str:
    """A certificate in an answer: PEM text (without the final newline, as Vault
    answers), or base64 DER for ``der``."""
    if fmt == "der":
        return base64.b64encode(cert_der(cert)).decode()
    return cert_pem(cert).strip()
