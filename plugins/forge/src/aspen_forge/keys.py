"""The plugin's KV layout, all under ``/_aspen/forge/``.

* ``repos/<owner>/<name>`` (lower-cased) → msgpack repository record (:mod:`repos`)
* ``refs/<repo id>/<ref name>`` → the 40-hex object id the ref points at
* ``packs/<store id>/<pack name>`` → msgpack pack record (:mod:`storage.packs`); a store is
  shared by a repository and its forks
* ``protect/<repo id>`` → msgpack list of branch protection rules (:mod:`protection`)
"""

from __future__ import annotations

__all__ = [
    "PREFIX",
    "pack_key",
    "packs_prefix",
    "prefix_end",
    "protect_key",
    "ref_key",
    "refs_prefix",
    "repo_key",
    "repos_prefix",
]

#: Every key of the plugin starts with this.
PREFIX = b"/_aspen/forge/"
_REPOS = PREFIX + b"repos/"
_REFS = PREFIX + b"refs/"
_PACKS = PREFIX + b"packs/"
_PROTECT = PREFIX + b"protect/"


def repos_prefix(owner: str | None = None) -> bytes:
    """The prefix of every repository record (of ``owner`` when given)."""
    return _REPOS if owner is None else _REPOS + owner.lower().encode() + b"/"


def repo_key(full_key: str) -> bytes:
    """The key of the record of repository ``owner/name`` (already lower-cased)."""
    return _REPOS + full_key.encode()


def refs_prefix(repo_id: str) -> bytes:
    """The prefix of the refs of repository ``repo_id``."""
    return _REFS + repo_id.encode() + b"/"


def ref_key(repo_id: str, ref: bytes) -> bytes:
    """The key of ref ``ref`` (``refs/heads/main``) of repository ``repo_id``."""
    return refs_prefix(repo_id) + ref


def packs_prefix(store_id: str) -> bytes:
    """The prefix of the pack records of object store ``store_id``."""
    return _PACKS + store_id.encode() + b"/"


def pack_key(store_id: str, pack_name: str) -> bytes:
    """The key of pack ``pack_name`` (its dulwich name, 40 hex) in store ``store_id``."""
    return packs_prefix(store_id) + pack_name.encode()


def protect_key(repo_id: str) -> bytes:
    """The key of repository ``repo_id``'s branch protection rules."""
    return _PROTECT + repo_id.encode()


def prefix_end(prefix: bytes) -> bytes:
    """The end of the range of every key starting with ``prefix`` (etcd's ``--prefix``)."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\0"
    end[-1] += 1
    return bytes(end)
