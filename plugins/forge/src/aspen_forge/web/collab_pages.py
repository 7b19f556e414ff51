"""The web UI's issue and patch pages (URL map in :mod:`aspen_forge.web.app`).

Reads fold the op logs on this node (``Objects.load``/``summaries``) after the page's
repository check; every change (a comment, a close, a review, a merge) is a POSTed form
that carries the browser's CSRF token and runs the ``forge.issue_*``/``forge.patch_*``
RPC handler itself with the logged-in reader's authority, so the web UI and the RPC
have one set of rules: who may do what, the bounds, and the errors (shown as an error
page with the handler's message). A successful POST answers ``303`` back to the thread.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aspen.errors import AspenError
from aspen.rpc.context import RpcContext
from aspen_forge import limits
from aspen_forge.access import allowed, pusher_names
from aspen_forge.collab import issues, patches
from aspen_forge.collab.merge import merge_base
from aspen_forge.collab.rpc import collab_methods
from aspen_forge.collab.service import branch_ref
from aspen_forge.collab.statuses import list_statuses
from aspen_forge.collab.store import actor_of
from aspen_forge.refs import read_refs
from aspen_forge.repos import Repo
from aspen_forge.web import gitread
from aspen_forge.web.routes import PageError, Web, page_number, read_form

__all__ = ["CollabPages"]

#: HTTP status of an error page for each RPC error code (others: 400).
_STATUS = {
    "not_found": 404,
    "unauthorized": 403,
    "permission_denied": 403,
    "compare_failed": 409,
    "resource_exhausted": 413,
}
#: The states a list page filters by, per kind (the first is the default).
_STATES = {"issue": ("open", "closed"), "patch": ("open", "draft", "merged", "closed")}
#: Merge strategies the merge button offers (the first is preselected).
STRATEGIES = ("merge", "squash", "ff")
#: Review verdicts the review form offers.
VERDICTS = ("comment", "approve", "request_changes")


def _number(request: Any, name: str = "number") -> int:
    try:
        number = int(request.path_params[name])
    except ValueError:
        raise PageError(404, "no such page") from None
    if not 1 <= number <= 10**9:
        raise PageError(404, f"no {name} {number}")
    return number


def _see_other(url: str) -> Any:
    from starlette.responses import RedirectResponse

    return RedirectResponse(url, status_code=303)


class CollabPages:
    """The pages over one node's :class:`Web`; its methods are Starlette endpoints."""

    def __init__(self, web: Web) -> None:
        self.web = web
        service = web.service
        self.methods = {
            name: handler
            for name, handler, _ in collab_methods(lambda _ctx: service, lambda p: p["repo"])
        }

    # ------------------------------------------------------------------ helpers
    async def _call(self, request: Any, method: str, params: dict[str, Any]) -> Any:
        """Run RPC ``method`` as the logged-in reader (403 if anonymous); its errors
        become error pages with their message."""
        authority = self.web.authority(request)
        if authority is None:
            raise PageError(403, "log in to do that")
        ctx = RpcContext(
            node=self.web.service.node,
            peer=request.client.host if request.client else "web",
            identity="root" if authority.unrestricted else f"token:{authority.token_id}",
            connection_id=0,
            authority=authority,
        )
        try:
            return await self.methods[method](ctx, params)
        except AspenError as exc:
            raise PageError(_STATUS.get(exc.code, 400), exc.message) from None

    async def _post(self, request: Any) -> tuple[Repo, dict[str, str]]:
        """The page's repository and its POSTed form, CSRF-checked."""
        repo, _ = await self.web.repo(request)
        form = await read_form(request, limits.MAX_WEB_POST_BYTES)
        self.web.check_csrf(request, form)
        return repo, form

    async def _load(self, repo: Repo, kind: Any, number: int) -> dict[str, Any]:
        try:
            loaded = await self.web.service.collab.objects.load(repo, kind, number)
        except AspenError:
            raise PageError(404, f"no {kind.KIND} #{number} in {repo.full}") from None
        return dict(loaded.state)

    async def _list(self, request: Any, kind: Any, template: str) -> Any:
        repo, _ = await self.web.repo(request)
        states = _STATES[kind.KIND]
        state = request.query_params.get("state", states[0])
        if state not in (*states, "all"):
            raise PageError(400, f"state is one of {', '.join(states)}, all")
        page = page_number(request)
        found, truncated = await self.web.service.collab.objects.summaries(repo, kind)
        counts = {s: sum(1 for o in found if o["state"] == s) for s in states}
        shown = [o for o in found if state == "all" or o["state"] == state]
        shown.sort(key=lambda o: -o["number"])
        size = limits.WEB_OBJECTS_PAGE
        context = {
            "tab": f"{kind.KIND}s",
            "states": states,
            "state": state,
            "counts": counts,
            "items": shown[page * size : (page + 1) * size],
            "page": page,
            "more": len(shown) > (page + 1) * size,
            "truncated": truncated,
        }
        return await self.web.render(request, template, repo, lambda _: context)

    # ------------------------------------------------------------------ issues
    async def issue_list(self, request: Any) -> Any:
        """``/OWNER/NAME/issues?state=open|closed|all&page=N``."""
        return await self._list(request, issues, "issues.html")

    async def issue_page(self, request: Any) -> Any:
        """``/OWNER/NAME/issues/N``: the thread, and the forms the reader may use."""
        repo, authority = await self.web.repo(request)
        issue = await self._load(repo, issues, _number(request))
        me = actor_of(authority)
        may_triage = authority is not None and (
            issue["author"] == me or allowed(authority, "push", repo.full, private=repo.private)
        )
        context = {"tab": "issues", "issue": issue, "may_close": may_triage}
        return await self.web.render(request, "issue.html", repo, lambda _: context)

    async def issue_new(self, request: Any) -> Any:
        """``/OWNER/NAME/issues/new``: the form (GET) and opening the issue (POST)."""
        if request.method == "POST":
            repo, form = await self._post(request)
            params = {"repo": repo.full, "title": form.get("title", ""), "body": form.get("body")}
            made = await self._call(request, "forge.issue_create", params)
            return _see_other(f"/{quote(repo.full)}/issues/{made['number']}")
        repo, authority = await self.web.repo(request)
        if authority is None:
            raise PageError(403, "log in to open an issue")
        return await self.web.render(request, "issue_new.html", repo, lambda _: {"tab": "issues"})

    # ------------------------------------------------------------------ patches
    async def patch_list(self, request: Any) -> Any:
        """``/OWNER/NAME/patches?state=open|draft|merged|closed|all&page=N``."""
        return await self._list(request, patches, "patches.html")

    async def patch_page(self, request: Any) -> Any:
        """``/OWNER/NAME/patches/N``: revisions, reviews, statuses, the merge button (with
        what blocks it) and the review form."""
        repo, authority = await self.web.repo(request)
        patch = await self._load(repo, patches, _number(request))
        collab = self.web.service.collab
        head = patch["revisions"][-1]["head"] if patch["revisions"] else None
        merge = await collab.mergeability(repo, patch, pusher_names(authority))
        statuses = await list_statuses(self.web.service.node, repo, head) if head else []
        approvers, requesting = patches.approvals(patch, latest_only=False)
        context = {
            "tab": "patches",
            "patch": patch,
            "merge": merge,
            "statuses": statuses,
            "approvals": approvers,
            "changes_requested": requesting,
            "may_merge": allowed(authority, "push", repo.full, private=repo.private)
            and authority is not None,
            "strategies": STRATEGIES,
            "verdicts": VERDICTS,
        }
        return await self.web.render(request, "patch.html", repo, lambda _: context)

    async def revision_diff(self, request: Any) -> Any:
        """``/OWNER/NAME/patches/N/revisions/R``: revision R's head against where it
        leaves the target (their merge base; the revision's base if unrelated)."""
        repo, _ = await self.web.repo(request)
        patch = await self._load(repo, patches, _number(request))
        index = _number(request, "revision") - 1
        if index >= len(patch["revisions"]):
            raise PageError(404, f"patch #{patch['number']} has no revision {index + 1}")
        revision = patch["revisions"][index]
        refs = await read_refs(self.web.service.node, repo.id)
        await self.web.service.sync_stores(repo)
        target = refs.get(branch_ref(patch["target"]), revision["base"].encode())
        head = revision["head"].encode()

        def work(store: Any) -> dict[str, Any]:
            if head not in store:
                raise PageError(404, f"revision {index + 1}'s head {head.decode()} is gone")
            base = merge_base(store, target, head) or revision["base"].encode()
            old = store[base].tree if base in store else None
            files, cut = gitread.tree_diff(store, old, store[head].tree)
            return {
                "tab": "patches",
                "patch": patch,
                "revision": revision,
                "base": base.decode(),
                "files": files,
                "cut": cut,
                "max_bytes": limits.MAX_WEB_DIFF_BYTES,
                "max_files": limits.MAX_WEB_DIFF_FILES,
            }

        return await self.web.render(request, "revision.html", repo, work)

    # ------------------------------------------------------------------ changes
    def action(self, kind: str, method: str, *fields: str, anchor: str = "") -> Any:
        """A POST endpoint running ``forge.<kind>_<method>`` with the form's non-empty
        ``fields``, then back to the thread (at ``#anchor``)."""

        async def endpoint(request: Any) -> Any:
            repo, form = await self._post(request)
            number = _number(request)
            params: dict[str, Any] = {"repo": repo.full, "number": number}
            params.update({f: form[f] for f in fields if form.get(f)})
            await self._call(request, f"forge.{kind}_{method}", params)
            thread = request.url.path.rsplit("/", 1)[0]  # …/issues/N/comment → …/issues/N
            return _see_other(thread + anchor)

        endpoint.__doc__ = f"``POST …/N/{method}``: ``forge.{kind}_{method}``."
        return endpoint

    def routes(self, prefix: str) -> list[Any]:
        """The Starlette routes under ``prefix`` (``/{owner}/{name}``)."""
        from starlette.routing import Route

        issue, patch = prefix + "/issues", prefix + "/patches"
        post: dict[str, Any] = {"methods": ["POST"]}
        return [
            Route(issue, self.issue_list),
            Route(issue + "/new", self.issue_new, methods=["GET", "POST"]),
            Route(issue + "/{number}", self.issue_page),
            Route(issue + "/{number}/comment", self.action("issue", "comment", "body"), **post),
            Route(issue + "/{number}/close", self.action("issue", "close", "reason"), **post),
            Route(issue + "/{number}/reopen", self.action("issue", "reopen"), **post),
            Route(patch, self.patch_list),
            Route(patch + "/{number}", self.patch_page),
            Route(patch + "/{number}/revisions/{revision}", self.revision_diff),
            Route(
                patch + "/{number}/review",
                self.action("patch", "review", "verdict", "body", anchor="#reviews"),
                **post,
            ),
            Route(
                patch + "/{number}/comment",
                self.action("patch", "comment", "body", anchor="#comments"),
                **post,
            ),
            Route(patch + "/{number}/merge", self.action("patch", "merge", "strategy"), **post),
            *(
                Route(patch + "/{number}/" + change, self.action("patch", change), **post)
                for change in ("ready", "draft", "close", "reopen")
            ),
        ]
