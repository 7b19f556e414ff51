"""``forge.issue_*``, ``forge.patch_*`` and ``forge.status_*`` RPC methods.

Access (checked in the handler with :func:`aspen_forge.access.allowed`, so ``push``
implies ``read`` and ``admin`` both): reading, opening an issue, commenting and reviewing
need ``forge:read`` on the repository (public ones: any token passing the gate), and so
do editing, closing and reopening one's own issue; triage (those on others' issues,
labels, assignees), opening and merging patches and setting statuses need
``forge:push``. Every answer is a JSON-able map; the shapes are in the README.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aspen.errors import InvalidArgumentError, NotFoundError, UnauthorizedError
from aspen.rpc.context import RpcContext
from aspen.rpc.params import optional_str, require_int, require_str
from aspen_forge.access import allowed, capability, pusher_names
from aspen_forge.collab import issues, patches
from aspen_forge.collab.statuses import list_statuses, set_status
from aspen_forge.collab.store import actor_of
from aspen_forge.repos import Repo

__all__ = ["collab_methods"]

Handler = Callable[[RpcContext, dict[str, Any]], Awaitable[Any]]
#: ``(method, handler, operation it needs on the repository)``.
Method = tuple[str, Handler, str]


def _number(params: dict[str, Any]) -> int:
    return require_int(params, "number", min=1, max=10**9)


def _require(ctx: RpcContext, repo: Repo, operation: str) -> None:
    """Raise ``unauthorized`` naming ``forge:<operation>:<repo>`` unless the caller holds it."""
    if not allowed(ctx.authority, operation, repo.full, private=repo.private):
        wanted = capability(operation, repo.full)
        raise UnauthorizedError(f"this token does not hold {wanted}", capability=wanted)


def collab_methods(
    service_of: Callable[[RpcContext], Any], repo_param: Callable[[dict[str, Any]], str]
) -> list[Method]:
    """The methods, finding the node's service with ``service_of``."""

    async def repo_for(ctx: RpcContext, params: dict[str, Any], operation: str) -> Repo:
        repo = await service_of(ctx).repos.get(repo_param(params))
        if not allowed(ctx.authority, "read", repo.full, private=repo.private):
            raise NotFoundError(f"repository {repo.full} not found")
        _require(ctx, repo, operation)
        return repo

    def objects(ctx: RpcContext) -> Any:
        return service_of(ctx).collab.objects

    # ------------------------------------------------------------------ issues
    async def issue_create(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Open an issue: {repo, title, body?, labels?} → the issue."""
        repo = await repo_for(ctx, params, "read")
        body = {k: params.get(k) for k in ("title", "body", "labels")}
        return await objects(ctx).create(repo, issues, actor_of(ctx.authority), body)

    async def issue_list(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Issue summaries of ``repo`` (``state`` open|closed to filter): {issues, truncated}."""
        repo = await repo_for(ctx, params, "read")
        found, truncated = await objects(ctx).summaries(repo, issues, optional_str(params, "state"))
        return {"issues": found, "truncated": truncated}

    async def issue_show(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """One issue, folded from its op log, with its comments (``ops``: the log too)."""
        repo = await repo_for(ctx, params, "read")
        loaded = await objects(ctx).load(repo, issues, _number(params))
        out = {**loaded.state, "repo": repo.full}
        if params.get("ops"):
            out["log"] = [op.to_wire() for op in loaded.ops]
        return out

    def issue_op(op_type: str, operation: str, fields: tuple[str, ...]) -> Handler:
        """A handler appending ``op_type``; ``author``: its author with ``forge:read``
        may too (their own issue), others need ``forge:push``."""

        async def handler(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
            actor = actor_of(ctx.authority)
            repo = await repo_for(ctx, params, "read" if operation == "author" else operation)
            body = {k: params.get(k) for k in fields}

            def authorize(state: dict[str, Any]) -> None:
                if state["author"] != actor:
                    _require(ctx, repo, "push")

            return await objects(ctx).append(
                repo,
                issues,
                _number(params),
                actor,
                op_type,
                body,
                authorize=authorize if operation == "author" else None,
            )

        handler.__doc__ = f"Issue op ``{op_type}`` {{repo, number, {', '.join(fields)}}}."
        return handler

    # ------------------------------------------------------------------ patches
    async def patch_create(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Open a patch: {repo, source, target, title, body?, draft?} → the patch."""
        repo = await repo_for(ctx, params, "push")
        body = {"title": params.get("title"), "body": params.get("body")}
        body["draft"] = bool(params.get("draft"))
        return await service_of(ctx).collab.create_patch(
            repo,
            actor_of(ctx.authority),
            require_str(params, "source", max_len=512),
            require_str(params, "target", max_len=512),
            body,
        )

    async def patch_list(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Patch summaries of ``repo`` (``state`` draft|open|merged|closed to filter)."""
        repo = await repo_for(ctx, params, "read")
        found, truncated = await objects(ctx).summaries(
            repo, patches, optional_str(params, "state")
        )
        return {"patches": found, "truncated": truncated}

    async def patch_show(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """One patch with its revisions (each with its reviews), comments, approvals and
        ``merge``: {mergeable, fast_forward, landed, conflicts, conflict_count, blockers}."""
        repo = await repo_for(ctx, params, "read")
        loaded = await objects(ctx).load(repo, patches, _number(params))
        state = loaded.state
        approvers, requesting = patches.approvals(state, latest_only=False)
        out = {
            **state,
            "repo": repo.full,
            "approvals": approvers,
            "changes_requested": requesting,
            "merge": await service_of(ctx).collab.mergeability(
                repo, state, pusher_names(ctx.authority)
            ),
        }
        if params.get("ops"):
            out["log"] = [op.to_wire() for op in loaded.ops]
        return out

    async def patch_review(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Review a revision: {repo, number, verdict approve|request_changes|comment,
        body?, revision? (default latest), comments?: [{path, line, body}]}."""
        repo = await repo_for(ctx, params, "read")
        body = {k: params.get(k) for k in ("verdict", "body", "revision", "comments")}
        return await objects(ctx).append(
            repo, patches, _number(params), actor_of(ctx.authority), "review", body
        )

    def patch_op(op_type: str, operation: str, fields: tuple[str, ...]) -> Handler:
        async def handler(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
            repo = await repo_for(ctx, params, operation)
            body = {k: params.get(k) for k in fields}
            return await objects(ctx).append(
                repo, patches, _number(params), actor_of(ctx.authority), op_type, body
            )

        handler.__doc__ = f"Patch op ``{op_type}`` {{repo, number, {', '.join(fields)}}}."
        return handler

    async def patch_merge(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Merge: {repo, number, strategy ff|merge|squash (default merge)} → the patch."""
        repo = await repo_for(ctx, params, "push")
        return await service_of(ctx).collab.merge(
            repo,
            _number(params),
            actor_of(ctx.authority),
            pusher_names(ctx.authority),
            optional_str(params, "strategy", "merge") or "merge",
        )

    # ------------------------------------------------------------------ statuses
    async def status_set(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Set {repo, commit, context, state pending|success|failure|error,
        description?, target_url?} → the status."""
        repo = await repo_for(ctx, params, "push")
        service = service_of(ctx)
        return await set_status(
            service.node,
            service.writer,
            repo,
            str(params.get("commit") or ""),
            str(params.get("context") or ""),
            str(params.get("state")),
            actor_of(ctx.authority),
            description=params.get("description") or "",
            target_url=params.get("target_url") or "",
        )

    async def status_list(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """The statuses of {repo, commit}: {commit, statuses}."""
        repo = await repo_for(ctx, params, "read")
        commit = params.get("commit")
        if not isinstance(commit, str):
            raise InvalidArgumentError("commit is a 40-hex object id", field="commit")
        return {
            "commit": commit,
            "statuses": await list_statuses(service_of(ctx).node, repo, commit),
        }

    return [
        ("forge.issue_create", issue_create, "read"),
        ("forge.issue_list", issue_list, "read"),
        ("forge.issue_show", issue_show, "read"),
        ("forge.issue_comment", issue_op("comment", "read", ("body",)), "read"),
        ("forge.issue_edit", issue_op("edit", "author", ("title", "body")), "read"),
        ("forge.issue_label", issue_op("label", "push", ("add", "remove")), "push"),
        ("forge.issue_assign", issue_op("assign", "push", ("add", "remove")), "push"),
        ("forge.issue_close", issue_op("close", "author", ("reason",)), "read"),
        ("forge.issue_reopen", issue_op("reopen", "author", ()), "read"),
        ("forge.patch_create", patch_create, "push"),
        ("forge.patch_list", patch_list, "read"),
        ("forge.patch_show", patch_show, "read"),
        ("forge.patch_review", patch_review, "read"),
        ("forge.patch_comment", patch_op("comment", "read", ("body",)), "read"),
        ("forge.patch_edit", patch_op("edit", "push", ("title", "body")), "push"),
        ("forge.patch_ready", patch_op("ready", "push", ()), "push"),
        ("forge.patch_draft", patch_op("draft", "push", ()), "push"),
        ("forge.patch_close", patch_op("close", "push", ()), "push"),
        ("forge.patch_reopen", patch_op("reopen", "push", ()), "push"),
        ("forge.patch_merge", patch_merge, "push"),
        ("forge.status_set", status_set, "push"),
        ("forge.status_list", status_list, "read"),
    ]
