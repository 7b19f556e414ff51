"""The forge's one HTTP app: git's smart-HTTP routes go to :class:`GitHttpApp`, every other
path to the web UI (a Starlette app).

Pages: ``/`` (repositories), ``/OWNER/NAME`` (home: tree and README), ``…/tree/REF/PATH``,
``…/blob/REF/PATH``, ``…/raw/REF/PATH``, ``…/commits/REF``, ``…/commit/SHA``,
``…/branches``, ``…/tags``; ``…/issues``, ``…/issues/new``, ``…/issues/N`` (POSTs to
``…/issues/N/comment|close|reopen``), ``…/patches``, ``…/patches/N``,
``…/patches/N/revisions/R`` (POSTs to
``…/patches/N/review|comment|merge|ready|draft|close|reopen``), in :mod:`.collab_pages`;
``/-/login`` and ``/-/logout`` (a token in an HttpOnly, SameSite=Strict cookie);
``/-/static/…``. Owner names cannot start with ``-``, so ``/-/`` never collides with a
repository.

Adding pages: a handler as in :mod:`.routes` (``web.repo(request)`` gives the
repository, 404 to a reader who may not read it; ``web.render(request, template, repo,
work)`` runs ``work(store)`` in a worker thread and renders; POSTed forms through
``read_form`` and ``web.check_csrf`` — every form has a hidden ``csrf`` field with
``{{ csrf }}`` — the SameSite=Strict cookies keeping other sites' posts out besides), its
``Route`` in ``routes.web_app`` and a tab in ``templates/base.html``'s nav.
"""

from __future__ import annotations

from typing import Any

from aspen_forge.git_http import GitHttpApp, is_git_path

__all__ = ["forge_http_app"]


def forge_http_app(service: Any) -> Any:
    """The ASGI app a node serves on its forge port (git and the web UI)."""
    from aspen_forge.web.routes import web_app

    git = GitHttpApp(service)
    web = web_app(service)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and is_git_path(scope.get("path", "")):
            await git(scope, receive, send)
        else:
            await web(scope, receive, send)

    return app
