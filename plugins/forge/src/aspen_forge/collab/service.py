"""Patches against the repository's refs and objects: create (revision 1 from the source
branch), merge (a push by the server, under branch protection), mergeability, and what a
push does to patches (a new revision; merged when its head lands on the target), written
in the push's own ref-update transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio

from aspen.errors import AspenError, InvalidArgumentError
from aspen_forge import limits
from aspen_forge.collab import patches
from aspen_forge.collab.fields import StateError
from aspen_forge.collab.merge import build_merge, check_merge
from aspen_forge.collab.statuses import list_statuses
from aspen_forge.collab.store import Objects
from aspen_forge.events import push_event_ops
from aspen_forge.keys import pack_key
from aspen_forge.protection import load_rules, merge_blockers
from aspen_forge.push import is_ancestor
from aspen_forge.refs import RefUpdate, read_refs, ref_ops
from aspen_forge.repos import Repo, validate_branch
from aspen_forge.storage.packs import publish_pack

__all__ = ["Collab", "branch_ref"]

log = logging.getLogger(__name__)


def branch_ref(branch: str) -> bytes:
    """``refs/heads/<branch>``."""
    return b"refs/heads/" + branch.encode()


class Collab:
    """One node's patch operations that need refs and objects (issues need only
    :class:`Objects`)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.node = service.node
        self.objects = Objects(service.node, service.writer)

    async def _tip(self, repo: Repo, branch: str, field: str) -> bytes:
        refs = await read_refs(self.node, repo.id)
        tip = refs.get(branch_ref(branch))
        if tip is None:
            raise InvalidArgumentError(f"{repo.full} has no branch {branch}", field=field)
        return tip

    async def _in_store(self, repo: Repo, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(store, *args)`` in a worker thread over ``repo``'s synced store."""
        await self.service.sync_stores(repo)

        def work() -> Any:
            store = self.service.stores.open(repo.store)
            try:
                return fn(store, *args)
            finally:
                store.close()

        return await anyio.to_thread.run_sync(work)

    # ------------------------------------------------------------------ create
    async def create_patch(
        self, repo: Repo, actor: str, source: str, target: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Open a patch from branch ``source`` into ``target`` (revision 1: the source tip)."""
        source, target = validate_branch(source), validate_branch(target)
        if source == target:
            raise InvalidArgumentError("source and target are the same branch", field="source")
        head = await self._tip(repo, source, "source")
        base = await self._tip(repo, target, "target")
        body = {**body, "source": source, "target": target, "head": head.decode()}
        body["base"] = base.decode()
        return await self.objects.create(repo, patches, actor, body)

    # ------------------------------------------------------------------ mergeability
    async def mergeability(
        self, repo: Repo, state: dict[str, Any], pusher: set[str]
    ) -> dict[str, Any]:
        """Whether the live patch ``state`` may merge now: the three-way merge's answer
        and the protection rules' ``blockers``."""
        if state["state"] not in ("draft", "open"):
            return {"mergeable": False, "blockers": [f"patch is {state['state']}"]}
        head = state["revisions"][-1]["head"].encode()
        try:
            target = await self._tip(repo, state["target"], "target")
        except InvalidArgumentError as exc:
            return {"mergeable": False, "blockers": [exc.message]}
        check = await self._in_store(repo, check_merge, target, head)
        blockers = await self._blockers(repo, state, pusher)
        if state["state"] == "draft":
            blockers.insert(0, "patch is a draft: mark it ready first")
        if check.conflict_count:
            blockers.append(f"conflicts in {check.conflict_count} path(s)")
        return {**check.to_wire(), "blockers": blockers}

    async def _blockers(self, repo: Repo, state: dict[str, Any], pusher: set[str]) -> list[str]:
        head = state["revisions"][-1]["head"]
        statuses = {s["context"]: s["state"] for s in await list_statuses(self.node, repo, head)}
        return merge_blockers(
            await load_rules(self.node, repo.id),
            state["target"],
            pusher,
            lambda latest_only: patches.approvals(state, latest_only=latest_only),
            statuses,
        )

    # ------------------------------------------------------------------ merge
    async def merge(
        self, repo: Repo, number: int, actor: str, pusher: set[str], strategy: str
    ) -> dict[str, Any]:
        """Merge patch ``number`` by ``strategy``: the target moves by compare-and-swap in
        the transaction that records the merge (``compare_failed`` with the reason when
        the patch is not open, protection blocks it, or it conflicts)."""
        if strategy not in patches.STRATEGIES:
            raise InvalidArgumentError(
                f"strategy is one of {', '.join(patches.STRATEGIES)}", field="strategy"
            )
        loaded = await self.objects.load(repo, patches, number)
        state = loaded.state
        if state["state"] == "draft":
            raise StateError(f"patch #{number} is a draft: mark it ready before merging")
        if state["state"] != "open":
            raise StateError(f"patch #{number} is {state['state']}: only an open patch merges")
        revision = state["revisions"][-1]
        head = revision["head"].encode()
        refs = await read_refs(self.node, repo.id)
        target_ref = branch_ref(state["target"])
        target = refs.get(target_ref)
        if target is None:
            raise StateError(f"target branch {state['target']} no longer exists")
        blockers = await self._blockers(repo, state, pusher)
        if blockers:
            raise StateError(
                f"patch #{number} cannot merge: {'; '.join(blockers)}", blockers=blockers
            )
        message = (
            f"{state['title']} (#{number})\n\n{state['body']}".rstrip() + "\n"
            if strategy == "squash"
            else f"Merge patch #{number}: {state['title']}\n\n"
            f"Merges {state['source']} (revision {revision['number']}) into {state['target']}.\n"
        )
        others = [
            s
            for s in (await self.objects.summaries(repo, patches))[0]
            if s["state"] in ("draft", "open")
            and s["number"] != number
            and s["target"] == state["target"]
        ]

        def work(store: Any) -> tuple[bytes, Any, int, list[dict[str, Any]]]:
            new, basename, count = build_merge(
                store, strategy, target, head, message=message, author=actor
            )
            landed = [s for s in others if is_ancestor(store, s["head"].encode(), new)]
            return new, basename, count, landed[: limits.MAX_PATCH_UPDATES_PER_PUSH]

        new, basename, count, landed = await self._in_store(repo, work)
        compare, ops = await self._landed_ops(repo, landed, new, actor)
        extra: list[dict[str, Any]] = []
        if basename is not None:
            record = await publish_pack(self.node, repo.store, basename, count)
            extra.append(
                {"put": {"key": pack_key(repo.store, record.name), "value": record.to_value()}}
            )
        update = RefUpdate(target_ref, target, new)
        ref_compare, ref_put = ref_ops(repo.id, [update])
        compare += ref_compare
        ops += ref_put + extra + push_event_ops(self.node.events, repo, actor, [update])
        body = {
            "commit": new.decode(),
            "strategy": strategy,
            "revision": revision["number"],
            "via": "server",
        }
        return await self.objects.append(
            repo,
            patches,
            number,
            actor,
            "merged",
            body,
            extra_compare=compare,
            extra_ops=ops,
            loaded=loaded,
        )

    async def _landed_ops(
        self, repo: Repo, landed: list[dict[str, Any]], commit: bytes, actor: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Compares and ops marking the ``landed`` patches (summaries) merged by ``commit``
        reaching their target (a patch whose op cannot be made is left alone)."""
        compare: list[dict[str, Any]] = []
        ops: list[dict[str, Any]] = []
        for summary in landed:
            body = {
                "commit": commit.decode(),
                "strategy": "push",
                "revision": summary["revision_count"],
                "via": "push",
            }
            try:
                prepared = await self.objects.prepare(
                    repo, patches, summary["number"], actor, "merged", body
                )
            except AspenError as exc:
                log.warning(
                    "forge: patch #%d of %s left open: %s", summary["number"], repo.full, exc
                )
                continue
            compare += prepared.compare
            ops += prepared.ops
        return compare, ops

    # ------------------------------------------------------------------ pushes
    def push_ops(
        self, store: Any, repo: Repo, updates: list[RefUpdate], actor: str, run: Callable[..., Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The compares and ops a push's own transaction adds for the live patches it
        touches (called in the push's worker thread, ``run`` reaching the event loop): a
        push moving a patch's source adds a revision; a push landing a patch's head on its
        target (the new tip or an ancestor of it) marks it merged. A patch whose op cannot
        be made (its log full) is logged and left alone: the push goes on."""
        moved = {
            u.ref: u.new for u in updates if not u.is_delete and u.ref.startswith(b"refs/heads/")
        }
        if not moved:
            return [], []
        live = [
            s
            for s in run(self.objects.summaries, repo, patches)[0]
            if s["state"] in ("draft", "open")
        ]
        compare: list[dict[str, Any]] = []
        ops: list[dict[str, Any]] = []
        refs: dict[bytes, bytes] | None = None
        touched = 0
        for summary in live:
            if touched >= limits.MAX_PATCH_UPDATES_PER_PUSH:
                log.warning(
                    "forge: a push to %s touches more than MAX_PATCH_UPDATES_PER_PUSH (%d) "
                    "patches; the rest are left as they are",
                    repo.full,
                    limits.MAX_PATCH_UPDATES_PER_PUSH,
                )
                break
            number, head = summary["number"], summary["head"].encode()
            new_target = moved.get(branch_ref(summary["target"]))
            new_source = moved.get(branch_ref(summary["source"]))
            if new_target is not None and (
                head == new_target or is_ancestor(store, head, new_target)
            ):
                more_compare, more_ops = run(self._landed_ops, repo, [summary], new_target, actor)
                compare += more_compare
                ops += more_ops
                touched += 1
                continue
            if new_source is None or new_source == head:
                continue
            if refs is None:
                refs = run(read_refs, self.node, repo.id)
            target = refs.get(branch_ref(summary["target"]), b"")
            body = {"head": new_source.decode(), "base": target.decode()}
            try:
                prepared = run(self.objects.prepare, repo, patches, number, actor, "revision", body)
            except AspenError as exc:
                log.warning(
                    "forge: patch #%d of %s has no new revision: %s", number, repo.full, exc
                )
                continue
            compare += prepared.compare
            ops += prepared.ops
            touched += 1
        return compare, ops
