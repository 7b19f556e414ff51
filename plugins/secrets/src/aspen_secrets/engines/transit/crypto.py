"""Operations on one loaded key: encrypt/decrypt (AEAD or RSA-OAEP, derived and
convergent), HMAC, sign/verify. Every failure is an ``invalid_argument`` error."""

from __future__ import annotations

import hmac as std_hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aspen.errors import InvalidArgumentError
from aspen_secrets.engines.transit import ciphertext, material, signing
from aspen_secrets.engines.transit import hashes as transit_hashes
from aspen_secrets.engines.transit.cache import KeyCache
from aspen_secrets.engines.transit.keys import KeyPolicy, KeyVersion
from aspen_secrets.engines.transit.keytypes import Family

__all__ = ["AUTH_FAILED", "KeyHandle", "derive"]

#: The error text of a ciphertext that does not authenticate (Go's, as Vault shows it).
AUTH_FAILED = "cipher: message authentication failed"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def derive(key: bytes, context: bytes, length: int) -> bytes:
    """HKDF-SHA256 of ``key`` with ``context`` as info and no salt (Vault's ``hkdf_sha256``)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=context).derive(key)


def _aead(type_name: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return ChaCha20Poly1305(key) if type_name == "chacha20-poly1305" else AESGCM(key)


class KeyHandle:
    """A key policy read at ``revision``, with the operations it allows."""

    def __init__(self, policy: KeyPolicy, revision: int, cache: KeyCache) -> None:
        self.policy = policy
        self.revision = revision
        self._cache = cache
        self.kind = policy.kind

    @property
    def cheap(self) -> bool:
        """Whether encryption and signing with this key are cheap enough (microseconds for
        small inputs) to run on the event loop: AEAD and HMAC keys, not RSA or EC."""
        return self.kind.family in (Family.AEAD, Family.HMAC)

    # --- key material -----------------------------------------------------------------

    def _context(self, context: bytes | None) -> bytes:
        if not self.policy.derived:
            return b""
        if not context:
            raise InvalidArgumentError(
                "missing 'context' for key derivation; the key was created using a derived "
                "key, which means additional, per-request information must be included in "
                "order to perform operations with the key"
            )
        return context

    def _symmetric(self, version: KeyVersion, context: bytes | None) -> bytes:
        ctx = self._context(context)
        return derive(version.key, ctx, len(version.key)) if ctx else version.key

    def _private(
        self, number: int, version: KeyVersion, context: bytes | None
    ) -> material.PrivateKey:
        ctx = self._context(context)
        if ctx:
            seed = derive(version.key, ctx, 32)
            return material.load_private(self.kind, seed)
        ident = (self.policy.name, self.revision, number)
        return self._cache.get(ident, lambda: material.load_private(self.kind, version.key))

    def _require(self, capability: bool, what: str) -> None:
        if not capability:
            raise InvalidArgumentError(f"key type {self.kind.name} does not support {what}")

    # --- encryption -------------------------------------------------------------------

    def encrypt(
        self,
        plaintext: bytes,
        *,
        context: bytes | None = None,
        associated_data: bytes | None = None,
        key_version: int | None = None,
    ) -> tuple[str, int]:
        """``(vault:vN:… ciphertext, N)`` of ``plaintext``."""
        self._require(self.kind.encryption, "encryption")
        number = self.policy.encryption_version(key_version)
        version = self.policy.versions[number]
        if self.kind.family is Family.RSA:
            if associated_data:
                raise InvalidArgumentError("associated_data is not supported for RSA keys")
            public = self._private(number, version, None).public_key()
            assert isinstance(public, rsa.RSAPublicKey)
            try:
                blob = public.encrypt(plaintext, _OAEP)
            except ValueError:
                raise InvalidArgumentError(
                    f"plaintext is too long for an RSA-OAEP encryption with {self.kind.name}"
                ) from None
            return ciphertext.encode(number, blob), number
        key = self._symmetric(version, context)
        if self.policy.convergent:
            nonce = self._convergent_nonce(version, context, plaintext, associated_data)
        else:
            nonce = os.urandom(_NONCE_BYTES)
        sealed = _aead(self.kind.name, key).encrypt(nonce, plaintext, associated_data)
        return ciphertext.encode(number, nonce + sealed), number

    def _convergent_nonce(
        self, version: KeyVersion, context: bytes | None, plaintext: bytes, aad: bytes | None
    ) -> bytes:
        """A nonce fixed by (context, associated data, plaintext): same inputs, same output."""
        nonce_key = derive(version.hmac_key, self._context(context), 32)
        aad = aad or b""
        message = struct.pack(">Q", len(aad)) + aad + plaintext
        return std_hmac.new(nonce_key, message, "sha256").digest()[:_NONCE_BYTES]

    def decrypt(
        self,
        value: object,
        *,
        context: bytes | None = None,
        associated_data: bytes | None = None,
    ) -> tuple[bytes, int]:
        """``(plaintext, version)`` of a ``vault:vN:…`` ciphertext."""
        self._require(self.kind.encryption, "decryption")
        number, blob = ciphertext.decode(value)
        version = self.policy.decryption_version(number)
        if self.kind.family is Family.RSA:
            private = self._private(number, version, None)
            try:
                return private.decrypt(blob, _OAEP), number  # type: ignore[union-attr]
            except ValueError:
                raise InvalidArgumentError(
                    "failed to RSA decrypt the ciphertext: decryption error"
                ) from None
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise InvalidArgumentError("invalid ciphertext: too short")
        key = self._symmetric(version, context)
        try:
            opened = _aead(self.kind.name, key).decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data
            )
        except InvalidTag:
            raise InvalidArgumentError(AUTH_FAILED) from None
        return opened, number

    # --- HMAC -------------------------------------------------------------------------

    def hmac(self, data: bytes, algorithm: str, key_version: int | None = None) -> str:
        """``vault:vN:…`` HMAC of ``data`` with the version's HMAC key."""
        number = self.policy.encryption_version(key_version)
        digest = transit_hashes.mac(algorithm, self.policy.versions[number].hmac_key, data)
        return ciphertext.encode(number, digest)

    def verify_hmac(self, data: bytes, value: object, algorithm: str) -> bool:
        """Whether ``value`` (``vault:vN:…``) is the HMAC of ``data``."""
        number, digest = ciphertext.decode(value, "hmac")
        version = self.policy.decryption_version(number)
        expected = transit_hashes.mac(algorithm, version.hmac_key, data)
        return std_hmac.compare_digest(expected, digest)

    # --- signatures -------------------------------------------------------------------

    def sign(
        self,
        data: bytes,
        options: signing.SignOptions,
        *,
        context: bytes | None = None,
        key_version: int | None = None,
    ) -> tuple[str, int]:
        """``(vault:vN:… signature, N)`` of ``data``."""
        self._require(self.kind.signing, "signing")
        number = self.policy.encryption_version(key_version)
        private = self._private(number, self.policy.versions[number], context)
        raw = signing.sign(private, data, options)
        return ciphertext.encode(number, raw, urlsafe=options.urlsafe), number

    def verify(
        self,
        data: bytes,
        value: object,
        options: signing.SignOptions,
        *,
        context: bytes | None = None,
    ) -> bool:
        """Whether ``value`` (``vault:vN:…``) is a valid signature of ``data``."""
        self._require(self.kind.signing, "verification")
        number, raw = ciphertext.decode(value, "signature", urlsafe=options.urlsafe)
        version = self.policy.decryption_version(number)
        public = self._private(number, version, context).public_key()
        return signing.verify(public, data, raw, options)
