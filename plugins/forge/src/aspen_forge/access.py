"""Who may do what to a repository: ``forge:read|push|admin:<owner>/<name>`` capabilities.

``push`` implies ``read`` and ``admin`` implies both. Public repositories are readable by
anyone (anonymous HTTP clones included); private ones and every write need a token.
Over HTTP the token comes as the basic-auth password (or user name, if the password is
empty) or as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = ["OPERATIONS", "allowed", "capability", "pusher_names", "token_from_header"]

#: The operations, weakest first: each is implied by the ones after it.
OPERATIONS = ("read", "push", "admin")


def capability(operation: str, full_name: str) -> str:
    """``forge:<operation>:<owner>/<name>``."""
    return f"forge:{operation}:{full_name}"


def allowed(authority: Any, operation: str, full_name: str, *, private: bool = True) -> bool:
    """Whether ``authority`` (``None``: anonymous) may ``operation`` on the repository."""
    if operation == "read" and not private:
        return True
    if authority is None:
        return False
    stronger = OPERATIONS[OPERATIONS.index(operation) :]
    return any(authority.allows(capability(op, full_name)) for op in stronger)


def pusher_names(authority: Any) -> set[str]:
    """The names a push allow-list may give for ``authority``: ``root`` for the root token,
    else the token's id and the ids of the tokens it was made from."""
    if authority is None:
        return set()
    if authority.unrestricted:
        return {"root"}
    grant = authority.grant
    return {authority.token_id, *getattr(grant, "ancestors", ())}


def token_from_header(value: bytes | None) -> str | None:
    """The token an ``Authorization`` header carries (``None`` if none or malformed)."""
    if not value:
        return None
    scheme, _, rest = value.decode("latin-1").strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        return rest or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(rest, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None
