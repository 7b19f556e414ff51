"""Merging a patch on the server: mergeability by a three-way merge, and the commits of the
``ff``, ``merge`` and ``squash`` strategies.

The functions here are blocking (dulwich over a node's local object store) and run in a
worker thread. New objects (merged blobs and trees, the merge or squash commit) are made
in memory over the store, then written as one pack that :mod:`aspen_forge.collab.service`
publishes and records in the same transaction that moves the target ref — a merge is a
push by the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aspen.errors import CompareFailedError
from aspen_forge import limits
from aspen_forge.push import is_ancestor

__all__ = ["MergeCheck", "build_merge", "check_merge", "merge_base"]


@dataclass
class MergeCheck:
    """Whether ``head`` merges into ``target``: ``landed`` (the target already holds it),
    ``fast_forward`` (the target is an ancestor of the head), ``conflicts`` (paths)."""

    landed: bool = False
    fast_forward: bool = False
    conflicts: list[str] = field(default_factory=list)
    conflict_count: int = 0

    @property
    def mergeable(self) -> bool:
        """Whether a ``merge`` or ``squash`` would succeed without conflicts."""
        return not self.conflict_count

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able map."""
        return {
            "mergeable": self.mergeable,
            "landed": self.landed,
            "fast_forward": self.fast_forward,
            "conflicts": self.conflicts,
            "conflict_count": self.conflict_count,
        }


def merge_base(store: Any, a: bytes, b: bytes) -> bytes | None:
    """A best common ancestor of commits ``a`` and ``b`` (``None`` if unrelated)."""
    from dulwich.graph import find_merge_base

    class _Repo:
        object_store = store

        def parents_provider(self) -> Any:
            from dulwich.repo import ParentsProvider

            return ParentsProvider(store)

    bases = find_merge_base(_Repo(), [a, b])  # type: ignore[arg-type,list-item]
    return bases[0] if bases else None


def _overlay(store: Any) -> tuple[Any, Any]:
    from dulwich.object_store import MemoryObjectStore, OverlayObjectStore

    fresh = MemoryObjectStore()
    return OverlayObjectStore([fresh, store], add_store=fresh), fresh


def _merge_trees(store: Any, target: bytes, head: bytes) -> tuple[Any, list[bytes], Any]:
    from dulwich.merge import three_way_merge

    overlay, fresh = _overlay(store)
    base = merge_base(store, target, head)
    tree, conflicts = three_way_merge(
        overlay, store[base] if base else None, store[target], store[head]
    )
    return tree, conflicts, fresh


def check_merge(store: Any, target: bytes, head: bytes) -> MergeCheck:
    """What merging ``head`` into ``target`` would do (no object is written)."""
    if target == head or is_ancestor(store, head, target):
        return MergeCheck(landed=True, fast_forward=True)
    if is_ancestor(store, target, head):
        return MergeCheck(fast_forward=True)
    _, conflicts, _ = _merge_trees(store, target, head)
    names = sorted(p.decode(errors="replace") for p in conflicts)
    return MergeCheck(conflicts=names[: limits.MAX_CONFLICT_PATHS], conflict_count=len(names))


def build_merge(
    store: Any,
    strategy: str,
    target: bytes,
    head: bytes,
    *,
    message: str,
    author: str,
) -> tuple[bytes, Path | None, int]:
    """The commit the target moves to under ``strategy``, and the pack (its basename, in
    ``store``'s pack directory) and object count holding the new objects (``None, 0`` for
    a fast-forward, and for a head the target holds already: it stays where it is).
    ``compare_failed`` naming the conflicting paths, or that a fast-forward is
    impossible."""
    from dulwich.objects import Commit

    if target == head or is_ancestor(store, head, target):
        return target, None, 0  # already on the target (landed by another merge): no commit
    if strategy == "ff":
        if not is_ancestor(store, target, head):
            raise CompareFailedError(
                "cannot fast-forward: the target has commits the patch lacks (use merge or squash)"
            )
        return head, None, 0
    tree, conflicts, fresh = _merge_trees(store, target, head)
    if conflicts:
        paths = sorted(p.decode(errors="replace") for p in conflicts)
        raise CompareFailedError(
            f"the patch conflicts with its target in {len(paths)} path(s): "
            + ", ".join(paths[: limits.MAX_CONFLICT_PATHS]),
            conflicts=paths[: limits.MAX_CONFLICT_PATHS],
        )
    fresh.add_object(tree)
    now = int(time.time())
    commit = Commit()
    commit.tree = tree.id
    commit.parents = [target, head] if strategy == "merge" else [target]  # type: ignore[list-item]
    identity = f"{author} <{author}@aspen-forge>".encode()
    commit.author = commit.committer = identity
    commit.author_time = commit.commit_time = now
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode()
    fresh.add_object(commit)
    objects = [(fresh[sha], None) for sha in fresh]
    pack = store.add_objects(objects)
    return commit.id, Path(pack._basename), len(objects)
