"""NATS-style subject wildcards over topic names: ``orders.*`` (one ``.``-separated token)
and ``orders.>`` (one or more tokens, last only)."""

from __future__ import annotations

from aspen.errors import InvalidArgumentError

__all__ = ["check_pattern", "is_pattern", "literal_prefix", "matches"]


def is_pattern(name: str) -> bool:
    """Whether ``name`` holds a wildcard token (topic names never do)."""
    return any(token in ("*", ">") for token in name.split("."))


def check_pattern(pattern: str) -> str:
    """``pattern`` if its wildcards are well placed, else ``invalid_argument``."""
    tokens = pattern.split(".")
    if ">" in tokens[:-1] or any(not t for t in tokens):
        raise InvalidArgumentError(
            f"subject pattern {pattern!r}: '>' only as the last token, no empty token",
            field="topic",
        )
    return pattern


def matches(pattern: str, name: str) -> bool:
    """Whether topic ``name`` matches ``pattern``."""
    want, have = pattern.split("."), name.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


def literal_prefix(pattern: str) -> str:
    """The text every matching name starts with (up to the first wildcard token)."""
    literal: list[str] = []
    for token in pattern.split("."):
        if token in ("*", ">"):
            return ".".join(literal) + ("." if literal else "")
        literal.append(token)
    return pattern
