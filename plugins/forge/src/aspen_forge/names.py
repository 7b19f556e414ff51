"""Validation of owner and repository names (typed errors naming the rule broken)."""

from __future__ import annotations

import re

from aspen.errors import InvalidArgumentError
from aspen_forge.limits import MAX_NAME_CHARS

__all__ = ["RepoName", "parse_full_name", "validate_name"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Names git or the URL scheme would read as something else.
_RESERVED = frozenset({"info", "objects", "refs", "head", "api", "static", "login"})


class InvalidNameError(InvalidArgumentError):
    """An owner or repository name breaks a naming rule (the message says which)."""


def validate_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a valid owner or repository name, else raise
    :class:`InvalidNameError`: ASCII letters, digits, ``.``, ``_``, ``-``; starting with a
    letter or digit; no ``..``; not ending in ``.git`` or ``.``; at most MAX_NAME_CHARS.
    Non-ASCII is refused outright, so no two names can look alike (unicode confusables)."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidNameError(f"{what} is longer than MAX_NAME_CHARS ({MAX_NAME_CHARS})")
    if not name.isascii():
        raise InvalidNameError(
            f"{what} {name!r} is not ASCII (unicode is refused: look-alike letters "
            "would let two names read the same)"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidNameError(f"{what} {name!r} holds a control character")
    if "/" in name or "\\" in name:
        raise InvalidNameError(f"{what} {name!r} may not contain '/' or '\\'")
    if ".." in name:
        raise InvalidNameError(f"{what} {name!r} may not contain '..'")
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"{what} {name!r} may hold only letters, digits, '.', '_' and '-', "
            "and must start with a letter or digit"
        )
    if name.lower().endswith(".git") or name.endswith("."):
        raise InvalidNameError(f"{what} {name!r} may not end in '.git' or '.'")
    if name.lower() in _RESERVED:
        raise InvalidNameError(f"{what} {name!r} is reserved")
    return name


class RepoName:
    """A validated ``owner/name`` pair; :attr:`key` is its case-folded identity."""

    __slots__ = ("name", "owner")

    def __init__(self, owner: str, name: str) -> None:
        self.owner = validate_name(owner, "owner")
        self.name = validate_name(name, "repository name")

    @property
    def full(self) -> str:
        """``owner/name`` as given."""
        return f"{self.owner}/{self.name}"

    @property
    def key(self) -> str:
        """``owner/name`` lower-cased: two repositories may not differ only in case."""
        return self.full.lower()

    def __repr__(self) -> str:
        return f"RepoName({self.full!r})"


def parse_full_name(text: object) -> RepoName:
    """``"owner/name"`` (a trailing ``.git`` is dropped) → :class:`RepoName`."""
    if not isinstance(text, str):
        raise InvalidNameError("a repository must be given as OWNER/NAME")
    if text.endswith(".git"):
        text = text[:-4]
    owner, sep, name = text.partition("/")
    if not sep:
        raise InvalidNameError(f"a repository must be given as OWNER/NAME, got {text!r}")
    return RepoName(owner, name)
