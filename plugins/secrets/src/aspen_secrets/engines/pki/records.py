"""The per-certificate entries of a PKI mount.

``certs/<serial>`` = ``{certificate, not_after, issuer_id}`` for every certificate the
mount issued (unless the role says ``no_store``), and ``revoked/<serial>`` =
``{revocation_time, not_after, issuer_id}`` for every revocation; ``<serial>`` is Vault's
serial with dashes (``1f-0a-…``). One entry per certificate, so nothing grows unbounded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509

from aspen_secrets.engines.pki.certs import format_serial, serial_key
from aspen_secrets.engines.pki.pem import cert_pem
from aspen_secrets.store import ABSENT, Write

__all__ = [
    "CERTS",
    "REVOKED",
    "cert_path",
    "new_cert_write",
    "revoked_path",
    "serial_of_path",
    "unix",
]

#: Prefix of the certificate entries.
CERTS = "certs/"
#: Prefix of the revocation entries.
REVOKED = "revoked/"


def unix(moment: datetime) -> int:
    """Whole seconds since the epoch (how Vault answers times)."""
    return int(moment.timestamp())


def cert_path(serial: str) -> str:
    """The entry of a certificate (``serial`` in Vault's colon format)."""
    return CERTS + serial_key(serial)


def revoked_path(serial: str) -> str:
    """The revocation entry of a certificate."""
    return REVOKED + serial_key(serial)


def serial_of_path(key: str) -> str:
    """The Vault serial of an entry key under ``certs/`` or ``revoked/``."""
    return key.rpartition("/")[2].replace("-", ":")


def new_cert_write(cert: x509.Certificate, issuer_id: str) -> Write:
    """The write that records a newly issued certificate (its serial must be new)."""
    value: dict[str, Any] = {
        "certificate": cert_pem(cert),
        "not_after": unix(cert.not_valid_after_utc),
        "issuer_id": issuer_id,
    }
    return Write(cert_path(format_serial(cert.serial_number)), value, expect_revision=ABSENT)
