"""Building and signing X.509 certificates (CA and leaf), and Vault's serial format."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from aspen.errors import InvalidArgumentError
from aspen_secrets.engines.pki.keys import PrivateKey, PublicKey, signature_hash

__all__ = [
    "CertSpec",
    "Signer",
    "Urls",
    "format_serial",
    "key_identifier",
    "parse_serial",
    "serial_key",
    "sign_certificate",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Urls:
    """Where issued certificates point (``config/urls``)."""

    issuing_certificates: tuple[str, ...] = ()
    crl_distribution_points: tuple[str, ...] = ()
    ocsp_servers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signs: the issuer's name and key, and its certificate (``None`` when the
    certificate being built is a self-signed root)."""

    name: x509.Name
    key: PrivateKey
    certificate: x509.Certificate | None = None
    signature_bits: int = 0


@dataclass(slots=True)
class CertSpec:
    """Everything in a new certificate but its issuer."""

    subject: x509.Name
    public_key: PublicKey
    serial: int
    not_before: datetime
    not_after: datetime
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[IpAddress] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    is_ca: bool = False
    path_length: int | None = None
    leaf_basic_constraints: bool = False
    key_usage: x509.KeyUsage | None = None
    ext_key_usage: x509.ExtendedKeyUsage | None = None
    urls: Urls = field(default_factory=Urls)


def key_identifier(cert_or_key: x509.Certificate | PublicKey) -> x509.SubjectKeyIdentifier:
    """A certificate's SubjectKeyIdentifier (its extension if present), or a key's."""
    if isinstance(cert_or_key, x509.Certificate):
        try:
            ext = cert_or_key.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
            return ext.value  # type: ignore[return-value]
        except x509.ExtensionNotFound:
            return x509.SubjectKeyIdentifier.from_public_key(cert_or_key.public_key())  # type: ignore[arg-type]
    return x509.SubjectKeyIdentifier.from_public_key(cert_or_key)


def _sans(spec: CertSpec) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = []
    try:
        names += [x509.DNSName(n) for n in spec.dns_names]
        names += [x509.IPAddress(ip) for ip in spec.ip_addresses]
        names += [x509.RFC822Name(e) for e in spec.emails]
        names += [x509.UniformResourceIdentifier(u) for u in spec.uris]
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid subject alternative name: {exc}") from None
    return x509.SubjectAlternativeName(names) if names else None


def sign_certificate(spec: CertSpec, signer: Signer) -> x509.Certificate:
    """Build the certificate ``spec`` describes and sign it with ``signer``."""
    issuer_ski = (
        key_identifier(signer.certificate)
        if signer.certificate is not None
        else key_identifier(spec.public_key)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(signer.name)
        .public_key(spec.public_key)
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(key_identifier(spec.public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )
    if spec.is_ca or spec.leaf_basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=spec.is_ca, path_length=spec.path_length), critical=True
        )
    if spec.key_usage is not None:
        builder = builder.add_extension(spec.key_usage, critical=True)
    if spec.ext_key_usage is not None:
        builder = builder.add_extension(spec.ext_key_usage, critical=False)
    sans = _sans(spec)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    builder = _add_urls(builder, spec.urls)
    return builder.sign(signer.key, signature_hash(signer.key, signer.signature_bits))  # type: ignore[arg-type]


def _add_urls(builder: x509.CertificateBuilder, urls: Urls) -> x509.CertificateBuilder:
    access = [
        x509.AccessDescription(
            x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)
        )
        for u in urls.issuing_certificates
    ] + [
        x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
        )
        for u in urls.ocsp_servers
    ]
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if urls.crl_distribution_points:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in urls.crl_distribution_points
        ]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return builder


def format_serial(serial: int) -> str:
    """Vault's serial format: lower-case hex bytes joined by colons (``1f:0a:…``)."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def parse_serial(text: str) -> str:
    """A serial given as ``1f:0a:…`` or ``1f-0a-…`` (any case), in Vault's format."""
    cleaned = text.strip().lower().replace("-", ":")
    parts = cleaned.split(":")
    if (
        not cleaned
        or len(cleaned) > 200
        or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts)
    ):
        raise InvalidArgumentError(f"invalid serial number {text!r}: expected hex like '1f:0a'")
    return format_serial(int("".join(parts), 16))


def serial_key(serial: str) -> str:
    """The storage key segment of a serial (colons become dashes, as in Vault)."""
    return serial.replace(":", "-")
