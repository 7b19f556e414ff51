"""The push side of receive-pack: take the pack, check every ref, commit in KV.

Runs in the git worker thread (:mod:`git_http`); ``run`` calls a coroutine function on the
node's event loop and waits for it. Steps:

1. the (thin) pack is streamed into the node's local object store and completed with its
   delta bases (:mod:`storage.indexpack`: ``git index-pack`` or dulwich; bounded by
   ``MAX_PUSH_BYTES``: over it, or malformed, the push is refused whole and git shows
   ``remote unpack failed`` with the reason);
2. the completed pack is made durable in the cluster (:func:`storage.packs.publish_pack`);
3. each ref update is checked: a sane name, its new object present (a commit for a
   branch), branch protection (:mod:`protection`);
4. the accepted updates, the pack record, the ``forge.push`` event and the patch ops the
   push implies (a revision for a patch whose source moved; ``merged`` for one whose head
   landed on its target: :meth:`aspen_forge.collab.service.Collab.push_ops`) are committed
   by one ``kv.txn`` whose compares say every ref still holds what the pusher saw
   (``--atomic``: all or none; else on a stale ref each update is retried alone, so the
   others still land). A ref that changed meanwhile is answered ``ng <ref> stale info``:
   git shows
   ``! [remote rejected] main (stale info…)`` and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from aspen.errors import AspenError
from aspen_forge import limits
from aspen_forge.events import push_event_ops
from aspen_forge.keys import pack_key
from aspen_forge.protection import Rule, check_update
from aspen_forge.refs import ZERO, RefUpdate, StaleRefError, commit_updates, read_refs
from aspen_forge.repos import Repo
from aspen_forge.storage.indexpack import BadPack, PackTooLarge, receive_pack
from aspen_forge.storage.packs import PackRecord, pin_name, publish_pack

__all__ = ["PushSession", "is_ancestor", "receive_pack_handler"]

log = logging.getLogger(__name__)

Status = tuple[bytes, bytes]


class PushSession:
    """One push to ``repo`` by ``pusher``; :meth:`apply` is the handler's ``_apply_pack``."""

    def __init__(
        self,
        service: Any,
        repo: Repo,
        rules: list[Rule],
        pusher: set[str],
        run: Callable[..., Any],
    ) -> None:
        self.service = service
        self.repo = repo
        self.rules = rules
        self.pusher = pusher
        self.run = run
        #: The refs this push updated (for the caller, after the handler returns).
        self.updated: list[RefUpdate] = []
        #: The request's object store (set by :meth:`apply`; patch checks walk it).
        self._store: Any = None

    # ------------------------------------------------------------------ pack
    def apply(
        self, store: Any, proto: Any, commands: list[tuple[bytes, bytes, bytes]], atomic: bool
    ) -> Iterator[Status]:
        """Yield ``(b"unpack", result)`` then ``(ref, b"ok" | reason)`` for each command."""
        updates = [RefUpdate(ref, old, new) for old, new, ref in commands]
        if len(updates) > limits.MAX_REF_UPDATES:
            yield from _refuse_all(
                updates,
                f"{len(updates)} ref updates, over MAX_REF_UPDATES ({limits.MAX_REF_UPDATES})",
            )
            return
        pack = None
        started = time.monotonic()
        if any(not u.is_delete for u in updates):
            bound = self.service.max_push_bytes
            try:
                pack = receive_pack(
                    store,
                    self.service.stores.path(self.repo.store),
                    self.service.git_dir,
                    getattr(proto, "recv", proto.read),
                    proto.read,
                    bound,
                )
            except PackTooLarge:
                yield from _refuse_all(updates, f"pack is over MAX_PUSH_BYTES ({bound} bytes)")
                return
            except BadPack as exc:
                yield from _refuse_all(updates, f"malformed pack: {exc}")
                return
        record: PackRecord | None = None
        received = time.monotonic()
        if pack is not None:
            record = self.run(
                publish_pack, self.service.node, self.repo.store, pack.basename, pack.count
            )
        published = time.monotonic()
        yield (b"unpack", b"ok")
        reasons = {u.ref: self._check(store, u) for u in updates}
        checked = time.monotonic()
        self._store = store
        yield from self._commit(updates, reasons, record, atomic)
        log.info(
            "forge: push to %s: %d objects, %d bytes; received %.3fs, stored %.3fs, "
            "checked %.3fs, committed %.3fs",
            self.repo.full,
            record.count if record else 0,
            record.size if record else 0,
            received - started,
            published - received,
            checked - published,
            time.monotonic() - checked,
        )

    # ------------------------------------------------------------------ checks
    def _check(self, store: Any, update: RefUpdate) -> str | None:
        from dulwich.objects import Commit
        from dulwich.refs import check_ref_format

        ref = update.ref
        if len(ref) > limits.MAX_REF_BYTES:
            return f"ref name over MAX_REF_BYTES ({limits.MAX_REF_BYTES})"
        if not ref.startswith(b"refs/") or not check_ref_format(ref):  # type: ignore[arg-type]
            return "funny refname"
        if not update.is_delete:
            if update.new not in store:
                return f"missing object {update.new.decode()}"
            if ref.startswith(b"refs/heads/") and store[update.new].type_name != Commit.type_name:
                return "a branch must point at a commit"
        return check_update(
            self.rules, update, self.pusher, lambda old, new: is_ancestor(store, old, new)
        )

    # ------------------------------------------------------------------ commit
    def _commit(
        self,
        updates: list[RefUpdate],
        reasons: dict[bytes, str | None],
        record: PackRecord | None,
        atomic: bool,
    ) -> Iterator[Status]:
        accepted = [u for u in updates if reasons[u.ref] is None]
        if atomic and len(accepted) != len(updates):
            for u in updates:
                yield (u.ref, (reasons[u.ref] or "atomic push failed").encode())
            self._forget(record)
            return
        results: dict[bytes, str] = {u.ref: reasons[u.ref] or "" for u in updates}
        if accepted:
            extra = self._pack_ops(record)
            try:
                self._commit_batch(accepted, extra)
                self.updated = accepted
            except StaleRefError as exc:
                if atomic:
                    results.update({u.ref: exc.message for u in accepted})
                else:
                    self._commit_each(accepted, extra, results)
            except AspenError as exc:
                results.update({u.ref: f"not committed: {exc.message}" for u in accepted})
        if not self.updated:
            self._forget(record)
        for u in updates:
            yield (u.ref, results[u.ref].encode() if results[u.ref] else b"ok")

    @property
    def _pusher(self) -> str:
        """The one name the push goes by in events and patch ops."""
        return sorted(self.pusher)[0] if self.pusher else "anonymous"

    def _commit_batch(self, batch: list[RefUpdate], extra: list[dict[str, Any]]) -> None:
        """Commit ``batch`` with the pack record, the ``forge.push`` event and what it does
        to patches (revisions, merges), in one transaction. If only a patch changed
        meanwhile (its refs still hold what the pusher saw), the patch ops are made again."""
        events = push_event_ops(self.service.node.events, self.repo, self._pusher, batch)
        collab = self.service.collab
        for _ in range(limits.MAX_CAS_ATTEMPTS):
            compare, patch_ops = collab.push_ops(
                self._store, self.repo, batch, self._pusher, self.run
            )
            try:
                self.run(
                    commit_updates,
                    self.service.writer,
                    self.repo.id,
                    batch,
                    extra + events + patch_ops,
                    compare,
                )
                return
            except StaleRefError:
                if not compare or self._refs_moved(batch):
                    raise
        raise StaleRefError(
            "the repository's patches kept changing during the push: gave up after "
            f"MAX_CAS_ATTEMPTS ({limits.MAX_CAS_ATTEMPTS}); push again"
        )

    def _refs_moved(self, batch: list[RefUpdate]) -> bool:
        """Whether a ref of ``batch`` no longer holds what the pusher saw."""
        refs = self.run(read_refs, self.service.node, self.repo.id)
        return any(refs.get(u.ref, ZERO) != u.old for u in batch)

    def _commit_each(
        self, accepted: list[RefUpdate], extra: list[dict[str, Any]], results: dict[bytes, str]
    ) -> None:
        for update in accepted:
            try:
                self._commit_batch([update], extra)
                self.updated.append(update)
            except AspenError as exc:
                results[update.ref] = exc.message

    def _pack_ops(self, record: PackRecord | None) -> list[dict[str, Any]]:
        if record is None:
            return []
        key = pack_key(self.repo.store, record.name)
        return [{"put": {"key": key, "value": record.to_value()}}]

    def _forget(self, record: PackRecord | None) -> None:
        """Unpin the blobs of a pack no ref took (best effort: GC takes them otherwise)."""
        if record is None:
            return
        for what, digest in (("pack", record.pack_blob), ("idx", record.idx_blob)):
            if digest:
                try:
                    self.run(
                        self.service.node.blobs.unpin, pin_name(self.repo.store, record.name, what)
                    )
                except AspenError as exc:
                    log.debug("forge: unpin of an unused pack failed: %s", exc)


def _refuse_all(updates: list[RefUpdate], reason: str) -> Iterator[Status]:
    yield (b"unpack", reason.encode())
    for u in updates:
        yield (u.ref, b"unpacker error")


def is_ancestor(store: Any, old: bytes, new: bytes) -> bool:
    """Whether commit ``old`` is reachable from ``new`` (a fast-forward), walking at most
    MAX_ANCESTRY_WALK commits."""
    from dulwich.objects import Commit

    if old not in store:
        return False
    graph = store.get_commit_graph()
    seen: set[bytes] = set()
    todo = [new]
    while todo and len(seen) < limits.MAX_ANCESTRY_WALK:
        sha = todo.pop()
        if sha == old:
            return True
        if sha in seen or sha not in store:
            continue
        seen.add(sha)
        parents = graph.get_parents(sha) if graph is not None else None
        if parents is None:
            obj = store[sha]
            parents = obj.parents if isinstance(obj, Commit) else []
        todo.extend(parents)
    return False


def receive_pack_handler(session: PushSession) -> type:
    """dulwich's ``ReceivePackHandler`` with ``_apply_pack`` replaced by ``session``'s."""
    from dulwich.protocol import CAPABILITY_ATOMIC
    from dulwich.server import ReceivePackHandler

    class ForgeReceivePack(ReceivePackHandler):
        """receive-pack whose ref updates are compare-and-swaps in the cluster."""

        def _apply_pack(self, refs: list[Any]) -> Iterator[Status]:  # type: ignore[override]
            return session.apply(
                self.repo.object_store,
                self.proto,
                refs,
                atomic=self.has_capability(CAPABILITY_ATOMIC),
            )

    return ForgeReceivePack
