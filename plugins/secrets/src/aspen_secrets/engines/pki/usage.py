"""Key usage and extended key usage by Vault's names (``DigitalSignature``, ``ServerAuth``…)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from aspen.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_KEY_USAGE",
    "FLAG_EXT_KEY_USAGE",
    "check_ext_key_usage",
    "check_key_usage",
    "ext_key_usage",
    "key_usage",
]

#: A role's default ``key_usage``.
DEFAULT_KEY_USAGE = ("DigitalSignature", "KeyAgreement", "KeyEncipherment")

_KEY_USAGE = {
    "digitalsignature": "digital_signature",
    "contentcommitment": "content_commitment",
    "nonrepudiation": "content_commitment",
    "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement",
    "certsign": "key_cert_sign",
    "crlsign": "crl_sign",
    "encipheronly": "encipher_only",
    "decipheronly": "decipher_only",
}
_EXT_KEY_USAGE = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "serverauth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientauth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codesigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailprotection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocspsigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
#: Role flags that add an extended key usage.
FLAG_EXT_KEY_USAGE = {
    "server_flag": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_flag": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing_flag": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection_flag": ExtendedKeyUsageOID.EMAIL_PROTECTION,
}


def _norm(name: str, prefix: str) -> str:
    text = name.strip().lower()
    return text[len(prefix) :] if text.startswith(prefix) else text


def check_key_usage(names: Sequence[str]) -> list[str]:
    """Validate ``key_usage`` names (case-insensitive, ``KeyUsage`` prefix optional)."""
    for name in names:
        if _norm(name, "keyusage") not in _KEY_USAGE:
            raise InvalidArgumentError(f"unknown key_usage {name!r}")
    return list(names)


def check_ext_key_usage(names: Sequence[str]) -> list[str]:
    """Validate ``ext_key_usage`` names (``ExtKeyUsage`` prefix optional)."""
    for name in names:
        if _norm(name, "extkeyusage") not in _EXT_KEY_USAGE:
            raise InvalidArgumentError(f"unknown ext_key_usage {name!r}")
    return list(names)


def key_usage(names: Sequence[str]) -> x509.KeyUsage | None:
    """The KeyUsage extension for ``names`` (``None`` when empty)."""
    chosen = {_KEY_USAGE[_norm(n, "keyusage")] for n in names}
    if not chosen:
        return None
    flags = {value: value in chosen for value in set(_KEY_USAGE.values())}
    if not flags["key_agreement"]:
        flags["encipher_only"] = flags["decipher_only"] = False
    return x509.KeyUsage(**flags)


def ext_key_usage(
    names: Sequence[str], flags: Sequence[x509.ObjectIdentifier] = ()
) -> x509.ExtendedKeyUsage | None:
    """The ExtendedKeyUsage extension for ``names`` plus ``flags`` (``None`` when empty)."""
    oids = list(flags)
    for name in names:
        oid = _EXT_KEY_USAGE[_norm(name, "extkeyusage")]
        if oid not in oids:
            oids.append(oid)
    return x509.ExtendedKeyUsage(oids) if oids else None
