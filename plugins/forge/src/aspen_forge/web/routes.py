"""The web UI's pages (see :mod:`aspen_forge.web.app` for the URL map).

A page checks the repository and the reader on the event loop (record, token, refs, packs
brought to this node's disk, as git requests do), then reads objects, highlights and
renders in a worker thread (MAX_CONCURRENT_WEB_READS at once). A private repository that
the reader may not read answers the same 404 as an absent one.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote

import anyio

from aspen.errors import AspenError, NotFoundError
from aspen_forge import limits
from aspen_forge.access import allowed
from aspen_forge.git_http import choose_head
from aspen_forge.names import RepoName
from aspen_forge.refs import read_refs
from aspen_forge.repos import Repo
from aspen_forge.web import gitread, render

__all__ = ["COOKIE", "CSRF_COOKIE", "PageError", "Web", "page_number", "read_form", "web_app"]

#: The cookie that carries a logged-in reader's token.
COOKIE = "aspen_forge_token"
#: The cookie that carries the browser's CSRF token (every form echoes it in ``csrf``).
CSRF_COOKIE = "aspen_forge_csrf"
_STATIC = Path(__file__).parent / "static"
#: Pages load nothing from elsewhere and run no script; raw files are sandboxed.
_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self' data: https:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


#: Raw files served with their image type, so that READMEs can show them.
_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


_UNSET = object()


class PageError(Exception):
    """Answer with an error page: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Web:
    """What every page needs: the node's forge service and the worker-thread limiter."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.limiter = anyio.CapacityLimiter(limits.MAX_CONCURRENT_WEB_READS)

    def authority(self, request: Any) -> Any:
        """The reader's authority from the login cookie (``None``: anonymous or stale)."""
        authority = getattr(request.state, "authority", _UNSET)  # checked once per request
        if authority is _UNSET:
            token = request.cookies.get(COOKIE)
            authority = self.service.node.authenticate(token) if token else None
            request.state.authority = authority
        return authority

    def csrf(self, request: Any) -> str:
        """The browser's CSRF token: its cookie's, or a new one that the response sets."""
        token = getattr(request.state, "csrf", None)
        if token is None:
            token = request.cookies.get(CSRF_COOKIE, "")
            if len(token) != 2 * limits.WEB_CSRF_BYTES or not token.isalnum():
                token = secrets.token_hex(limits.WEB_CSRF_BYTES)
                request.state.csrf_new = True
            request.state.csrf = token
        return token

    def check_csrf(self, request: Any, form: dict[str, str]) -> None:
        """403 unless the POSTed ``form`` carries the browser's CSRF token (double submit:
        a page of this site put it in a hidden field; another site cannot read it)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = form.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise PageError(403, "this form has no valid CSRF token: reload the page and retry")

    def respond(self, request: Any, response: Any) -> Any:
        """``response`` with the CSRF cookie set if this request made a new token."""
        if getattr(request.state, "csrf_new", False):
            response.set_cookie(
                CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict", path="/"
            )
        return response

    async def repo(self, request: Any) -> tuple[Repo, Any]:
        """The page's repository and reader; 404 if absent or not readable by the reader."""
        owner, name = request.path_params["owner"], request.path_params["name"]
        missing = PageError(404, f"repository {owner}/{name} not found")
        try:
            repo = await self.service.repos.get(RepoName(owner, name))
        except (NotFoundError, AspenError):
            raise missing from None
        authority = self.authority(request)
        if not allowed(authority, "read", repo.full, private=repo.private):
            raise missing
        return repo, authority

    async def render(
        self, request: Any, template: str, repo: Repo | None, work: Callable[[Any], dict[str, Any]]
    ) -> Any:
        """Run ``work(store)`` in a worker thread (``store``: the repository's object store,
        or ``None`` without a repository) and render ``template`` with what it returns."""
        from starlette.responses import HTMLResponse

        context = self._base(request, repo)
        stores = self.service.stores

        def run() -> str:
            store = stores.open(repo.store) if repo is not None else None
            try:
                context.update(work(store))
            finally:
                if store is not None:
                    store.close()
            name = context.pop("template", template)  # a page may choose another
            return render.environment().get_template(name).render(context)

        body = await anyio.to_thread.run_sync(run, limiter=self.limiter)
        response = HTMLResponse(body, status_code=context.get("status", 200), headers=_HEADERS)
        return self.respond(request, response)

    def _base(self, request: Any, repo: Repo | None) -> dict[str, Any]:
        authority = self.authority(request)
        user = None
        if authority is not None:
            user = "root" if authority.unrestricted else f"token {authority.token_id}"
        host = request.headers.get("host", self.service.http_address)
        return {
            "user": user,
            "repo": repo,
            "here": request.url.path,
            "clone_url": f"http://{host}/{repo.full}.git" if repo else "",
            "csrf": self.csrf(request),
        }


def _html_error(request: Any, exc: PageError) -> Any:
    from starlette.responses import HTMLResponse

    web: Web = request.app.state.web
    body = (
        render.environment()
        .get_template("error.html")
        .render(
            {
                "user": None,
                "repo": None,
                "here": request.url.path,
                "status": exc.status,
                "message": exc.message,
                "clone_url": "",
                "csrf": web.csrf(request),
            }
        )
    )
    return web.respond(request, HTMLResponse(body, status_code=exc.status, headers=_HEADERS))


async def _page_error(request: Any, exc: Exception) -> Any:
    assert isinstance(exc, PageError)
    return _html_error(request, exc)


async def _http_error(request: Any, exc: Exception) -> Any:
    status = getattr(exc, "status_code", 500)
    return _html_error(request, PageError(status, "no such page" if status == 404 else str(exc)))


# --- pages -------------------------------------------------------------------------------


async def repo_list(request: Any) -> Any:
    """``/``: the repositories the reader may read."""
    web: Web = request.app.state.web
    repos, truncated = await web.service.repos.list()
    authority = web.authority(request)
    shown = [r for r in repos if allowed(authority, "read", r.full, private=r.private)]
    shown.sort(key=lambda r: r.full.lower())
    return await web.render(
        request, "repos.html", None, lambda _: {"repos": shown, "truncated": truncated}
    )


async def _refs(web: Web, repo: Repo) -> dict[bytes, bytes]:
    refs = await read_refs(web.service.node, repo.id)
    await web.service.sync_stores(repo)
    return refs


def _at(refs: dict[bytes, bytes], rest: str) -> tuple[str, str, list[str]]:
    """The ref, its target and the path a ``…/REF/PATH`` URL names (404 if no ref)."""
    parts = [p for p in rest.split("/") if p]
    found = gitread.resolve(refs, parts)
    if found is None:
        raise PageError(404, f"no branch, tag or commit {rest!r}")
    if any(p in (".", "..") for p in found[2]):
        raise PageError(404, f"no path {rest!r}")
    return found


def page_number(request: Any) -> int:
    """The ``?page=N`` of a paged list (0 by default; 400 if not a number)."""
    try:
        return max(0, int(request.query_params.get("page", "0")))
    except ValueError:
        raise PageError(400, "page must be a number") from None


def _commit(store: Any, sha: str) -> Any:
    commit = gitread.peel(store, sha)
    if commit is None:
        raise PageError(404, f"no commit {sha}")
    return commit


def _tree_context(
    store: Any, refs: dict[bytes, bytes], ref: str, sha: str, path: list[str]
) -> dict[str, Any]:
    commit = _commit(store, sha)
    found = gitread.lookup(store, commit, path)
    if found is None or gitread._kind(found[0]) != "tree":
        raise PageError(404, f"no directory {'/'.join(path)!r} at {ref}")
    entries, total = gitread.tree_entries(store, found[1], path)
    return {
        "ref": ref,
        "path": path,
        "entries": entries,
        "total": total,
        "last": gitread.commit_info(commit),
        "branches": sorted(r[11:].decode() for r in refs if r.startswith(b"refs/heads/")),
    }


async def repo_home(request: Any) -> Any:
    """``/OWNER/NAME``: the default branch's tree, its README and the clone URL."""
    from starlette.responses import RedirectResponse

    name = request.path_params["name"]
    if name.endswith(".git"):  # the clone URL, opened in a browser
        owner = request.path_params["owner"]
        return RedirectResponse(f"/{quote(owner)}/{quote(name[:-4])}", status_code=301)
    web: Web = request.app.state.web
    repo, _ = await web.repo(request)
    refs = await _refs(web, repo)
    head = choose_head(repo, refs)

    def work(store: Any) -> dict[str, Any]:
        if head is None:
            return {"empty": True, "tab": "code"}
        ref = head[len(b"refs/heads/") :].decode()
        context = _tree_context(store, refs, ref, refs[head].decode(), [])
        readme = gitread.readme(store, _commit(store, refs[head].decode()))
        context["readme"] = readme
        if readme is not None and readme.data is not None and not readme.binary:
            at = f"/{quote(repo.full)}/%s/{quote(ref)}/"
            context["readme_html"] = render.readme_html(
                readme.path, readme.data.decode("utf-8", "replace"), at % "blob", at % "raw"
            )
        return {"empty": False, "tab": "code", **context}

    return await web.render(request, "home.html", repo, work)


async def tree(request: Any) -> Any:
    """``/OWNER/NAME/tree/REF/PATH``: a directory."""
    web: Web = request.app.state.web
    repo, _ = await web.repo(request)
    refs = await _refs(web, repo)
    ref, sha, path = _at(refs, request.path_params["rest"])
    return await web.render(
        request,
        "tree.html",
        repo,
        lambda store: {"tab": "code", **_tree_context(store, refs, ref, sha, path)},
    )


async def blob(request: Any) -> Any:
    """``/OWNER/NAME/blob/REF/PATH``: a file, highlighted (binary and large files: a notice)."""
    web: Web = request.app.state.web
    repo, _ = await web.repo(request)
    refs = await _refs(web, repo)
    ref, sha, path = _at(refs, request.path_params["rest"])

    def work(store: Any) -> dict[str, Any]:
        commit = _commit(store, sha)
        found = gitread.lookup(store, commit, path)
        if found is not None and gitread._kind(found[0]) == "tree":  # a README's link
            return {"template": "tree.html", **_tree_context(store, refs, ref, sha, path)}
        if found is None or gitread._kind(found[0]) not in ("blob", "link"):
            raise PageError(404, f"no file {'/'.join(path)!r} at {ref}")
        data = gitread.read_blob(store, found[1], "/".join(path), limits.MAX_WEB_FILE_BYTES)
        code = None
        if data.data is not None and not data.binary:
            code = render.highlight_blob(path[-1], data.sha, data.data)
        return {
            "tab": "code",
            "ref": ref,
            "path": path,
            "file": data,
            "code": code,
            "max_bytes": limits.MAX_WEB_FILE_BYTES,
        }

    return await web.render(request, "blob.html", repo, work)


async def raw(request: Any) -> Any:
    """``/OWNER/NAME/raw/REF/PATH``: a file's bytes as ``text/plain`` or octet-stream
    (never rendered as HTML by the browser), up to MAX_WEB_RAW_BYTES."""
    from starlette.responses import Response

    web: Web = request.app.state.web
    repo, _ = await web.repo(request)
    refs = await _refs(web, repo)
    ref, sha, path = _at(refs, request.path_params["rest"])

    def read() -> gitread.Blob:
        store = web.service.stores.open(repo.store)
        try:
            found = gitread.lookup(store, _commit(store, sha), path)
            if found is None or gitread._kind(found[0]) != "blob":
                raise PageError(404, f"no file {'/'.join(path)!r} at {ref}")
            return gitread.read_blob(store, found[1], "/".join(path), limits.MAX_WEB_RAW_BYTES)
        finally:
            store.close()

    data = await anyio.to_thread.run_sync(read, limiter=web.limiter)
    if data.data is None:
        raise PageError(
            413,
            f"{data.path} is {data.size} bytes, over MAX_WEB_RAW_BYTES "
            f"({limits.MAX_WEB_RAW_BYTES}): clone the repository to read it",
        )
    kind = "application/octet-stream" if data.binary else "text/plain; charset=utf-8"
    image = _IMAGES.get(PurePosixPath(data.path).suffix.lower())
    if image is not None and data.binary:  # a README's picture (never SVG: it can script)
        kind = image
    headers = {**_HEADERS, "content-security-policy": "default-src 'none'; sandbox"}
    return Response(data.data, media_type=kind, headers=headers)


async def log(request: Any) -> Any:
    """``/OWNER/NAME/commits/REF?page=N``: the history, newest first, paged."""
    web: Web = request.app.state.web
    repo, _ = await web.repo(request)
    refs = await _refs(web, repo)
    rest = request.path_params.get("rest", "")
    if not rest:
        head = choose_head(repo, refs)
        if head is None:
            raise PageError(404, f"{repo.full} is empty: no commits yet")
        rest = head[len(b"refs/heads/") :].decode()
    ref, sha, _ = _at(refs, rest)
    page = page_number(request)
    if page * limits.WEB_LOG_PAGE_COMMITS > limits.MAX_WEB_LOG_DEPTH:
        raise PageError(
            400,
            f"pages deeper than MAX_WEB_LOG_DEPTH ({limits.MAX_WEB_LOG_DEPTH}) commits "
            "are not served: clone the repository",
        )

    def work(store: Any) -> dict[str, Any]:
        head = _commit(store, sha)
        commits, more = gitread.log_page(store, head.id.decode(), page)
        return {"tab": "commits", "ref": ref, "commits": commits, "page": page, "more": more}

    return await web.render(request, "log.html", repo, work)


async def commit(request: Any) -> Any:
    """``/OWNER/NAME/commit/SHA``: a commit and its diff against its first parent."""
    web: Web = request.app.state.web
    repo, _ = await web.repo(request)
    await _refs(web, repo)
    sha = request.path_params["sha"].lower()
    if not gitread._SHA.fullmatch(sha):
        raise PageError(404, f"no commit {sha!r} (give the full 40-hex id)")

    def work(store: Any) -> dict[str, Any]:
        found = _commit(store, sha)
        files, cut = gitread.commit_diff(store, found)
        return {
            "tab": "commits",
            "commit": gitread.commit_info(found),
            "files": files,
            "cut": cut,
            "max_bytes": limits.MAX_WEB_DIFF_BYTES,
            "max_files": limits.MAX_WEB_DIFF_FILES,
        }

    return await web.render(request, "commit.html", repo, work)


def _refs_page(kind: str) -> Callable[[Any], Any]:
    prefix = b"refs/heads/" if kind == "branches" else b"refs/tags/"

    async def page(request: Any) -> Any:
        web: Web = request.app.state.web
        repo, _ = await web.repo(request)
        refs = await _refs(web, repo)

        def work(store: Any) -> dict[str, Any]:
            listed, total = gitread.list_refs(store, refs, prefix)
            return {"tab": kind, "kind": kind, "refs": listed, "total": total}

        return await web.render(request, "refs.html", repo, work)

    page.__doc__ = f"``/OWNER/NAME/{kind}``: the {kind} with their latest commits."
    return page


# --- login -------------------------------------------------------------------------------


async def read_form(request: Any, most: int = limits.MAX_WEB_FORM_BYTES) -> dict[str, str]:
    """A POSTed ``application/x-www-form-urlencoded`` form (first value of each field),
    at most ``most`` bytes (413 naming the bound otherwise)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > most:
            raise PageError(413, f"form over MAX_WEB_FORM_BYTES ({most} bytes)")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _next(target: str | None) -> str:
    """A same-site path to go back to (anything else: ``/``)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


async def login(request: Any) -> Any:
    """``/-/login``: a form taking a token; a valid one is set as an HttpOnly cookie."""
    from starlette.responses import RedirectResponse

    web: Web = request.app.state.web
    target = _next(request.query_params.get("next"))
    error = ""
    if request.method == "POST":
        form = await read_form(request)
        web.check_csrf(request, form)
        token = form.get("token", "").strip()
        target = _next(form.get("next", target))
        if token and web.service.node.authenticate(token) is not None:
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return response
        error = "That token is not one of this cluster's."

    def work(_: Any) -> dict[str, Any]:
        return {"error": error, "next": target, "status": 401 if error else 200}

    return await web.render(request, "login.html", None, work)


async def logout(request: Any) -> Any:
    """``POST /-/logout``: forget the token cookie."""
    from starlette.responses import RedirectResponse

    web: Web = request.app.state.web
    web.check_csrf(request, await read_form(request))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def static(request: Any) -> Any:
    """``/-/static/forge.css`` and ``/-/static/pygments.css``."""
    from starlette.responses import Response

    name = request.path_params["file"]
    if name == "pygments.css":
        text = await anyio.to_thread.run_sync(render.pygments_css)
    elif name == "forge.css":
        text = await anyio.to_thread.run_sync((_STATIC / "forge.css").read_text)
    else:
        raise PageError(404, "no such file")
    headers = {**_HEADERS, "cache-control": "public, max-age=300"}
    return Response(text, media_type="text/css", headers=headers)


def web_app(service: Any) -> Any:
    """The Starlette app of the web UI for ``service`` (a node's :class:`ForgeService`)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    from aspen_forge.web.collab_pages import CollabPages

    web = Web(service)
    repo = "/{owner}/{name}"
    routes = [
        Route("/", repo_list),
        Route("/-/login", login, methods=["GET", "POST"]),
        Route("/-/logout", logout, methods=["POST"]),
        Route("/-/static/{file}", static),
        Route(repo, repo_home),
        Route(repo + "/tree/{rest:path}", tree),
        Route(repo + "/blob/{rest:path}", blob),
        Route(repo + "/raw/{rest:path}", raw),
        Route(repo + "/commits", log),
        Route(repo + "/commits/{rest:path}", log),
        Route(repo + "/commit/{sha}", commit),
        Route(repo + "/branches", _refs_page("branches")),
        Route(repo + "/tags", _refs_page("tags")),
        *CollabPages(web).routes(repo),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={PageError: _page_error, HTTPException: _http_error},
    )
    app.state.web = web
    return app
