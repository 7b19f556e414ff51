"""The names of the resources besides forge repositories a cluster can share and sync:
``pijul:REPO`` (a Pijul repository; a sync names one channel, ``REPO:CHANNEL``),
``blob:PREFIX`` (the blobs pinned under pin names starting with ``PREFIX``) and
``kv:PREFIX`` (the keys starting with ``PREFIX``)."""

from __future__ import annotations

from aspen.errors import InvalidArgumentError

__all__ = ["DEFAULT_CHANNEL", "parse_name", "split_channel"]

#: The channel a Pijul sync reads when none is named.
DEFAULT_CHANNEL = "main"
_PIJUL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")


def parse_name(kind: str, name: str) -> str:
    """``name`` checked for ``kind`` (``invalid_argument`` naming what is wrong)."""
    if kind == "pijul":
        if not name or not set(name) <= _PIJUL_CHARS or name.startswith(("/", ".")):
            raise InvalidArgumentError(f"bad pijul repository name {name!r}")
        return name
    if kind == "kv":
        if not name:
            raise InvalidArgumentError("share a KV prefix, not the whole keyspace")
        if name.startswith("/_aspen/"):
            raise InvalidArgumentError("the cluster's own state (/_aspen/) cannot be shared")
        return name
    if kind == "blob":
        if not name or name.startswith("/_aspen/"):
            raise InvalidArgumentError(f"bad blob pin prefix {name!r}")
        return name
    raise InvalidArgumentError(f"unknown resource kind {kind!r}")


def split_channel(name: str) -> tuple[str, str]:
    """``REPO[:CHANNEL]`` -> ``(REPO, CHANNEL)``."""
    repo, _, channel = name.partition(":")
    channel = channel or DEFAULT_CHANNEL
    if "/" in channel or not channel or channel.startswith("."):
        raise InvalidArgumentError(f"bad channel name {channel!r}")
    return repo, channel
