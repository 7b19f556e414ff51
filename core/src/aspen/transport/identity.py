"""Node identity: an Ed25519 key kept in the data directory; the node id derives from it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "NODE_KEY_FILE",
    "NodeIdentity",
    "cluster_id_from_public_key",
    "load_or_create_identity",
    "node_id_from_public_key",
    "write_private_file",
]

#: Name of the node's private key file inside its data directory (mode 0600, PEM).
NODE_KEY_FILE = "node.key"


def node_id_from_public_key(public_raw: bytes) -> str:
    """Derive the node id (16 hex digits) from a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(b"aspen-node-id:" + public_raw).hexdigest()[:16]


def cluster_id_from_public_key(public_raw: bytes) -> str:
    """Derive the cluster id (16 hex digits) from the cluster CA's raw Ed25519 public key."""
    return hashlib.sha256(b"aspen-cluster-id:" + public_raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """A node's signing key and the id derived from its public half."""

    private_key: Ed25519PrivateKey
    public_raw: bytes
    node_id: str

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> NodeIdentity:
        """The identity of ``key``."""
        public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(key, public_raw, node_id_from_public_key(public_raw))

    @classmethod
    def generate(cls) -> NodeIdentity:
        """A new identity kept in memory only (tests, tools)."""
        return cls.from_private_key(Ed25519PrivateKey.generate())


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; fails if it already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_identity(data_dir: Path) -> NodeIdentity:
    """Load the node key from ``data_dir``, creating it on first start."""
    path = data_dir / NODE_KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 key")
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(path, pem)
    return NodeIdentity.from_private_key(key)
