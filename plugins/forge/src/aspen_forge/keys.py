"""The plugin's KV layout, all under ``/_aspen/forge/``.

* ``repos/<owner>/<name>`` (lower-cased) → msgpack repository record (:mod:`repos`)
* ``refs/<repo id>/<ref name>`` → the 40-hex object id the ref points at
* ``packs/<store id>/<pack name>`` → msgpack pack record (:mod:`storage.packs`); a store is
  shared by a repository and its forks
* ``protect/<repo id>`` → msgpack list of branch protection rules (:mod:`protection`)
* ``counters/<repo id>/<kind>`` → the last issue/patch number (:mod:`collab.store`)
* ``objects/<repo id>/<kind>/<number>`` → an issue/patch summary (its folded state
  without comments, and its op-log heads)
* ``ops/<repo id>/<kind>/<number>/<op id>`` → one op of its log (:mod:`collab.oplog`)
* ``status/<repo id>/<commit>/<context>`` → a commit status (:mod:`collab.statuses`)
"""

from __future__ import annotations

from aspen.client import prefix_end  # re-exported: keys.prefix_end(prefix)

__all__ = [
    "PREFIX",
    "counter_key",
    "object_key",
    "objects_prefix",
    "op_key",
    "ops_prefix",
    "pack_key",
    "packs_prefix",
    "prefix_end",
    "protect_key",
    "ref_key",
    "refs_prefix",
    "repo_key",
    "repos_prefix",
    "status_key",
    "status_prefix",
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


_COUNTERS = PREFIX + b"counters/"
_OBJECTS = PREFIX + b"objects/"
_OPS = PREFIX + b"ops/"
_STATUS = PREFIX + b"status/"


def counter_key(repo_id: str, kind: str) -> bytes:
    """The key of repository ``repo_id``'s last number of ``kind`` (``issue``, ``patch``)."""
    return _COUNTERS + f"{repo_id}/{kind}".encode()


def objects_prefix(repo_id: str, kind: str) -> bytes:
    """The prefix of the summaries of every ``kind`` object of ``repo_id``."""
    return _OBJECTS + f"{repo_id}/{kind}/".encode()


def object_key(repo_id: str, kind: str, number: int) -> bytes:
    """The key of the summary of ``kind`` ``number`` (zero-padded: keys sort by number)."""
    return objects_prefix(repo_id, kind) + b"%010d" % number


def ops_prefix(repo_id: str, kind: str, number: int) -> bytes:
    """The prefix of the ops of ``kind`` ``number`` of ``repo_id``."""
    return _OPS + f"{repo_id}/{kind}/{number:010d}/".encode()


def op_key(repo_id: str, kind: str, number: int, op_id: str) -> bytes:
    """The key of one op."""
    return ops_prefix(repo_id, kind, number) + op_id.encode()


def status_prefix(repo_id: str, commit: str) -> bytes:
    """The prefix of the statuses of ``commit`` (40 hex) in ``repo_id``."""
    return _STATUS + f"{repo_id}/{commit}/".encode()


def status_key(repo_id: str, commit: str, context: str) -> bytes:
    """The key of the status of ``commit`` for ``context``."""
    return status_prefix(repo_id, commit) + context.encode()
