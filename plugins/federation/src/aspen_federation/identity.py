"""A cluster's identity: one long-lived Ed25519 key, its short id, its signed document.

The private key is a 32-byte Ed25519 seed. The cluster keeps it in its own state (one KV
key, :data:`aspen_federation.keys.IDENTITY`) sealed with AES-256-GCM under a key derived
with HKDF-SHA256 from the cluster's root token (every member holds it, so every node can
open the seal; see :func:`sealing_key`), or from ``root_key_file`` when one is configured —
the same scheme as aspen-secrets' dev root key and root key file.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aspen.errors import InvalidArgumentError
from aspen_federation import limits

__all__ = [
    "ClusterKey",
    "IdentityDocument",
    "expanded_secret",
    "key_id",
    "parse_public_key",
    "seal",
    "sealing_key",
    "unseal",
    "verify",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_SEAL_MAGIC = b"AFID1"
_SEAL_AAD = b"aspen-federation/identity/v1"
_NONCE_BYTES = 12
_SALT = b"aspen-federation sealing key"
_INFO = b"aspen-federation/identity-seal/v1"
_DOC_CONTEXT = b"aspen-federation/identity-document/v1\x00"


def key_id(public: bytes) -> str:
    """The short id a cluster key is printed as: 16 base32 characters of its SHA-256."""
    return base64.b32encode(hashlib.sha256(public).digest()[:10]).decode().lower()


def parse_public_key(text: str) -> bytes:
    """A cluster key from its 64-hex-character text (``invalid_argument`` otherwise)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != PUBLIC_KEY_BYTES:
        raise InvalidArgumentError(
            f"a cluster key is {PUBLIC_KEY_BYTES} bytes written as 64 hex characters, not {text!r}"
        )
    return raw


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public``'s Ed25519 signature of ``message``."""
    if len(public) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def expanded_secret(seed: bytes) -> bytes:
    """The 64-byte expanded secret key libtorrent's ed25519 (ref10) signs with: SHA-512 of
    the seed, clamped."""
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 63
    h[31] |= 64
    return bytes(h)


@dataclass(frozen=True)
class ClusterKey:
    """A cluster's Ed25519 key pair (``seed`` is the private half)."""

    seed: bytes

    @classmethod
    def generate(cls) -> ClusterKey:
        """A fresh random key."""
        return cls(os.urandom(32))

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public(self) -> bytes:
        """The 32-byte public key (the cluster's name on the DHT)."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def id(self) -> str:
        """The short key id."""
        return key_id(self.public)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature of ``message``."""
        return self._private.sign(message)


@dataclass(frozen=True)
class IdentityDocument:
    """What a cluster says about itself, signed by its key: sent in trust requests and
    shown by ``aspen federation status``."""

    key: bytes
    name: str
    description: str
    created: int
    signature: bytes = b""

    def _body(self) -> bytes:
        return _DOC_CONTEXT + msgpack.packb(
            [self.key, self.name, self.description, self.created], use_bin_type=True
        )

    @classmethod
    def create(
        cls, key: ClusterKey, name: str, description: str = "", created: int | None = None
    ) -> IdentityDocument:
        """A document for ``key``, signed by it."""
        _check_text("name", name, limits.MAX_NAME_BYTES)
        _check_text("description", description, limits.MAX_DESCRIPTION_BYTES)
        unsigned = cls(key.public, name, description, int(created or time.time()))
        return dataclasses.replace(unsigned, signature=key.sign(unsigned._body()))

    def encode(self) -> bytes:
        """The signed document's wire form."""
        return msgpack.packb(
            [self.key, self.name, self.description, self.created, self.signature],
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> IdentityDocument:
        """A document from its wire form, its signature verified (``invalid_argument``)."""
        if len(data) > limits.MAX_IDENTITY_DOCUMENT_BYTES:
            raise InvalidArgumentError(
                f"identity document is {len(data)} bytes, over "
                f"MAX_IDENTITY_DOCUMENT_BYTES ({limits.MAX_IDENTITY_DOCUMENT_BYTES})"
            )
        try:
            key, name, description, created, signature = msgpack.unpackb(data, raw=False)
            doc = cls(bytes(key), str(name), str(description), int(created), bytes(signature))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidArgumentError(f"malformed identity document: {exc}") from None
        _check_text("name", doc.name, limits.MAX_NAME_BYTES)
        _check_text("description", doc.description, limits.MAX_DESCRIPTION_BYTES)
        if not verify(doc.key, doc.signature, doc._body()):
            raise InvalidArgumentError("identity document: bad signature")
        return doc

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "cluster_key": self.key.hex(),
            "key_id": key_id(self.key),
            "name": self.name,
            "description": self.description,
            "created": self.created,
        }


def _check_text(field: str, value: str, bound: int) -> None:
    if not isinstance(value, str) or len(value.encode()) > bound:
        raise InvalidArgumentError(f"{field} must be a string of at most {bound} bytes")


def sealing_key(secret: bytes) -> bytes:
    """The AES-256 key that seals the cluster key: HKDF-SHA256 of ``secret`` (the root
    key file's bytes, else the cluster root token)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO)
    return hkdf.derive(secret)


def seal(key: ClusterKey, document: IdentityDocument, sealing: bytes) -> bytes:
    """The identity as stored in the cluster: the seed sealed, the document in clear."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(sealing).encrypt(nonce, key.seed, _SEAL_AAD)
    return _SEAL_MAGIC + msgpack.packb([nonce + sealed, document.encode()], use_bin_type=True)


def unseal(blob: bytes, sealing: bytes) -> tuple[ClusterKey, IdentityDocument]:
    """Open what :func:`seal` stored (``invalid_argument`` naming why it cannot)."""
    if not blob.startswith(_SEAL_MAGIC):
        raise InvalidArgumentError("stored federation identity is not a sealed identity")
    try:
        sealed, doc = msgpack.unpackb(blob[len(_SEAL_MAGIC) :], raw=False)
        seed = AESGCM(sealing).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _SEAL_AAD)
    except InvalidTag:
        raise InvalidArgumentError(
            "the cluster's federation key cannot be opened with this node's sealing key "
            "(a different root token or root_key_file?)"
        ) from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidArgumentError(f"malformed stored federation identity: {exc}") from None
    key = ClusterKey(seed)
    document = IdentityDocument.decode(doc)
    if document.key != key.public:
        raise InvalidArgumentError("stored federation identity: document and key disagree")
    return key, document
