"""Repositories: records in KV, created unique by compare-and-swap.

A record (``repos/<owner>/<name>``, lower-cased, so names differing only in case collide)
holds the repository's ``id`` (its refs and protection are keyed by it, so a rename moves
one key), the ``store`` holding its objects (its own id), ``alternates`` (a fork reads its
origin's stores, as git's ``objects/info/alternates``: objects are shared, never copied),
``default_branch``, ``description``, ``private``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

import msgpack

from aspen.client.leader import LeaderCaller
from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from aspen.kv import paging
from aspen_forge import keys, limits
from aspen_forge.names import RepoName, parse_full_name
from aspen_forge.refs import read_refs

__all__ = ["Repo", "RepoExistsError", "Repos", "validate_branch"]


class RepoExistsError(CompareFailedError):
    """A repository of that name exists already."""


@dataclass(frozen=True)
class Repo:
    """One repository's record."""

    id: str
    owner: str
    name: str
    store: str
    default_branch: str = "main"
    description: str = ""
    private: bool = False
    created: float = 0.0
    forked_from: str = ""
    #: Stores whose objects this repository also reads (a fork: its origin's, and theirs).
    alternates: tuple[str, ...] = ()

    @property
    def stores(self) -> list[str]:
        """Its own store, then its alternates."""
        return [self.store, *self.alternates]

    @property
    def full(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    @property
    def key(self) -> bytes:
        """Its record's KV key."""
        return keys.repo_key(self.full.lower())

    def to_value(self) -> bytes:
        """The KV value (msgpack)."""
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def from_value(cls, value: bytes) -> Repo:
        """Decode a record written by :meth:`to_value` (unknown fields ignored)."""
        data = msgpack.unpackb(value, raw=False)
        data["alternates"] = tuple(data.get("alternates", ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_wire(self) -> dict[str, Any]:
        """What ``forge.repo_*`` answer (``--json``)."""
        return {**asdict(self), "alternates": list(self.alternates), "full_name": self.full}


def validate_branch(branch: object) -> str:
    """A branch name usable as a default branch (``invalid_argument`` otherwise)."""
    from dulwich.refs import check_ref_format

    if (
        not isinstance(branch, str)
        or not branch
        or len(branch) > limits.MAX_REF_BYTES
        or not branch.isascii()
        or not check_ref_format(b"refs/heads/" + branch.encode())  # type: ignore[arg-type]
    ):
        raise InvalidArgumentError(f"{branch!r} is not a valid branch name", field="default_branch")
    return branch


def _description(text: object) -> str:
    if not isinstance(text, str) or len(text.encode()) > limits.MAX_DESCRIPTION_BYTES:
        raise InvalidArgumentError(
            f"description must be a string of at most MAX_DESCRIPTION_BYTES "
            f"({limits.MAX_DESCRIPTION_BYTES}) bytes",
            field="description",
        )
    return text


def _absent(key: bytes) -> dict[str, Any]:
    return {"key": key, "target": "version", "op": "==", "value": 0}


def _unchanged(key: bytes, revision: int) -> dict[str, Any]:
    return {"key": key, "target": "mod_revision", "op": "==", "value": revision}


class Repos:
    """Repository records of one node (reads local, writes through the leader)."""

    def __init__(self, node: Any, writer: LeaderCaller) -> None:
        self.node = node
        self.writer = writer

    async def _read(self, name: RepoName) -> tuple[Repo, int]:
        kvs = (await self.node.call("kv.range", {"key": keys.repo_key(name.key)}))["kvs"]
        if not kvs:
            raise NotFoundError(f"repository {name.full} not found")
        return Repo.from_value(kvs[0]["value"]), int(kvs[0]["mod_revision"])

    async def get(self, full_name: str | RepoName) -> Repo:
        """The record of ``owner/name`` (``not_found``)."""
        name = full_name if isinstance(full_name, RepoName) else parse_full_name(full_name)
        return (await self._read(name))[0]

    async def create(
        self,
        full_name: str,
        *,
        private: bool = False,
        description: str = "",
        default_branch: str = "main",
    ) -> Repo:
        """Create ``owner/name`` (``compare_failed`` if it exists)."""
        name = parse_full_name(full_name)
        repo_id = uuid.uuid4().hex
        repo = Repo(
            id=repo_id,
            owner=name.owner,
            name=name.name,
            store=repo_id,
            default_branch=validate_branch(default_branch),
            description=_description(description),
            private=bool(private),
            created=time.time(),
        )
        await self._put_new(repo, [])
        return repo

    async def _put_new(self, repo: Repo, extra_ops: list[Any], compare: Any = ()) -> None:
        answer = await self.writer.call(
            "kv.txn",
            {
                "compare": [_absent(repo.key), *compare],
                "success": [{"put": {"key": repo.key, "value": repo.to_value()}}, *extra_ops],
                "failure": [{"range": {"key": repo.key}}],
            },
        )
        if not answer["succeeded"]:
            if answer["responses"][0]["range"]["kvs"]:
                raise RepoExistsError(f"repository {repo.full} already exists")
            raise CompareFailedError("the origin repository changed meanwhile; retry")

    async def list(self, owner: str | None = None) -> tuple[list[Repo], bool]:
        """Repositories (of ``owner``), at most MAX_LIST_REPOS, and whether more exist."""
        records, truncated, _ = await paging.collect(
            self.node.call, keys.repos_prefix(owner), most=limits.MAX_LIST_REPOS, local=True
        )
        return [Repo.from_value(kv["value"]) for kv in records], truncated

    async def update(self, full_name: str, **changes: Any) -> Repo:
        """Change ``description``, ``default_branch`` or ``private`` (CAS on the record)."""
        if "description" in changes:
            changes["description"] = _description(changes["description"])
        if "default_branch" in changes:
            changes["default_branch"] = validate_branch(changes["default_branch"])
        if "private" in changes:
            changes["private"] = bool(changes["private"])
        name = parse_full_name(full_name)
        for _ in range(limits.MAX_CAS_ATTEMPTS):
            repo, revision = await self._read(name)
            new = replace(repo, **changes)
            answer = await self.writer.call(
                "kv.txn",
                {
                    "compare": [_unchanged(repo.key, revision)],
                    "success": [{"put": {"key": repo.key, "value": new.to_value()}}],
                    "failure": [],
                },
            )
            if answer["succeeded"]:
                return new
        raise ResourceExhaustedError(
            f"repository kept changing: gave up after MAX_CAS_ATTEMPTS ({limits.MAX_CAS_ATTEMPTS})"
        )

    async def rename(self, full_name: str, new_name: str) -> Repo:
        """Rename (or move to another owner) in one transaction; refs stay (keyed by id)."""
        old_name, target = parse_full_name(full_name), parse_full_name(new_name)
        repo, revision = await self._read(old_name)
        renamed = replace(repo, owner=target.owner, name=target.name)
        if renamed.key == repo.key:  # a change of case only
            return await self.update(full_name, owner=target.owner, name=target.name)
        await self._put_new(
            renamed, [{"delete": {"key": repo.key}}], compare=[_unchanged(repo.key, revision)]
        )
        return renamed

    async def delete(self, full_name: str) -> Repo:
        """Delete the repository: its record, refs and protection rules, in one commit.
        Its packs stay while a fork may share them (a store's packs are reclaimed with the
        store's last repository: not yet, see the README)."""
        repo, revision = await self._read(parse_full_name(full_name))
        refs = keys.refs_prefix(repo.id)
        answer = await self.writer.call(
            "kv.txn",
            {
                "compare": [_unchanged(repo.key, revision)],
                "success": [
                    {"delete": {"key": repo.key}},
                    {"delete": {"key": refs, "end": keys.prefix_end(refs)}},
                    {"delete": {"key": keys.protect_key(repo.id)}},
                ],
                "failure": [],
            },
        )
        if not answer["succeeded"]:
            raise CompareFailedError(f"repository {repo.full} changed meanwhile; retry")
        return repo

    async def fork(self, full_name: str, new_name: str, *, private: bool | None = None) -> Repo:
        """A new repository sharing ``full_name``'s objects (its store and alternates become
        the fork's alternates, as git's ``objects/info/alternates``), with a copy of its refs."""
        origin, revision = await self._read(parse_full_name(full_name))
        target = parse_full_name(new_name)
        refs = await read_refs(self.node, origin.id)
        if len(refs) > limits.MAX_FORK_REFS:
            raise ResourceExhaustedError(
                f"{origin.full} has {len(refs)} refs, over MAX_FORK_REFS ({limits.MAX_FORK_REFS})"
            )
        repo_id = uuid.uuid4().hex
        fork = replace(
            origin,
            id=repo_id,
            owner=target.owner,
            name=target.name,
            store=repo_id,
            alternates=tuple(origin.stores),
            created=time.time(),
            forked_from=origin.full,
            private=origin.private if private is None else bool(private),
        )
        puts = [
            {"put": {"key": keys.ref_key(repo_id, ref), "value": sha}} for ref, sha in refs.items()
        ]
        await self._put_new(fork, puts, compare=[_unchanged(origin.key, revision)])
        return fork
