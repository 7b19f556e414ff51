"""Private keys of the PKI engine: which types and sizes are allowed, making them, and
writing them out the way Vault does.

Vault's key types are ``rsa`` (2048/3072/4096/8192 bits, default 2048), ``ec``
(224/256/384/521 bits, default 256) and ``ed25519``. Its default ``private_key_format``
(``der``) writes a key in its native PEM form (``RSA PRIVATE KEY``, ``EC PRIVATE KEY``);
``pkcs8`` writes ``PRIVATE KEY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from aspen.errors import InvalidArgumentError

__all__ = [
    "KEY_TYPES",
    "KeySpec",
    "PrivateKey",
    "PublicKey",
    "check_public_key",
    "encode_private_key",
    "key_spec",
    "key_type_of",
    "load_private_key",
    "same_public_key",
    "signature_hash",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: The key types a CA or a certificate may have.
KEY_TYPES = ("rsa", "ec", "ed25519")
_RSA_BITS = (2048, 3072, 4096, 8192)
_EC_CURVES: dict[int, type[ec.EllipticCurve]] = {
    224: ec.SECP224R1,
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
_DEFAULT_BITS = {"rsa": 2048, "ec": 256, "ed25519": 0}
_SIGNATURE_BITS: dict[int, Callable[[], hashes.HashAlgorithm]] = {
    256: hashes.SHA256,
    384: hashes.SHA384,
    512: hashes.SHA512,
}
#: An EC key's curve decides its hash (as Vault does).
_EC_HASH_BITS = {224: 256, 256: 256, 384: 384, 521: 512}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A validated key type and size (``bits`` is 0 for ed25519)."""

    type: str
    bits: int

    def generate(self) -> PrivateKey:
        """A new random private key of this type and size."""
        if self.type == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.bits)
        if self.type == "ec":
            return ec.generate_private_key(_EC_CURVES[self.bits]())
        return ed25519.Ed25519PrivateKey.generate()


def key_spec(key_type: str, key_bits: int) -> KeySpec:
    """Validate ``key_type``/``key_bits`` (0 bits = the type's default) as Vault does."""
    if key_type not in KEY_TYPES:
        raise InvalidArgumentError(
            f"unknown key_type {key_type!r}; expected one of {', '.join(KEY_TYPES)}"
        )
    bits = key_bits or _DEFAULT_BITS[key_type]
    if key_type == "rsa" and bits not in _RSA_BITS:
        raise InvalidArgumentError(
            f"unsupported key_bits {bits} for rsa; expected one of {_RSA_BITS}"
        )
    if key_type == "ec" and bits not in _EC_CURVES:
        raise InvalidArgumentError(
            f"unsupported key_bits {bits} for ec; expected one of {tuple(_EC_CURVES)}"
        )
    if key_type == "ed25519":
        bits = 0
    return KeySpec(key_type, bits)


def key_type_of(key: PrivateKey | PublicKey) -> KeySpec:
    """The type and size of a key (private or public)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeySpec("rsa", key.key_size)
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return KeySpec("ec", key.curve.key_size)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return KeySpec("ed25519", 0)
    raise InvalidArgumentError(f"unsupported key algorithm {type(key).__name__}")


def check_public_key(key: object, role_type: str, role_bits: int) -> KeySpec:
    """Check a CSR's public key against a role's ``key_type`` (``any`` allows every
    supported type) and minimum ``key_bits``; return its spec."""
    if not isinstance(key, PublicKey):
        raise InvalidArgumentError(f"unsupported public key algorithm {type(key).__name__}")
    spec = key_type_of(key)
    if spec.type == "rsa" and spec.bits < _RSA_BITS[0]:
        raise InvalidArgumentError(f"RSA keys must have at least {_RSA_BITS[0]} bits")
    if spec.type == "ec" and spec.bits not in _EC_CURVES:
        raise InvalidArgumentError(f"unsupported EC curve with {spec.bits} bits")
    if role_type == "any":
        return spec
    if spec.type != role_type:
        raise InvalidArgumentError(
            f"role requires keys of type {role_type!r}, the CSR has a {spec.type!r} key"
        )
    wanted = role_bits or _DEFAULT_BITS[role_type]
    if spec.type != "ed25519" and spec.bits < wanted:
        raise InvalidArgumentError(
            f"role requires {role_type} keys of at least {wanted} bits, the CSR has {spec.bits}"
        )
    return spec


def signature_hash(key: PrivateKey, signature_bits: int = 0) -> hashes.HashAlgorithm | None:
    """The hash a CA key signs with: SHA-256 for RSA (or ``signature_bits``), the curve's
    for EC, none for ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _SIGNATURE_BITS[_EC_HASH_BITS[key.curve.key_size]]()
    bits = signature_bits or 256
    if bits not in _SIGNATURE_BITS:
        raise InvalidArgumentError(
            f"unsupported signature_bits {bits}; expected one of {tuple(_SIGNATURE_BITS)}"
        )
    return _SIGNATURE_BITS[bits]()


def encode_private_key(key: PrivateKey, private_key_format: str = "der") -> bytes:
    """The key as PEM: its native form (``der``, Vault's default) or PKCS#8 (``pkcs8``)."""
    if private_key_format == "pkcs8" or isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.PKCS8
    else:
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_private_key(pem: bytes) -> PrivateKey:
    """A stored private key from PEM (``invalid_argument`` if it is not one we support).

    RSA keys are not re-validated (a costly check): every stored key was made here or
    checked when it was imported.
    """
    try:
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError):
        raise InvalidArgumentError("the private key is not valid unencrypted PEM") from None
    if not isinstance(key, PrivateKey):
        raise InvalidArgumentError(f"unsupported private key algorithm {type(key).__name__}")
    return key


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    """Whether two public keys are the same key."""
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*raw) == b.public_bytes(*raw)
