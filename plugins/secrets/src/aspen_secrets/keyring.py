"""Encryption at rest: a versioned, rotatable keyring of AES-256-GCM data keys.

Every value the plugin stores is sealed with the keyring's newest data key; older keys
stay in the keyring so what they sealed still opens (Vault's barrier keyring and its
``sys/rotate``). A sealed value is::

    b"\\x01" | term (u32, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext+tag

with the value's store key as associated data, so a value cannot be moved to another path.

The keyring itself is stored in the cluster at one KV key (:data:`KEYRING_KEY`), sealed
with the node's **root key**, which never enters the cluster. Root key sources, in order:
``root_key_file`` (32 raw bytes, or their hex / base64 text), ``aspen_root_key`` in the
SOPS secrets file, else a *dev* key derived with HKDF from the cluster's root token
secret (every member holds the same token, so a cluster works with no setup, but anyone
with the token can derive it: use a real root key in production).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aspen.errors import CompareFailedError, InvalidArgumentError
from aspen.transport.tokens import token_secret
from aspen_secrets import limits
from aspen_secrets.logical import SealedError

__all__ = [
    "KEYRING_KEY",
    "ROOT_KEY_BYTES",
    "ClusterKeyring",
    "Keyring",
    "RootKey",
    "dev_root_key",
    "parse_root_key",
    "read_root_key_file",
]

#: The KV key holding the keyring, sealed with the root key.
KEYRING_KEY = b"/_aspen/secrets/keyring"
#: Length of the root key and of every data key (AES-256).
ROOT_KEY_BYTES = 32

_VALUE_FORMAT = 1
_HEADER = struct.Struct(">BI")
_NONCE_BYTES = 12
_KEYRING_MAGIC = b"ASKR1"
_KEYRING_AAD = b"aspen-secrets/keyring/v1"
_DEV_SALT = b"aspen-secrets dev root key"
_DEV_INFO = b"aspen-secrets/root-key/v1"


@dataclass(frozen=True, slots=True)
class RootKey:
    """The key that seals the keyring, and where it came from (for status and logs)."""

    key: bytes
    source: str

    @property
    def is_dev(self) -> bool:
        """Whether this is the dev key derived from the cluster token."""
        return self.source == "dev"


def parse_root_key(raw: bytes | str, where: str) -> bytes:
    """A 32-byte root key from raw bytes or their hex / base64 text; ``where`` names the
    source in the error."""
    if isinstance(raw, bytes) and len(raw) == ROOT_KEY_BYTES:
        return raw
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    candidates = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(decode(text + "=" * (-len(text) % 4)))
    for key in candidates:
        if len(key) == ROOT_KEY_BYTES:
            return key
    raise InvalidArgumentError(
        f"{where}: a root key is {ROOT_KEY_BYTES} random bytes, or their hex or base64 text "
        "(make one with: head -c 32 /dev/urandom | base64)"
    )


def read_root_key_file(path: Path) -> RootKey:
    """The root key in ``path`` (see :func:`parse_root_key`)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read root key file {path}: {exc.strerror}") from None
    return RootKey(parse_root_key(raw, f"root key file {path}"), f"file {path}")


def dev_root_key(cluster_token: str) -> RootKey:
    """The dev root key: HKDF-SHA256 of the cluster root token's secret."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=ROOT_KEY_BYTES, salt=_DEV_SALT, info=_DEV_INFO)
    return RootKey(hkdf.derive(token_secret(cluster_token).encode()), "dev")


@dataclass(frozen=True)
class Keyring:
    """Data keys by term (version); new values are sealed with the newest (``term``)."""

    keys: dict[int, bytes]
    installed: dict[int, int] = field(default_factory=dict)

    @classmethod
    def new(cls) -> Keyring:
        """A keyring with one fresh random key (term 1)."""
        return cls({1: AESGCM.generate_key(256)}, {1: int(time.time())})

    @property
    def term(self) -> int:
        """The newest key's term."""
        return max(self.keys)

    def rotated(self) -> Keyring:
        """A copy with one more key (a new term), made here, before it is committed."""
        if len(self.keys) >= limits.SECRETS_MAX_KEYRING_TERMS:
            raise InvalidArgumentError(
                f"the keyring holds SECRETS_MAX_KEYRING_TERMS "
                f"({limits.SECRETS_MAX_KEYRING_TERMS}) keys; it cannot rotate further"
            )
        term = self.term + 1
        return Keyring(
            {**self.keys, term: AESGCM.generate_key(256)},
            {**self.installed, term: int(time.time())},
        )

    # ------------------------------------------------------------------ values
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` bound to ``aad`` (the store key) with the newest key."""
        term = self.term
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[term]).encrypt(nonce, plaintext, aad)
        return _HEADER.pack(_VALUE_FORMAT, term) + nonce + sealed

    def term_of(self, blob: bytes) -> int:
        """The term a sealed value was made with (``invalid_argument`` if not a sealed value)."""
        if len(blob) < _HEADER.size + _NONCE_BYTES or blob[0] != _VALUE_FORMAT:
            raise InvalidArgumentError("stored value is not a sealed secrets value")
        return _HEADER.unpack_from(blob)[1]

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Open a value sealed by :meth:`encrypt` for the same ``aad``."""
        term = self.term_of(blob)
        key = self.keys.get(term)
        if key is None:
            raise SealedError(f"stored value was sealed with keyring term {term}, not known here")
        nonce = blob[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        try:
            return AESGCM(key).decrypt(nonce, blob[_HEADER.size + _NONCE_BYTES :], aad)
        except InvalidTag:
            raise SealedError(
                f"stored value at {aad.decode('utf-8', 'replace')} failed authentication"
            ) from None

    # ------------------------------------------------------------------ the stored form
    def seal(self, root: RootKey) -> bytes:
        """The keyring as stored in the cluster: sealed with the root key."""
        record = {
            "keys": {term: key for term, key in self.keys.items()},
            "installed": dict(self.installed),
        }
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(root.key).encrypt(nonce, msgpack.packb(record), _KEYRING_AAD)
        return _KEYRING_MAGIC + nonce + sealed

    @classmethod
    def unseal(cls, blob: bytes, root: RootKey) -> Keyring:
        """Open the stored keyring; :class:`SealedError` when ``root`` is not its key."""
        if not blob.startswith(_KEYRING_MAGIC):
            raise SealedError("the stored secrets keyring is not in a known format")
        body = blob[len(_KEYRING_MAGIC) :]
        try:
            plain = AESGCM(root.key).decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], _KEYRING_AAD)
        except InvalidTag:
            hint = (
                " (this node uses the dev root key derived from the cluster token; start it "
                "with the cluster's --root-key-file or --secrets-file)"
                if root.is_dev
                else ""
            )
            raise SealedError(
                f"sealed: the cluster's secrets keyring cannot be opened with this node's "
                f"root key from {root.source}{hint}"
            ) from None
        record = msgpack.unpackb(plain, strict_map_key=False)
        return cls(dict(record["keys"]), dict(record["installed"]))


class ClusterKeyring:
    """The keyring as this node sees it: loaded from (or created in) the cluster, reloaded
    when another node rotated it, rotated through one conditional transaction."""

    def __init__(self, node: Any, root: RootKey) -> None:
        self._node = node
        self.root = root
        self._keyring: Keyring | None = None
        self._revision = 0

    @property
    def current(self) -> Keyring | None:
        """The open keyring, or ``None`` before :meth:`open` succeeded."""
        return self._keyring

    @property
    def keyring(self) -> Keyring:
        """The open keyring (:class:`SealedError` before :meth:`open` succeeded)."""
        if self._keyring is None:
            raise SealedError("the secrets keyring is not open yet")
        return self._keyring

    async def _read(self, *, serializable: bool = False) -> tuple[bytes | None, int]:
        """The stored keyring blob and its mod revision (``None, 0`` if absent)."""
        params: dict[str, Any] = {"key": KEYRING_KEY}
        if serializable:
            params["serializable"] = True
        kvs = (await self._node.call("kv.range", params))["kvs"]
        if not kvs:
            return None, 0
        return kvs[0]["value"], kvs[0]["mod_revision"]

    async def _create(self, keyring: Keyring, expect: int) -> bool:
        """Store ``keyring`` if the stored one is still at ``expect`` (0: absent)."""
        target = "create_revision" if expect == 0 else "mod_revision"
        result = await self._node.call(
            "kv.txn",
            {
                "compare": [{"key": KEYRING_KEY, "target": target, "op": "==", "value": expect}],
                "success": [{"put": {"key": KEYRING_KEY, "value": keyring.seal(self.root)}}],
            },
        )
        return bool(result["succeeded"])

    async def open(self) -> Keyring:
        """Load the stored keyring, creating it on the cluster's first start (on the leader;
        a follower raises ``not_leader`` and is retried by the caller)."""
        for _ in range(limits.SECRETS_MAX_WRITE_ATTEMPTS):
            blob, revision = await self._read()
            if blob is not None:
                return self._install(blob, revision)
            await self._create(Keyring.new(), 0)  # lost a race: read the winner's next
        raise CompareFailedError("the keyring could not be created; try again")

    def _install(self, blob: bytes, revision: int) -> Keyring:
        keyring = Keyring.unseal(blob, self.root)
        self._keyring, self._revision = keyring, revision
        return keyring

    async def refresh(self) -> Keyring:
        """Reload the keyring when the stored one changed (a cheap local check)."""
        current = self.keyring
        blob, revision = await self._read(serializable=True)
        if blob is None or revision == self._revision:
            return current
        return self._install(blob, revision)

    async def reload(self) -> Keyring:
        """Reload the keyring with a linearizable read (after meeting an unknown term)."""
        blob, revision = await self._read()
        if blob is None:
            return self.keyring
        return self._install(blob, revision)

    async def rotate(self) -> Keyring:
        """Add a new data key (new writes use it; older values still open)."""
        for _ in range(limits.SECRETS_MAX_WRITE_ATTEMPTS):
            blob, revision = await self._read()
            if blob is None:
                raise SealedError("the secrets keyring does not exist yet")
            rotated = Keyring.unseal(blob, self.root).rotated()
            if await self._create(rotated, revision):
                return await self.reload()
        raise CompareFailedError("the keyring rotation raced other rotations; try again")
