"""Change hashes: BLAKE3 printed in Pijul's base32 form, and unique-prefix resolution."""

from __future__ import annotations

import base64
from collections.abc import Iterable

import blake3

from aspen_pijul import limits
from aspen_pijul.errors import AmbiguousPrefixError, PijulError, UnknownChangeError

__all__ = ["HASH_CHARS", "hash_bytes", "is_hash", "resolve_prefix", "short"]

#: Pijul's algorithm tag for BLAKE3, appended to the 32 digest bytes before encoding.
_BLAKE3_TAG = b"\x01"
#: Length of a printed hash: 33 bytes in base32 without padding.
HASH_CHARS = 53
_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def hash_bytes(data: bytes) -> str:
    """The printed hash of ``data``: BLAKE3 digest plus tag, base32 without padding."""
    digest = blake3.blake3(data).digest()
    return base64.b32encode(digest + _BLAKE3_TAG).decode("ascii").rstrip("=")


def is_hash(text: str) -> bool:
    """Whether ``text`` has the shape of a full printed hash."""
    return len(text) == HASH_CHARS and set(text) <= _ALPHABET


def short(h: str, n: int = 8) -> str:
    """The first ``n`` characters of hash ``h`` (for display only)."""
    return h[:n]


def resolve_prefix(prefix: str, known: Iterable[str]) -> str:
    """The one hash of ``known`` starting with ``prefix`` (case-insensitive).

    Raises :class:`UnknownChangeError` if none does and :class:`AmbiguousPrefixError`
    (naming the candidates) if several do."""
    p = prefix.strip().upper()
    if len(p) < limits.MIN_PREFIX_CHARS or not set(p) <= _ALPHABET:
        raise PijulError(
            f"not a change hash or prefix: {prefix!r} (at least "
            f"{limits.MIN_PREFIX_CHARS} base32 characters, MIN_PREFIX_CHARS)"
        )
    found = sorted(h for h in known if h.startswith(p))
    if not found:
        raise UnknownChangeError(f"no change has hash or prefix {prefix!r}")
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (" …" if len(found) > 5 else "")
        raise AmbiguousPrefixError(f"prefix {prefix!r} is ambiguous: {shown}", candidates=found)
    return found[0]
