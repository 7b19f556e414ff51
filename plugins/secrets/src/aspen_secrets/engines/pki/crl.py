"""The mount's certificate revocation list: built from the ``revoked/`` entries of the
current issuer, signed by it, and stored as one ``crl`` entry (DER plus its number).

Every change to the revocations rebuilds the CRL in the same commit, expecting the CRL
entry's revision, so concurrent revocations serialise on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aspen.errors import NotFoundError
from aspen_secrets import limits
from aspen_secrets.engines.pki.certs import key_identifier
from aspen_secrets.engines.pki.issuer import Issuer, load_issuer
from aspen_secrets.engines.pki.keys import signature_hash
from aspen_secrets.engines.pki.records import REVOKED, serial_of_path
from aspen_secrets.engines.pki.validity import utcnow
from aspen_secrets.store import ABSENT, Entry, Store, Write, modify

__all__ = [
    "CRL_PATH",
    "Revocations",
    "build_crl",
    "crl_write",
    "load_crl_der",
    "read_revocations",
    "rotate_crl",
]

#: Where the current CRL lives.
CRL_PATH = "crl"


def build_crl(
    issuer: Issuer, revoked: Mapping[str, int], number: int, now: datetime
) -> x509.CertificateRevocationList:
    """A CRL listing ``revoked`` (Vault serial → revocation time in unix seconds)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(seconds=limits.PKI_CRL_EXPIRY_SECONDS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                key_identifier(issuer.certificate)
            ),
            critical=False,
        )
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial.replace(":", ""), 16))
            .revocation_date(datetime.fromtimestamp(when, UTC))
            .build()
        )
    return builder.sign(issuer.key, signature_hash(issuer.key))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Revocations:
    """The CRL entry and every revocation, read in that order: a revocation committed
    after the read changes the CRL entry's revision too, so a CRL built from this
    snapshot and committed expecting that revision never misses one."""

    crl: Entry | None
    revoked: dict[str, dict[str, Any]]


async def read_revocations(store: Store) -> Revocations:
    """Snapshot the CRL entry, then the revocations (at most ``PKI_MAX_REVOKED_CERTS + 1``)."""
    crl = await store.get(CRL_PATH)
    found = await store.scan(REVOKED, limit=limits.PKI_MAX_REVOKED_CERTS + 1)
    return Revocations(crl, {serial_of_path(path): entry.value for path, entry in found})


def crl_write(
    issuer: Issuer,
    now: datetime,
    snapshot: Revocations,
    *,
    add: Mapping[str, int] | None = None,
) -> Write:
    """The write replacing the CRL with one listing the revocations of ``issuer`` in
    ``snapshot`` plus ``add`` (revocations committed in the same transaction)."""
    listed = {
        serial: value["revocation_time"]
        for serial, value in snapshot.revoked.items()
        if value.get("issuer_id") == issuer.issuer_id
    }
    listed.update(add or {})
    current = snapshot.crl
    number = current.value["number"] + 1 if current is not None else 1
    crl = build_crl(issuer, listed, number, now)
    value = {
        "der": crl.public_bytes(serialization.Encoding.DER),
        "number": number,
        "issuer_id": issuer.issuer_id,
    }
    return Write(CRL_PATH, value, expect_revision=current.revision if current else ABSENT)


async def load_crl_der(store: Store, mount: str) -> bytes:
    """The current CRL (DER); ``not_found`` when the mount has no CA yet."""
    entry = await store.get(CRL_PATH)
    if entry is None:
        raise NotFoundError(f"no CRL on {mount}: the mount has no CA yet")
    return entry.value["der"]


async def rotate_crl(store: Store) -> bool:
    """Rebuild and re-sign the CRL now (``crl/rotate``, and after ``tidy``); ``False``
    when the mount has no CA."""

    async def compute() -> tuple[list[Write], bool]:
        issuer = await load_issuer(store)
        if issuer is None:
            return [], False
        return [crl_write(issuer, utcnow(), await read_revocations(store))], True

    return await modify(store, compute)
