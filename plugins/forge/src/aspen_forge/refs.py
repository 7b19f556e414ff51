"""Refs in KV, and the dulwich :class:`RefsContainer` that updates them by compare-and-swap.

A ref is the key ``refs/<repo id>/<ref name>`` holding the 40-hex id it points at. Every
update is a ``kv.txn`` whose compares say the ref still holds what the pusher saw (its
value, or that it is absent for a new ref): on a mismatch nothing is written and
:class:`StaleRefError` is **raised**. (dulwich ignores a ``False`` from
``set_if_equals``; returning it would report a lost update as success.) All updates of one
push with ``--atomic`` go in one transaction, together with the pack record that holds
their objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aspen.client.leader import LeaderCaller
from aspen.errors import CompareFailedError, ResourceExhaustedError
from aspen.kv import paging
from aspen_forge import keys, limits

__all__ = [
    "ZERO",
    "RefUpdate",
    "StaleRefError",
    "commit_updates",
    "read_refs",
    "ref_ops",
]

#: The all-zero object id: "absent" in a ref update.
ZERO = b"0" * 40


class StaleRefError(CompareFailedError):
    """A ref no longer holds the value an update expected (a concurrent push won)."""


@dataclass(frozen=True)
class RefUpdate:
    """Move ``ref`` from ``old`` to ``new`` (``ZERO`` for absent on either side)."""

    ref: bytes
    old: bytes
    new: bytes

    @property
    def is_delete(self) -> bool:
        """Whether the update deletes the ref."""
        return self.new == ZERO

    @property
    def is_create(self) -> bool:
        """Whether the update creates the ref."""
        return self.old == ZERO


async def read_refs(node: Any, repo_id: str, *, serializable: bool = False) -> dict[bytes, bytes]:
    """Every ref of ``repo_id`` (name → id), linearizable unless ``serializable``."""
    prefix = keys.refs_prefix(repo_id)
    records, truncated, _ = await paging.collect(
        node.call, prefix, most=limits.MAX_REFS, serializable=serializable, local=True
    )
    if truncated:
        raise ResourceExhaustedError(f"repository holds more than MAX_REFS ({limits.MAX_REFS})")
    return {kv["key"][len(prefix) :]: bytes(kv["value"]) for kv in records}


def ref_ops(repo_id: str, updates: list[RefUpdate]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The compares and ops of a txn applying ``updates`` if every ref is as expected."""
    compare: list[dict[str, Any]] = []
    success: list[dict[str, Any]] = []
    for update in updates:
        key = keys.ref_key(repo_id, update.ref)
        if update.is_create:
            compare.append({"key": key, "target": "version", "op": "==", "value": 0})
        else:
            compare.append({"key": key, "target": "value", "op": "==", "value": update.old})
        if update.is_delete:
            success.append({"delete": {"key": key}})
        else:
            success.append({"put": {"key": key, "value": update.new}})
    return compare, success


async def commit_updates(
    writer: LeaderCaller,
    repo_id: str,
    updates: list[RefUpdate],
    extra: list[dict[str, Any]] | None = None,
    extra_compare: list[dict[str, Any]] | None = None,
) -> int:
    """Apply ``updates`` (and the ``extra`` ops) in one transaction; raise
    :class:`StaleRefError` naming the refs if any was changed meanwhile. Returns the
    revision of the commit."""
    compare, success = ref_ops(repo_id, updates)
    compare += extra_compare or []
    answer = await writer.call(
        "kv.txn", {"compare": compare, "success": success + (extra or []), "failure": []}
    )
    if not answer["succeeded"]:
        names = ", ".join(u.ref.decode(errors="replace") for u in updates)
        raise StaleRefError(f"stale info: {names} changed since it was read (fetch first)")
    return int(answer["header"]["revision"])


def make_refs_container(
    refs: dict[bytes, bytes],
    head: bytes | None,
    commit: Callable[[list[RefUpdate]], None],
) -> Any:
    """A dulwich ``RefsContainer`` over a snapshot of ``refs`` (with ``HEAD`` → ``head``)
    whose updates go through ``commit`` (a blocking call that raises on a mismatch)."""
    from dulwich.refs import DictRefsContainer

    class ForgeRefs(DictRefsContainer):
        """Refs of one repository as read at the request's start; writes are KV CAS."""

        @property
        def _snapshot(self) -> dict[bytes, bytes]:
            return self._refs  # type: ignore[return-value]

        def set_if_equals(  # type: ignore[override]
            self, name: bytes, old_ref: bytes | None, new_ref: bytes, *args: Any, **kw: Any
        ) -> bool:
            """Set ``name`` to ``new_ref`` if it holds ``old_ref``; raise
            :class:`StaleRefError` otherwise (never return False)."""
            commit([RefUpdate(name, old_ref or ZERO, new_ref)])
            self._snapshot[name] = new_ref
            return True

        def add_if_new(  # type: ignore[override]
            self, name: bytes, ref: bytes, *args: Any, **kw: Any
        ) -> bool:
            """Create ``name`` at ``ref`` if absent; raise :class:`StaleRefError` if not."""
            commit([RefUpdate(name, ZERO, ref)])
            self._snapshot[name] = ref
            return True

        def remove_if_equals(  # type: ignore[override]
            self, name: bytes, old_ref: bytes | None, *args: Any, **kw: Any
        ) -> bool:
            """Delete ``name`` if it holds ``old_ref``; raise :class:`StaleRefError` if not."""
            current = self._snapshot.get(name, ZERO)
            commit([RefUpdate(name, old_ref or current, ZERO)])
            self._snapshot.pop(name, None)
            return True

    snapshot: dict[bytes, bytes] = dict(refs)
    if head is not None and head in refs:
        snapshot[b"HEAD"] = b"ref: " + head
    return ForgeRefs(snapshot)  # type: ignore[arg-type]
