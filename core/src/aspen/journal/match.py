"""``name:subject`` patterns that select journal events.

A pattern is ``NAME`` or ``NAME:SUBJECT``, each a glob (``*`` any run of characters, ``?``
one, ``[…]`` a set, as :func:`fnmatch.fnmatchcase`): ``forge.push`` (every subject),
``forge.push:acme/*``, ``forge.*:acme/widgets``, ``*`` (everything). The capability a reader
needs is ``events:read:<literal prefix of NAME>`` (:attr:`Match.name_prefix`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from aspen import limits
from aspen.errors import InvalidArgumentError

__all__ = ["Match", "parse_match"]

_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class Match:
    """A parsed pattern: ``name`` glob and optional ``subject`` glob (None: any subject)."""

    name: str = "*"
    subject: str | None = None

    def __call__(self, name: str, subject: str) -> bool:
        """Whether the event ``name`` on ``subject`` is selected."""
        if not fnmatch.fnmatchcase(name, self.name):
            return False
        return self.subject is None or fnmatch.fnmatchcase(subject, self.subject)

    @property
    def everything(self) -> bool:
        """True for ``*``: no event is filtered out."""
        return self.name == "*" and self.subject in (None, "*")

    @property
    def name_prefix(self) -> str:
        """The literal start of the name glob: every selected name starts with it."""
        return _GLOB.split(self.name, maxsplit=1)[0]

    def __str__(self) -> str:
        """The pattern's text."""
        return self.name if self.subject is None else f"{self.name}:{self.subject}"


def parse_match(text: object) -> Match:
    """Parse ``NAME[:SUBJECT]`` (None or empty: everything); ``invalid_argument`` naming the
    fault otherwise."""
    if text is None or text == "":
        return Match()
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"match must be a string such as forge.push:acme/*, not {text!r}"
        )
    most = limits.EVENTS_MAX_NAME_BYTES + 1 + limits.EVENTS_MAX_SUBJECT_BYTES
    if len(text.encode("utf-8", "surrogatepass")) > most:
        raise InvalidArgumentError(
            f"match is longer than EVENTS_MAX_NAME_BYTES + 1 + EVENTS_MAX_SUBJECT_BYTES ({most})"
        )
    name, sep, subject = text.partition(":")
    for part in (name, subject):
        if "\0" in part or part.count("[") != part.count("]"):
            raise InvalidArgumentError(f"bad match {text!r}: malformed glob")
    if not name:
        raise InvalidArgumentError(f"bad match {text!r}: empty event name (use * for any)")
    if sep and not subject:
        raise InvalidArgumentError(f"bad match {text!r}: empty subject after ':'")
    return Match(name, subject if sep else None)
