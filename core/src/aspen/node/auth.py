"""Client authentication: the root token every connection must present in its hello."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from aspen.node.config import ROOT_TOKEN_FILE
from aspen.transport.identity import write_private_file

__all__ = ["TokenAuthenticator", "load_or_create_root_token"]

#: Prefix of generated tokens, so a leaked one is recognisable in logs and scanners.
TOKEN_PREFIX = "aspen_"


def load_or_create_root_token(data_dir: Path) -> str:
    """Return the node's root token, creating ``<data-dir>/root-token`` (0600) on first start."""
    path = data_dir / ROOT_TOKEN_FILE
    if not path.exists():
        write_private_file(path, (TOKEN_PREFIX + secrets.token_urlsafe(32) + "\n").encode())
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty; delete it to have a new root token created")
    return token


class TokenAuthenticator:
    """Maps a presented token to an identity (only ``root`` for now), in constant time."""

    def __init__(self, root_token: str) -> None:
        self._root = root_token.encode()

    def __call__(self, token: str | None) -> str | None:
        """Return the identity for ``token``, or ``None`` when it is missing or wrong."""
        if not isinstance(token, str) or not token:
            return None
        return "root" if hmac.compare_digest(token.encode(), self._root) else None
