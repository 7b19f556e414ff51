"""The mount's one CA (issuer): its certificate, key and chain, and the key of a pending
intermediate (between ``intermediate/generate`` and ``intermediate/set-signed``).

Stored entries: ``ca/issuer`` = ``{issuer_id, key_id, certificate, key, chain}`` (PEM;
``chain`` runs from this CA's certificate up to the root, as far as it is known) and
``ca/pending`` = ``{key_id, key}``.

Loading the CA's private key costs (RSA); readers that only need the certificates use
:func:`load_chain`, and :func:`load_issuer` keeps the issuers it loaded in a small bounded
cache keyed by the entry's issuer id and revision (a changed entry is loaded afresh).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtensionOID

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.engines.pki.certs import Signer
from aspen_secrets.engines.pki.keys import PrivateKey, encode_private_key, load_private_key
from aspen_secrets.engines.pki.pem import cert_pem, parse_certs
from aspen_secrets.store import Store

__all__ = [
    "ISSUER_PATH",
    "PENDING_PATH",
    "Issuer",
    "PendingKey",
    "check_chain",
    "load_chain",
    "load_issuer",
    "load_pending",
    "require_issuer",
]

#: Where the CA lives in the mount's store.
ISSUER_PATH = "ca/issuer"
#: Where a pending intermediate key lives.
PENDING_PATH = "ca/pending"


@dataclass(frozen=True, slots=True)
class Issuer:
    """The CA of a mount. ``chain[0]`` is ``certificate``; the last is the root (when known)."""

    issuer_id: str
    key_id: str
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    revision: int = 0

    @property
    def certificate(self) -> x509.Certificate:
        """The CA's own certificate."""
        return self.chain[0]

    @property
    def not_after(self) -> datetime:
        """When the CA certificate expires."""
        return self.certificate.not_valid_after_utc

    @property
    def path_length(self) -> int | None:
        """The CA's BasicConstraints path length (``None`` = unlimited)."""
        try:
            ext = self.certificate.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
        except x509.ExtensionNotFound:
            return None
        return ext.value.path_length  # type: ignore[attr-defined]

    def signer(self) -> Signer:
        """What signs certificates and CRLs for this CA."""
        return Signer(self.certificate.subject, self.key, self.certificate)

    def chain_pem(self) -> list[str]:
        """The chain as PEM texts (without final newlines), this CA first."""
        return [cert_pem(c).strip() for c in self.chain]

    def to_value(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "issuer_id": self.issuer_id,
            "key_id": self.key_id,
            "key": encode_private_key(self.key, "pkcs8"),
            "chain": [cert_pem(c) for c in self.chain],
        }

    @classmethod
    def from_value(cls, value: dict[str, Any], revision: int) -> Issuer:
        """The issuer from its stored form."""
        chain = tuple(parse_certs("".join(value["chain"]), "stored CA chain"))
        return cls(
            value["issuer_id"], value["key_id"], load_private_key(value["key"]), chain, revision
        )


@dataclass(frozen=True, slots=True)
class PendingKey:
    """The key of an intermediate CA waiting for its signed certificate."""

    key_id: str
    key: PrivateKey
    revision: int = 0

    def to_value(self) -> dict[str, Any]:
        """The stored form."""
        return {"key_id": self.key_id, "key": encode_private_key(self.key, "pkcs8")}


class _IssuerCache:
    """Loaded issuers by ``(issuer_id, key_id, revision)``, least recently used dropped
    beyond ``PKI_ISSUER_CACHE_ENTRIES`` (shared by the nodes of a process: locked)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str, int], Issuer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, value: dict[str, Any], revision: int) -> Issuer:
        """The issuer of a stored entry, loaded once per revision."""
        key = (str(value["issuer_id"]), str(value["key_id"]), revision)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        issuer = Issuer.from_value(value, revision)
        with self._lock:
            self._items[key] = issuer
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return issuer


_CACHE = _IssuerCache(limits.PKI_ISSUER_CACHE_ENTRIES)


async def load_issuer(store: Store) -> Issuer | None:
    """The mount's CA (with its private key), or ``None``."""
    entry = await store.get(ISSUER_PATH)
    return None if entry is None else _CACHE.get(entry.value, entry.revision)


async def load_chain(store: Store) -> tuple[x509.Certificate, ...] | None:
    """The mount's CA chain (its certificate first) without loading the private key, or
    ``None`` when there is no CA."""
    entry = await store.get(ISSUER_PATH)
    if entry is None:
        return None
    return tuple(parse_certs("".join(entry.value["chain"]), "stored CA chain"))


async def require_issuer(store: Store, mount: str) -> Issuer:
    """The mount's CA; ``invalid_argument`` when it has none yet."""
    issuer = await load_issuer(store)
    if issuer is None:
        raise InvalidArgumentError(
            f"no CA is configured on {mount}: generate a root (root/generate/…) or set a "
            "signed intermediate (intermediate/set-signed) first"
        )
    return issuer


async def load_pending(store: Store, mount: str) -> PendingKey:
    """The pending intermediate key; ``invalid_argument`` when there is none."""
    entry = await store.get(PENDING_PATH)
    if entry is None:
        raise InvalidArgumentError(
            f"no pending intermediate key on {mount}: call intermediate/generate first"
        )
    value = entry.value
    return PendingKey(value["key_id"], load_private_key(value["key"]), entry.revision)


def check_chain(chain: list[x509.Certificate]) -> None:
    """Each certificate must be a CA certificate issued (and signed) by the next one."""
    for index, cert in enumerate(chain):
        try:
            constraints = cert.extensions.get_extension_for_oid(
                ExtensionOID.BASIC_CONSTRAINTS
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:  # type: ignore[attr-defined]
            raise InvalidArgumentError(f"certificate #{index + 1} of the chain is not a CA")
        if index + 1 < len(chain):
            try:
                cert.verify_directly_issued_by(chain[index + 1])
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise InvalidArgumentError(
                    f"certificate #{index + 1} of the chain is not issued by "
                    f"certificate #{index + 2}: {exc or 'bad signature'}"
                ) from None
