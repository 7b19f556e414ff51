"""Who may read what: trust levels per remote cluster, federation modes per resource.

The rules (:func:`may_read`) are pure; :class:`TrustStore` keeps the records in the cluster.

* a remote cluster is ``trusted``, ``public`` or ``blocked`` (unknown = ``public``: it
  may read what is shared publicly, nothing else);
* a resource is ``disabled`` (the default: not federated), ``public`` (any cluster not
  blocked) or ``allow-list`` (trusted clusters on its list);
* **blocked wins** over everything, a public resource included.
"""

from __future__ import annotations

from typing import Any

LEVELS = ("trusted", "public", "blocked")
MODES = ("disabled", "public", "allow-list")
KINDS = ("forge", "pijul", "blob", "kv")

__all__ = ["KINDS", "LEVELS", "MODES", "may_read", "read_capability"]


def may_read(level: str, mode: str, allowed: frozenset[bytes] | set[bytes], remote: bytes) -> bool:
    """Whether a remote cluster at trust ``level`` may read a resource in ``mode`` with
    allow-list ``allowed``."""
    if level == "blocked" or mode == "disabled":
        return False
    if mode == "public":
        return True
    return mode == "allow-list" and level == "trusted" and remote in allowed


def read_capability(resource: str) -> list[str]:
    """The capabilities a token granted to a remote cluster for ``resource`` holds: read
    access to that one resource and nothing else (``forge:OWNER/NAME`` ->
    ``forge:read:OWNER/NAME``; ``blob:PREFIX`` -> ``blob:read:PREFIX*``, the blobs pinned
    under that prefix)."""
    kind, _, name = resource.partition(":")
    if kind == "blob":
        return [f"blob:read:{name}*"]
    return [f"{kind}:read:{name}"]


def peer_record(level: str, name: str = "", now: int = 0) -> dict[str, Any]:
    """A trust record as stored."""
    return {"level": level, "name": name, "updated": now}
