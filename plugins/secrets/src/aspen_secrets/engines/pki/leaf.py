"""Leaf certificates under a role: ``issue/<role>`` (a new key, returned once and never
stored) and ``sign/<role>`` (a CSR's key). Every name is checked against the role; the
TTL is capped by the role's ``max_ttl`` (or the mount's) and by the CA's expiry."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import anyio
from cryptography import x509

from aspen.errors import InvalidArgumentError
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.pki.answer import cert_answer, output_format
from aspen_secrets.engines.pki.certs import CertSpec, sign_certificate
from aspen_secrets.engines.pki.issuer import Issuer, require_issuer
from aspen_secrets.engines.pki.keys import PublicKey, check_public_key, key_spec
from aspen_secrets.engines.pki.names import check_names, uri_allowed
from aspen_secrets.engines.pki.pem import parse_csr
from aspen_secrets.engines.pki.records import new_cert_write
from aspen_secrets.engines.pki.roles import name_policy
from aspen_secrets.engines.pki.sans import Names, csr_names, request_names
from aspen_secrets.engines.pki.subject import SUBJECT_FIELDS, build_subject
from aspen_secrets.engines.pki.urls import load_urls
from aspen_secrets.engines.pki.usage import FLAG_EXT_KEY_USAGE, ext_key_usage, key_usage
from aspen_secrets.engines.pki.validity import mount_max_ttl, utcnow, validity
from aspen_secrets.fields import get_str
from aspen_secrets.logical import Response
from aspen_secrets.store import Store, Write, modify

__all__ = ["ROLES", "issue", "load_role", "sign"]

#: Prefix of the role entries.
ROLES = "roles/"


async def load_role(store: Store, name: str) -> dict[str, Any]:
    """A stored role; ``invalid_argument`` (as Vault answers) when it does not exist."""
    entry = await store.get(ROLES + name)
    if entry is None:
        raise InvalidArgumentError(f"unknown role: {name}")
    return entry.value


def check_role_names(names: Names, role: Mapping[str, Any]) -> None:
    """Raise ``invalid_argument`` naming the first name ``role`` does not allow."""
    policy = name_policy(role)
    common_name = names.common_name
    if role["require_cn"] and not common_name:
        raise InvalidArgumentError("the common_name field is required (the role requires a CN)")
    if common_name and not _is_ip(common_name):
        check_names([common_name], policy, "common name")
    check_names(names.hostnames(), policy, "subject alternative name")
    if names.ips and not role["allow_ip_sans"]:
        raise InvalidArgumentError(
            f"IP subject alternative names are not allowed by this role, but {names.ips[0]} "
            "was requested"
        )
    for uri in names.uris:
        if not uri_allowed(uri, role["allowed_uri_sans"]):
            raise InvalidArgumentError(
                f"URI subject alternative name {uri} not allowed by this role"
            )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _leaf_spec(
    role: Mapping[str, Any],
    names: Names,
    public_key: PublicKey,
    data: Mapping[str, Any],
    ca: Issuer,
    mount: Mount,
) -> tuple[CertSpec, list[str]]:
    window = validity(
        data,
        now=utcnow(),
        default_ttl=role["ttl"],
        max_ttl=role["max_ttl"] or mount_max_ttl(mount.config),
        ca_not_after=ca.not_after,
        not_before_skew=role["not_before_duration"],
    )
    flags = [oid for flag, oid in FLAG_EXT_KEY_USAGE.items() if role[flag]]
    spec = CertSpec(
        subject=build_subject(names.common_name, {f: role[f] for f in SUBJECT_FIELDS}),
        public_key=public_key,
        serial=x509.random_serial_number(),
        not_before=window.not_before,
        not_after=window.not_after,
        dns_names=names.dns,
        ip_addresses=names.ips,
        emails=names.emails,
        uris=names.uris,
        leaf_basic_constraints=role["basic_constraints_valid_for_non_ca"],
        key_usage=key_usage(role["key_usage"]),
        ext_key_usage=ext_key_usage(role["ext_key_usage"], flags),
    )
    return spec, window.warnings


async def _produce(
    store: Store,
    mount: Mount,
    role_name: str,
    data: Mapping[str, Any],
    csr: x509.CertificateSigningRequest | None,
) -> Response:
    """Issue (``csr`` is ``None``: a new key) or sign a leaf certificate under a role."""
    out = output_format(data)

    async def compute() -> tuple[list[Write], Any]:
        role = await load_role(store, role_name)
        ca = await require_issuer(store, mount.path)
        if csr is None:
            names = request_names(data, require_cn=False)
            if role["key_type"] == "any":
                raise InvalidArgumentError(
                    "role key_type 'any' is only for signing CSRs, not for issuing"
                )
            spec_of_key = key_spec(role["key_type"], role["key_bits"])
            key = await anyio.to_thread.run_sync(spec_of_key.generate)  # slow: off the loop
            public_key: PublicKey = key.public_key()
        else:
            names = csr_names(
                csr, data, use_cn=role["use_csr_common_name"], use_sans=role["use_csr_sans"]
            )
            check_public_key(csr.public_key(), role["key_type"], role["key_bits"])
            public_key = csr.public_key()  # type: ignore[assignment]
            key = None
        check_role_names(names, role)
        names.to_ascii()
        spec, warnings = _leaf_spec(role, names, public_key, data, ca, mount)
        spec.urls = await load_urls(store)
        cert = await anyio.to_thread.run_sync(sign_certificate, spec, ca.signer())
        writes = [] if role["no_store"] else [new_cert_write(cert, ca.issuer_id)]
        return writes, (ca, cert, key, warnings)

    ca, cert, key, warnings = await modify(store, compute)
    answer = cert_answer(cert, ca.chain, out, private_key=key)
    return Response(answer, warnings=tuple(warnings))


async def issue(store: Store, mount: Mount, role_name: str, data: Mapping[str, Any]) -> Response:
    """``issue/<role>``: a new key and its certificate (the key is never stored)."""
    return await _produce(store, mount, role_name, data, None)


async def sign(store: Store, mount: Mount, role_name: str, data: Mapping[str, Any]) -> Response:
    """``sign/<role>``: a certificate for a CSR's key."""
    csr = parse_csr(get_str(dict(data), "csr", required=True) or "")
    return await _produce(store, mount, role_name, data, csr)
