"""Signatures with Ed25519, ECDSA (ASN.1 or JWS marshalling) and RSA (PSS or PKCS#1 v1.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from aspen.errors import InvalidArgumentError
from aspen_secrets.engines.transit import hashes as transit_hashes
from aspen_secrets.engines.transit.material import PrivateKey, PublicKey

__all__ = ["SignOptions", "sign", "verify"]

_SIGNATURE_ALGORITHMS = ("pss", "pkcs1v15")
_MARSHALING = ("asn1", "jws")


@dataclass(frozen=True, slots=True)
class SignOptions:
    """How to sign: ``hash_algorithm`` (ignored by Ed25519), ``prehashed`` input,
    RSA ``signature_algorithm`` and PSS ``salt_length``, ECDSA ``marshaling``."""

    hash_algorithm: str = "sha2-256"
    prehashed: bool = False
    signature_algorithm: str = "pss"
    marshaling: str = "asn1"
    salt_length: str = "auto"

    def __post_init__(self) -> None:
        transit_hashes.algorithm(self.hash_algorithm)
        if self.signature_algorithm not in _SIGNATURE_ALGORITHMS:
            raise InvalidArgumentError(
                f"unsupported signature_algorithm {self.signature_algorithm!r}; "
                f"valid: {', '.join(_SIGNATURE_ALGORITHMS)}"
            )
        if self.marshaling not in _MARSHALING:
            raise InvalidArgumentError(
                f"unsupported marshaling_algorithm {self.marshaling!r}; "
                f"valid: {', '.join(_MARSHALING)}"
            )
        if self.salt_length not in ("auto", "hash") and not _is_salt(self.salt_length):
            raise InvalidArgumentError(
                f"invalid salt_length {self.salt_length!r}: 'auto', 'hash' or a number >= -1"
            )

    @property
    def urlsafe(self) -> bool:
        """Whether the signature text is unpadded URL-safe base64 (JWS)."""
        return self.marshaling == "jws"


def _is_salt(text: str) -> bool:
    return text == "-1" or text.isdigit()


def _hash(options: SignOptions) -> hashes.HashAlgorithm:
    return transit_hashes.algorithm(options.hash_algorithm)


def _digest_arg(options: SignOptions) -> Any:
    algorithm = _hash(options)
    return utils.Prehashed(algorithm) if options.prehashed else algorithm


def _pss(options: SignOptions, *, signing: bool) -> padding.PSS:
    algorithm = _hash(options)
    if options.salt_length == "auto":
        salt: Any = padding.PSS.MAX_LENGTH if signing else padding.PSS.AUTO
    elif options.salt_length in ("hash", "-1"):
        salt = padding.PSS.DIGEST_LENGTH
    else:
        salt = int(options.salt_length)
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)


def _rsa_padding(options: SignOptions, *, signing: bool) -> padding.AsymmetricPadding:
    if options.signature_algorithm == "pkcs1v15":
        return padding.PKCS1v15()
    return _pss(options, signing=signing)


def _curve_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    return (key.curve.key_size + 7) // 8


def sign(private: PrivateKey, data: bytes, options: SignOptions) -> bytes:
    """The signature of ``data`` (raw bytes, marshalled as ``options`` asks)."""
    try:
        if isinstance(private, ed25519.Ed25519PrivateKey):
            if options.prehashed:
                raise InvalidArgumentError("prehashed input is not supported for ed25519 keys")
            return private.sign(data)
        if isinstance(private, ec.EllipticCurvePrivateKey):
            der = private.sign(data, ec.ECDSA(_digest_arg(options)))
            if not options.urlsafe:
                return der
            r, s = utils.decode_dss_signature(der)
            size = _curve_bytes(private)
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert isinstance(private, rsa.RSAPrivateKey)
        return private.sign(data, _rsa_padding(options, signing=True), _digest_arg(options))
    except ValueError as exc:
        raise InvalidArgumentError(f"cannot sign: {exc}") from None


def verify(public: PublicKey, data: bytes, signature: bytes, options: SignOptions) -> bool:
    """Whether ``signature`` is a valid signature of ``data``."""
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            if options.prehashed:
                raise InvalidArgumentError("prehashed input is not supported for ed25519 keys")
            public.verify(signature, data)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            if options.urlsafe:
                size = _curve_bytes(public)
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                signature = utils.encode_dss_signature(r, s)
            public.verify(signature, data, ec.ECDSA(_digest_arg(options)))
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(
                signature, data, _rsa_padding(options, signing=False), _digest_arg(options)
            )
    except InvalidSignature:
        return False
    except ValueError as exc:
        raise InvalidArgumentError(f"cannot verify: {exc}") from None
    return True
