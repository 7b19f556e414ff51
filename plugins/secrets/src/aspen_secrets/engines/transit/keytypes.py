"""The key types a transit key can have, and what each one can do (Vault's table)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aspen.errors import InvalidArgumentError

__all__ = ["KEY_TYPES", "Family", "KeyType", "key_type"]


class Family(enum.StrEnum):
    """How a key type's material is made and used."""

    AEAD = "aead"
    RSA = "rsa"
    ECDSA = "ecdsa"
    ED25519 = "ed25519"
    HMAC = "hmac"


@dataclass(frozen=True, slots=True)
class KeyType:
    """One key type: ``size`` is the key length in bytes (AEAD), bits (RSA), or the
    default length in bytes (HMAC); ``curve`` names an ECDSA curve as Vault shows it."""

    name: str
    family: Family
    size: int = 0
    curve: str = ""

    @property
    def encryption(self) -> bool:
        """Whether the type encrypts and decrypts."""
        return self.family in (Family.AEAD, Family.RSA)

    @property
    def signing(self) -> bool:
        """Whether the type signs and verifies."""
        return self.family in (Family.RSA, Family.ECDSA, Family.ED25519)

    @property
    def derivation(self) -> bool:
        """Whether keys of the type may be derived per context."""
        return self.family in (Family.AEAD, Family.ED25519)

    @property
    def convergent(self) -> bool:
        """Whether the type supports convergent (deterministic) encryption."""
        return self.family is Family.AEAD

    @property
    def asymmetric(self) -> bool:
        """Whether the type has a public key."""
        return self.family in (Family.RSA, Family.ECDSA, Family.ED25519)


#: Every supported type by its Vault name.
KEY_TYPES: dict[str, KeyType] = {
    t.name: t
    for t in (
        KeyType("aes128-gcm96", Family.AEAD, 16),
        KeyType("aes256-gcm96", Family.AEAD, 32),
        KeyType("chacha20-poly1305", Family.AEAD, 32),
        KeyType("ed25519", Family.ED25519),
        KeyType("ecdsa-p256", Family.ECDSA, curve="P-256"),
        KeyType("ecdsa-p384", Family.ECDSA, curve="P-384"),
        KeyType("ecdsa-p521", Family.ECDSA, curve="P-521"),
        KeyType("rsa-2048", Family.RSA, 2048),
        KeyType("rsa-3072", Family.RSA, 3072),
        KeyType("rsa-4096", Family.RSA, 4096),
        KeyType("hmac", Family.HMAC, 32),
    )
}


def key_type(name: str) -> KeyType:
    """The type called ``name``; ``invalid_argument`` naming the valid ones otherwise."""
    found = KEY_TYPES.get(name)
    if found is None:
        raise InvalidArgumentError(
            f"unknown key type {name!r}; valid types: {', '.join(KEY_TYPES)}"
        )
    return found
