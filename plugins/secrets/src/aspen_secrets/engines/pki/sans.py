"""The names a certificate asks for: its common name and subject alternative names, from
request fields (``common_name``, ``alt_names``, ``ip_sans``, ``uri_sans``) or from a CSR.

As in Vault, the common name is also put in the SANs (if it is a hostname or an email)
unless ``exclude_cn_from_sans``; names with an ``@`` are email SANs, the others DNS SANs.
A common name that is an IP address becomes an IP SAN.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.pki.certs import IpAddress
from aspen_secrets.engines.pki.names import is_valid_hostname
from aspen_secrets.fields import get_bool, get_list, get_str

__all__ = ["Names", "csr_names", "idna_name", "request_names"]


@dataclass(slots=True)
class Names:
    """A common name and the SANs of a certificate."""

    common_name: str = ""
    dns: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ips: list[IpAddress] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)

    def hostnames(self) -> list[str]:
        """The names a role judges: DNS names and emails (the CN is among them unless it
        was excluded from the SANs or is an IP)."""
        return [*self.dns, *self.emails]

    def add_name(self, name: str) -> None:
        """Add a DNS or email SAN (skipping duplicates)."""
        target = self.emails if "@" in name else self.dns
        if name not in target:
            target.append(name)

    def add_ip(self, ip: IpAddress) -> None:
        """Add an IP SAN (skipping duplicates)."""
        if ip not in self.ips:
            self.ips.append(ip)

    def to_ascii(self) -> None:
        """Turn internationalized DNS names (and email domains) into their A-label form
        (``bücher.example`` → ``xn--bcher-kva.example``), as certificates carry them;
        done after the role check, as Vault does. The common name is kept as given."""
        self.dns = _unique([idna_name(n) for n in self.dns])
        self.emails = _unique([idna_name(e) for e in self.emails])

    def check_count(self) -> None:
        """At most ``PKI_MAX_SANS`` SANs in all."""
        if len(self.dns) + len(self.emails) + len(self.ips) + len(self.uris) > limits.PKI_MAX_SANS:
            raise InvalidArgumentError(
                f"a certificate can have at most {limits.PKI_MAX_SANS} alternative names"
            )


def idna_name(name: str) -> str:
    """``name`` with its (domain) labels as A-labels; an email keeps its local part and a
    wildcard its first label. ``invalid_argument`` when a label cannot be converted."""
    if name.isascii():
        return name
    local, at, domain = name.rpartition("@")
    head = ""
    if domain.startswith("*."):
        head, domain = "*.", domain[2:]
    try:
        converted = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidArgumentError(
            f"{name!r} is not a valid internationalized name: {exc}"
        ) from None
    return f"{local}{at}{head}{converted}"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _parse_ip(text: str) -> IpAddress:
    ip = _ip(text)
    if ip is None:
        raise InvalidArgumentError(f"invalid IP address in ip_sans: {text!r}")
    return ip


def _add_common_name(names: Names, exclude: bool) -> None:
    ip = _ip(names.common_name) if names.common_name else None
    if ip is not None:
        names.add_ip(ip)
    elif (
        names.common_name
        and not exclude
        and ("@" in names.common_name or is_valid_hostname(names.common_name, allow_wildcard=True))
    ):
        names.add_name(names.common_name)


def _bounded_list(data: dict[str, Any], name: str) -> list[str]:
    values = get_list(data, name)
    if len(values) > limits.PKI_MAX_SANS:
        raise InvalidArgumentError(f"field {name!r} has more than {limits.PKI_MAX_SANS} items")
    return values


def request_names(data: Mapping[str, Any], *, require_cn: bool = True) -> Names:
    """The names of a request's ``common_name``/``alt_names``/``ip_sans``/``uri_sans``."""
    fields = dict(data)
    common_name = get_str(fields, "common_name", "", max_len=limits.PKI_MAX_NAME_CHARS) or ""
    if require_cn and not common_name:
        raise InvalidArgumentError("missing required field 'common_name'")
    names = Names(common_name=common_name)
    _add_common_name(names, get_bool(fields, "exclude_cn_from_sans"))
    for name in _bounded_list(fields, "alt_names"):
        names.add_name(name)
    for text in _bounded_list(fields, "ip_sans"):
        names.add_ip(_parse_ip(text))
    names.uris.extend(_bounded_list(fields, "uri_sans"))
    names.check_count()
    return names


def csr_names(
    csr: x509.CertificateSigningRequest,
    data: Mapping[str, Any],
    *,
    use_cn: bool,
    use_sans: bool,
) -> Names:
    """The names of a CSR signing: the CSR's CN and/or SANs (``use_cn``/``use_sans``,
    the role's ``use_csr_*``) or else the request's fields."""
    fields = dict(data)
    from_request = request_names(fields, require_cn=False)
    names = Names()
    if use_cn:
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names.common_name = str(cns[0].value) if cns else ""
    else:
        names.common_name = from_request.common_name
    _add_common_name(names, get_bool(fields, "exclude_cn_from_sans"))
    if use_sans:
        try:
            ext = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            sans: x509.SubjectAlternativeName | None = ext.value  # type: ignore[assignment]
        except x509.ExtensionNotFound:
            sans = None
        if sans is not None:
            for name in [
                *sans.get_values_for_type(x509.DNSName),
                *sans.get_values_for_type(x509.RFC822Name),
            ]:
                names.add_name(name)
            for ip in sans.get_values_for_type(x509.IPAddress):
                if isinstance(ip, IpAddress):
                    names.add_ip(ip)
            names.uris.extend(sans.get_values_for_type(x509.UniformResourceIdentifier))
    else:
        for name in from_request.hostnames():
            if name != from_request.common_name:
                names.add_name(name)
        for ip in from_request.ips:
            names.add_ip(ip)
        names.uris.extend(from_request.uris)
    names.check_count()
    return names
