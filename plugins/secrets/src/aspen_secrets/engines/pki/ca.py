"""The CA's life on a mount: generate a root, generate an intermediate key and CSR, install
the signed intermediate, sign another mount's intermediate CSR, delete the CA.

Every operation reads, computes (keys, serials and ids are made here, before the commit;
key generation and signing run in a worker thread, off the event loop) and commits
through :func:`~aspen_secrets.store.modify`, so a failure leaves nothing half-written and
concurrent calls cannot install two CAs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aspen.errors import InvalidArgumentError
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.pki.answer import OutputFormat, cert_answer, encode_key, output_format
from aspen_secrets.engines.pki.certs import CertSpec, Signer, sign_certificate
from aspen_secrets.engines.pki.crl import CRL_PATH, crl_write, read_revocations
from aspen_secrets.engines.pki.issuer import (
    ISSUER_PATH,
    PENDING_PATH,
    Issuer,
    PendingKey,
    check_chain,
    load_pending,
    require_issuer,
)
from aspen_secrets.engines.pki.keys import (
    KeySpec,
    key_spec,
    key_type_of,
    same_public_key,
    signature_hash,
)
from aspen_secrets.engines.pki.pem import parse_certs, parse_csr
from aspen_secrets.engines.pki.records import new_cert_write
from aspen_secrets.engines.pki.sans import Names, csr_names, request_names
from aspen_secrets.engines.pki.subject import build_subject, read_subject_fields
from aspen_secrets.engines.pki.urls import load_urls
from aspen_secrets.engines.pki.usage import key_usage
from aspen_secrets.engines.pki.validity import mount_max_ttl, utcnow, validity
from aspen_secrets.fields import get_bool, get_int, get_str
from aspen_secrets.logical import Response
from aspen_secrets.store import ABSENT, Store, Write, modify

__all__ = [
    "delete_ca",
    "generate_intermediate",
    "generate_root",
    "set_signed",
    "sign_intermediate",
]

_KINDS = ("internal", "exported")
_CA_KEY_USAGE = key_usage(["CertSign", "CRLSign", "DigitalSignature"])


@dataclass(frozen=True, slots=True)
class _CaRequest:
    names: Names
    subject: x509.Name
    key: KeySpec
    max_path_length: int
    signature_bits: int
    out: OutputFormat


def _kind(kind: str) -> bool:
    """Whether ``internal``/``exported`` means exported (other kinds are refused)."""
    if kind not in _KINDS:
        raise InvalidArgumentError(f"unsupported type {kind!r}: expected 'internal' or 'exported'")
    return kind == "exported"


def _read_ca_request(data: Mapping[str, Any]) -> _CaRequest:
    fields = dict(data)
    names = request_names(fields)
    names.to_ascii()
    return _CaRequest(
        names=names,
        subject=build_subject(names.common_name, read_subject_fields(fields)),
        key=key_spec(
            get_str(fields, "key_type", "rsa") or "rsa", get_int(fields, "key_bits", 0, min=0) or 0
        ),
        max_path_length=get_int(fields, "max_path_length", -1, min=-1),  # type: ignore[arg-type]
        signature_bits=get_int(fields, "signature_bits", 0, min=0) or 0,
        out=output_format(fields),
    )


def _no_issuer_message(mount: Mount) -> str:
    return (
        f"{mount.path} already has a CA (this engine keeps one issuer per mount); "
        f"delete it first (DELETE {mount.path}root) or use another mount"
    )


async def _refuse_if_issuer(store: Store, mount: Mount) -> None:
    if await store.get(ISSUER_PATH) is not None:
        raise InvalidArgumentError(_no_issuer_message(mount))


def _ca_spec(
    request: _CaRequest, public_key: Any, data: Mapping[str, Any], max_ttl: int, ca: Issuer | None
) -> tuple[CertSpec, list[str]]:
    """The spec of a CA certificate (root or intermediate) and the validity warnings."""
    now = utcnow()
    window = validity(
        data,
        now=now,
        default_ttl=max_ttl,
        max_ttl=max_ttl,
        ca_not_after=ca.not_after if ca is not None else None,
    )
    spec = CertSpec(
        subject=request.subject,
        public_key=public_key,
        serial=x509.random_serial_number(),
        not_before=window.not_before,
        not_after=window.not_after,
        dns_names=request.names.dns,
        ip_addresses=request.names.ips,
        emails=request.names.emails,
        uris=request.names.uris,
        is_ca=True,
        path_length=None if request.max_path_length < 0 else request.max_path_length,
        key_usage=_CA_KEY_USAGE,
    )
    return spec, window.warnings


async def generate_root(store: Store, mount: Mount, kind: str, data: Mapping[str, Any]) -> Response:
    """``root/generate/<kind>``: a new self-signed CA for this mount."""
    exported = _kind(kind)
    request = _read_ca_request(data)
    max_ttl = mount_max_ttl(mount.config)

    async def compute() -> tuple[list[Write], Any]:
        await _refuse_if_issuer(store, mount)
        key = await anyio.to_thread.run_sync(request.key.generate)
        spec, warnings = _ca_spec(request, key.public_key(), data, max_ttl, None)
        spec.urls = await load_urls(store)
        signer = Signer(request.subject, key, None, request.signature_bits)
        cert = await anyio.to_thread.run_sync(sign_certificate, spec, signer)
        issuer = Issuer(str(uuid.uuid4()), str(uuid.uuid4()), key, (cert,))
        writes = [
            Write(ISSUER_PATH, issuer.to_value(), expect_revision=ABSENT),
            Write(PENDING_PATH, delete=True),
            new_cert_write(cert, issuer.issuer_id),
            crl_write(issuer, utcnow(), await read_revocations(store)),
        ]
        return writes, (issuer, warnings)

    issuer, warnings = await modify(store, compute)
    answer = cert_answer(
        issuer.certificate,
        issuer.chain,
        request.out,
        private_key=issuer.key if exported else None,
        with_chain=False,
    )
    answer |= _ids(issuer)
    return Response(answer, warnings=tuple(warnings))


def _ids(issuer: Issuer) -> dict[str, str]:
    return {
        "issuer_id": issuer.issuer_id,
        "issuer_name": "",
        "key_id": issuer.key_id,
        "key_name": "",
    }


async def generate_intermediate(
    store: Store, mount: Mount, kind: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """``intermediate/generate/<kind>``: a new key, kept as pending, and its CSR."""
    exported = _kind(kind)
    request = _read_ca_request(data)
    add_constraints = get_bool(dict(data), "add_basic_constraints")

    async def compute() -> tuple[list[Write], Any]:
        await _refuse_if_issuer(store, mount)
        pending_entry = await store.get(PENDING_PATH)
        key = await anyio.to_thread.run_sync(request.key.generate)
        pending = PendingKey(str(uuid.uuid4()), key)
        builder = x509.CertificateSigningRequestBuilder().subject_name(request.subject)
        sans = _csr_sans(request.names)
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        if add_constraints:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            )
        algorithm = signature_hash(key, request.signature_bits)
        try:
            csr = await anyio.to_thread.run_sync(builder.sign, key, algorithm)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidArgumentError(f"cannot build the CSR: {exc}") from None
        expect = pending_entry.revision if pending_entry is not None else ABSENT
        return [Write(PENDING_PATH, pending.to_value(), expect_revision=expect)], (pending, csr)

    pending, csr = await modify(store, compute)
    csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode().strip()
    answer: dict[str, Any] = {"csr": csr_pem, "key_id": pending.key_id}
    if exported:
        answer["private_key"] = encode_key(pending.key, request.out)
        answer["private_key_type"] = key_type_of(pending.key).type
    return answer


def _csr_sans(names: Names) -> x509.SubjectAlternativeName | None:
    general: list[x509.GeneralName] = [
        *(x509.DNSName(n) for n in names.dns),
        *(x509.RFC822Name(e) for e in names.emails),
        *(x509.IPAddress(ip) for ip in names.ips),
        *(x509.UniformResourceIdentifier(u) for u in names.uris),
    ]
    return x509.SubjectAlternativeName(general) if general else None


async def set_signed(store: Store, mount: Mount, data: Mapping[str, Any]) -> dict[str, Any]:
    """``intermediate/set-signed``: install the signed intermediate (optionally followed by
    its chain) for the pending key."""
    text = get_str(dict(data), "certificate", required=True)
    chain = parse_certs(text or "", "certificate")
    check_chain(chain)

    async def compute() -> tuple[list[Write], Any]:
        await _refuse_if_issuer(store, mount)
        pending = await load_pending(store, mount.path)
        if not same_public_key(chain[0].public_key(), pending.key.public_key()):  # type: ignore[arg-type]
            raise InvalidArgumentError(
                "the certificate does not match the pending intermediate key of "
                f"{mount.path} (key_id {pending.key_id}); sign the CSR from "
                "intermediate/generate"
            )
        issuer = Issuer(str(uuid.uuid4()), pending.key_id, pending.key, tuple(chain))
        writes = [
            Write(ISSUER_PATH, issuer.to_value(), expect_revision=ABSENT),
            Write(PENDING_PATH, delete=True, expect_revision=pending.revision),
            crl_write(issuer, utcnow(), await read_revocations(store)),
        ]
        return writes, issuer

    issuer = await modify(store, compute)
    return {
        "imported_issuers": [issuer.issuer_id],
        "imported_keys": [],
        "mapping": {issuer.issuer_id: issuer.key_id},
        "existing_issuers": None,
        "existing_keys": None,
    }


async def sign_intermediate(store: Store, mount: Mount, data: Mapping[str, Any]) -> Response:
    """``root/sign-intermediate``: sign another CA's CSR with this mount's CA."""
    fields = dict(data)
    csr = parse_csr(get_str(fields, "csr", required=True) or "")
    use_csr_values = get_bool(fields, "use_csr_values")
    if use_csr_values:
        names = csr_names(csr, fields, use_cn=True, use_sans=True)
        subject = csr.subject
    else:
        names = request_names(fields)
        subject = build_subject(names.common_name, read_subject_fields(fields))
    names.to_ascii()
    request = _CaRequest(
        names=names,
        subject=subject,
        key=key_type_of(csr.public_key()),  # type: ignore[arg-type]
        max_path_length=get_int(fields, "max_path_length", -1, min=-1),  # type: ignore[arg-type]
        signature_bits=get_int(fields, "signature_bits", 0, min=0) or 0,
        out=output_format(fields),
    )
    max_ttl = mount_max_ttl(mount.config)

    async def compute() -> tuple[list[Write], Any]:
        ca = await require_issuer(store, mount.path)
        path_length = _child_path_length(ca, request.max_path_length)
        spec, warnings = _ca_spec(request, csr.public_key(), fields, max_ttl, ca)
        spec.path_length = path_length
        spec.urls = await load_urls(store)
        signer = Signer(ca.certificate.subject, ca.key, ca.certificate, request.signature_bits)
        cert = await anyio.to_thread.run_sync(sign_certificate, spec, signer)
        return [new_cert_write(cert, ca.issuer_id)], (ca, cert, warnings)

    ca, cert, warnings = await modify(store, compute)
    return Response(cert_answer(cert, ca.chain, request.out), warnings=tuple(warnings))


def _child_path_length(ca: Issuer, requested: int) -> int | None:
    """The path length of a CA signed by ``ca``: what was asked, within ``ca``'s limit."""
    limit = ca.path_length
    if limit is None:
        return None if requested < 0 else requested
    if limit == 0:
        raise InvalidArgumentError(
            "the CA has a max path length of 0 and cannot sign intermediate CAs"
        )
    return limit - 1 if requested < 0 else min(requested, limit - 1)


async def delete_ca(store: Store) -> Response:
    """``DELETE root``: remove the CA, its key, any pending key and the CRL (issued
    certificates and revocations stay until ``tidy``)."""
    writes = [Write(path, delete=True) for path in (ISSUER_PATH, PENDING_PATH, CRL_PATH)]
    await store.commit(writes)
    return Response(
        None,
        warnings=("DELETE /root deletes the CA; issued certificates are kept until tidy",),
    )
