"""Cluster token formats: what a client or a joining node is handed.

* client token: ``aspen1.<ca-public-key>.<secret>``: connect with TLS, accept only a server
  whose certificate the cluster CA signed, say hello with the secret;
* join token: ``aspen1j.<ca-public-key>.<secret>``: join the cluster (see
  :mod:`aspen.transport.join`);
* capability token: ``aspen1c.<ca-public-key>.<signing-key>.<biscuit>``: a client token
  with capabilities (:mod:`aspen.auth.tokens`); pinned like a client token, its
  ``secret`` is ``<signing-key>.<biscuit>``.

``<ca-public-key>`` is the raw 32-byte Ed25519 public key of the cluster CA in unpadded
base64url, so the token alone pins the cluster. Any other token (``aspen_...``, made by a
single node without a cluster CA) is a legacy token: plain TCP, the whole string is the
secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLIENT_TOKEN_PREFIX",
    "JOIN_TOKEN_PREFIX",
    "ClusterToken",
    "TokenKind",
    "b64decode",
    "b64encode",
    "new_cluster_token",
    "parse_cluster_token",
    "secrets_match",
    "token_secret",
]

#: First field of a client token.
CLIENT_TOKEN_PREFIX = "aspen1"
#: First field of a join token.
JOIN_TOKEN_PREFIX = "aspen1j"
#: First field of a capability token (see :mod:`aspen.auth.tokens`).
CAPABILITY_TOKEN_PREFIX = "aspen1c"
#: Random bytes in a generated secret.
SECRET_BYTES = 32

TokenKind = Literal["client", "join", "capability"]

_KINDS: dict[str, TokenKind] = {
    CLIENT_TOKEN_PREFIX: "client",
    JOIN_TOKEN_PREFIX: "join",
    CAPABILITY_TOKEN_PREFIX: "capability",
}
_PREFIXES = {kind: prefix for prefix, kind in _KINDS.items()}
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{16,256}")
_CAPABILITY_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{16,64}\.[A-Za-z0-9_-]{16,}")


def b64encode(raw: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64decode(text: str) -> bytes:
    """Decode unpadded base64url (raises ``ValueError``)."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


@dataclass(frozen=True, slots=True)
class ClusterToken:
    """A parsed client or join token."""

    kind: TokenKind
    ca_public_raw: bytes
    secret: str

    @property
    def cluster_id(self) -> str:
        """The id of the cluster the token names."""
        from aspen.transport.identity import cluster_id_from_public_key  # keep imports light

        return cluster_id_from_public_key(self.ca_public_raw)

    def __str__(self) -> str:
        """The token's text form."""
        return f"{_PREFIXES[self.kind]}.{b64encode(self.ca_public_raw)}.{self.secret}"

    def __repr__(self) -> str:
        return f"ClusterToken({self.kind!r}, ca={b64encode(self.ca_public_raw)!r}, secret=...)"


def new_cluster_token(kind: TokenKind, ca_public_raw: bytes) -> ClusterToken:
    """Return a fresh token of ``kind`` for the cluster whose CA key is ``ca_public_raw``."""
    if len(ca_public_raw) != 32:
        raise ValueError("the cluster CA public key must be 32 raw bytes")
    return ClusterToken(kind, ca_public_raw, secrets.token_urlsafe(SECRET_BYTES))


def parse_cluster_token(text: str) -> ClusterToken | None:
    """Parse a client or join token; ``None`` for a legacy token (no cluster CA in it).

    Raises ``ValueError`` naming the problem when ``text`` starts like a cluster token
    but is malformed.
    """
    prefix, sep, rest = text.strip().partition(".")
    kind = _KINDS.get(prefix)
    if kind is None or not sep:
        return None
    parts = rest.split(".", 1) if kind == "capability" else rest.split(".")
    if len(parts) != 2:
        raise ValueError(f"a {prefix}. token has three dot-separated fields")
    key_text, secret = parts
    key = b64decode(key_text)
    if len(key) != 32:
        raise ValueError(f"the cluster key in a {prefix}. token must be 32 bytes, not {len(key)}")
    secret_re = _CAPABILITY_SECRET_RE if kind == "capability" else _SECRET_RE
    if not secret_re.fullmatch(secret):
        raise ValueError(f"the secret of a {prefix}. token is malformed")
    return ClusterToken(kind, key, secret)


def token_secret(token: str) -> str:
    """The part of ``token`` a server compares: the secret of a cluster token, else all."""
    try:
        parsed = parse_cluster_token(token)
    except ValueError:
        return token
    return token if parsed is None else parsed.secret


def secrets_match(presented: str, expected: str) -> bool:
    """Compare two secrets in constant time (their lengths do not leak either)."""
    a = hashlib.sha256(presented.encode()).digest()
    b = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(a, b)
