"""The ``forge.*`` RPC methods (what ``aspen forge …`` calls).

Each declares the capability it needs: ``forge:admin:<owner>/<name>`` for changes to a
repository (create, update, rename, delete, protect), ``forge:read`` for reads, where a
public repository is readable by any token holding some ``forge`` capability and a private
one needs ``forge:read|push|admin`` on it (checked in the handler). Issues, patches and
statuses (:mod:`aspen_forge.collab.rpc`) pass the gate with any ``forge`` capability and
check ``forge:read`` or ``forge:push`` on the repository in the handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aspen.errors import NotFoundError, UnavailableError
from aspen.plugins.types import RpcHandler
from aspen.rpc.context import RpcContext
from aspen.rpc.params import optional_bool, optional_int, optional_list, optional_str, require_str
from aspen_forge import limits
from aspen_forge.access import allowed, capability
from aspen_forge.names import parse_full_name
from aspen_forge.protection import Rule, load_rules, remove_rule, save_rule
from aspen_forge.refs import read_refs
from aspen_forge.repos import Repo
from aspen_forge.service import ForgeService

__all__ = ["rpc_handlers"]

Lookup = Callable[[Any], ForgeService | None]
Handler = Callable[[RpcContext, dict[str, Any]], Awaitable[Any]]
_NAME_CHARS = 2 * limits.MAX_NAME_CHARS + 5


def _repo_param(params: dict[str, Any], field: str = "repo") -> str:
    return parse_full_name(require_str(params, field, max_len=_NAME_CHARS)).full


def _admin_scope(*fields: str) -> Callable[[dict[str, Any]], list[str]]:
    def scope(params: dict[str, Any]) -> list[str]:
        return [capability("admin", _repo_param(params, f)) for f in fields]

    return scope


def _any_forge(params: dict[str, Any]) -> list[str]:
    """Scope of reads: any ``forge`` capability passes the gate; the handler checks the
    repository (a public one is readable by all)."""
    return []


def rpc_handlers(lookup: Lookup) -> list[RpcHandler]:
    """The plugin's RPC handlers, finding each node's service with ``lookup``."""

    def service_of(ctx: RpcContext) -> ForgeService:
        service = lookup(ctx.node)
        if service is None:
            raise UnavailableError("aspen-forge has not started on this node", plugin="forge")
        return service

    async def readable(ctx: RpcContext, full_name: str) -> Repo:
        repo = await service_of(ctx).repos.get(full_name)
        if not allowed(ctx.authority, "read", repo.full, private=repo.private):
            raise NotFoundError(f"repository {full_name} not found")
        return repo

    async def repo_create(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Create repository ``repo`` (OWNER/NAME): {private?, description?, default_branch?}."""
        repo = await service_of(ctx).repos.create(
            _repo_param(params),
            private=optional_bool(params, "private"),
            description=optional_str(params, "description", "") or "",
            default_branch=optional_str(params, "default_branch", "main") or "main",
        )
        return repo.to_wire()

    async def repo_list(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Repositories the caller may read (of ``owner`` if given): {repos, truncated}."""
        owner = optional_str(params, "owner", max_len=limits.MAX_NAME_CHARS)
        repos, truncated = await service_of(ctx).repos.list(owner)
        visible = [r for r in repos if allowed(ctx.authority, "read", r.full, private=r.private)]
        return {"repos": [r.to_wire() for r in visible], "truncated": truncated}

    async def repo_show(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """One repository, with its refs and HTTP clone URL on this node."""
        service = service_of(ctx)
        repo = await readable(ctx, _repo_param(params))
        refs = await read_refs(ctx.node, repo.id)
        url = f"http://{service.http_address}/{repo.full}.git" if service.http_address else ""
        return {
            **repo.to_wire(),
            "refs": {k.decode(errors="replace"): v.decode() for k, v in sorted(refs.items())},
            "clone_url": url,
        }

    async def repo_update(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Change {description?, default_branch?, private?} of ``repo``."""
        changes = {
            k: params[k]
            for k in ("description", "default_branch", "private")
            if params.get(k) is not None
        }
        repo = await service_of(ctx).repos.update(_repo_param(params), **changes)
        return repo.to_wire()

    async def repo_rename(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Rename ``repo`` to ``new_name`` (OWNER/NAME)."""
        repo = await service_of(ctx).repos.rename(
            _repo_param(params), _repo_param(params, "new_name")
        )
        return repo.to_wire()

    async def repo_delete(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete ``repo`` (its refs and rules; objects stay while forks share them)."""
        repo = await service_of(ctx).repos.delete(_repo_param(params))
        return {"deleted": repo.full}

    async def repo_fork(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Fork ``repo`` as ``new_name``: objects shared, refs copied."""
        origin = await readable(ctx, _repo_param(params))
        private = params.get("private")
        fork = await service_of(ctx).repos.fork(
            origin.full,
            _repo_param(params, "new_name"),
            private=None if private is None else optional_bool(params, "private"),
        )
        return fork.to_wire()

    async def protect(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Add (or replace) the protection rule for branches matching ``pattern``."""
        service = service_of(ctx)
        repo = await service.repos.get(_repo_param(params))
        rule = Rule.validated(
            params.get("pattern"),
            no_force_push=optional_bool(params, "no_force_push", True),
            no_delete=optional_bool(params, "no_delete", False),
            push_allow=optional_list(params, "push_allow", max_len=limits.MAX_PUSH_ALLOW),
            required_approvals=optional_int(params, "required_approvals", 0, min=0, max=100),
            required_status=tuple(
                str(s) for s in optional_list(params, "required_status", max_len=100)
            ),
            dismiss_stale=optional_bool(params, "dismiss_stale", False),
        )
        rules = await save_rule(ctx.node, service.writer, repo.id, rule)
        return {"repo": repo.full, "rules": [r.to_wire() for r in rules]}

    async def unprotect(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """Drop the protection rule for ``pattern``."""
        service = service_of(ctx)
        repo = await service.repos.get(_repo_param(params))
        pattern = require_str(params, "pattern", max_len=limits.MAX_REF_BYTES)
        rules = await remove_rule(ctx.node, service.writer, repo.id, pattern)
        return {"repo": repo.full, "rules": [r.to_wire() for r in rules]}

    async def protections(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """The protection rules of ``repo``."""
        repo = await readable(ctx, _repo_param(params))
        return {
            "repo": repo.full,
            "rules": [r.to_wire() for r in await load_rules(ctx.node, repo.id)],
        }

    async def status(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
        """This node's forge: its git HTTP address."""
        return service_of(ctx).status()

    admin = "forge:admin"
    table: list[tuple[str, Handler, str, Callable[[dict[str, Any]], list[str]] | None]] = [
        ("forge.repo_create", repo_create, admin, _admin_scope("repo")),
        ("forge.repo_list", repo_list, "forge:read", _any_forge),
        ("forge.repo_show", repo_show, "forge:read", _any_forge),
        ("forge.repo_update", repo_update, admin, _admin_scope("repo")),
        ("forge.repo_rename", repo_rename, admin, _admin_scope("repo", "new_name")),
        ("forge.repo_delete", repo_delete, admin, _admin_scope("repo")),
        ("forge.repo_fork", repo_fork, admin, _admin_scope("new_name")),
        ("forge.protect", protect, admin, _admin_scope("repo")),
        ("forge.unprotect", unprotect, admin, _admin_scope("repo")),
        ("forge.protections", protections, "forge:read", _any_forge),
        ("forge.status", status, "cluster:read", None),
    ]
    from aspen_forge.collab.rpc import collab_methods

    table += [
        (name, fn, f"forge:{operation}", _any_forge)
        for name, fn, operation in collab_methods(service_of, _repo_param)
    ]
    return [
        RpcHandler(name, fn, doc=(fn.__doc__ or "").strip(), capability=cap, scope=scope)
        for name, fn, cap, scope in table
    ]
