"""Key material: making it, loading it into ``cryptography`` objects, and showing it.

Stored forms (bytes in the key entry): AEAD and HMAC keys are raw bytes, an Ed25519 key
is its 32-byte seed, ECDSA and RSA keys are unencrypted PKCS#8 DER. Shown forms follow
Vault: raw keys and Ed25519 keys in base64 (an exported Ed25519 private key is Go's
64-byte seed‖public form), ECDSA private keys as SEC 1 PEM, RSA private keys as PKCS#1
PEM, ECDSA/RSA public keys as SubjectPublicKeyInfo PEM.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from aspen_secrets.engines.transit.keytypes import Family, KeyType

__all__ = ["PrivateKey", "PublicKey", "generate", "load_private", "private_text", "public_text"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_PKCS8 = (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8)


def generate(kind: KeyType, key_size: int = 0) -> bytes:
    """Fresh material for one version of a key of ``kind`` (CPU-heavy for RSA)."""
    if kind.family is Family.AEAD:
        return os.urandom(kind.size)
    if kind.family is Family.HMAC:
        return os.urandom(key_size or kind.size)
    if kind.family is Family.ED25519:
        return os.urandom(32)
    if kind.family is Family.ECDSA:
        private: PrivateKey = ec.generate_private_key(_CURVES[kind.curve]())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=kind.size)
    return private.private_bytes(*_PKCS8, serialization.NoEncryption())


def load_private(kind: KeyType, material: bytes) -> PrivateKey:
    """The private key object of asymmetric ``material``."""
    if kind.family is Family.ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(material)
    key: Any = serialization.load_der_private_key(
        material, password=None, unsafe_skip_rsa_key_validation=True
    )
    return key


def public_text(kind: KeyType, private: PrivateKey) -> str:
    """The public key as Vault shows it (base64 for Ed25519, else PEM)."""
    public = private.public_key()
    if kind.family is Family.ED25519:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def private_text(kind: KeyType, material: bytes) -> str:
    """The private key as Vault exports it (raw keys and Ed25519 in base64, else PEM)."""
    if kind.family in (Family.AEAD, Family.HMAC):
        return base64.b64encode(material).decode()
    private = load_private(kind, material)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(material + public).decode()
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
