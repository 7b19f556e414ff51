"""Git smart HTTP on every node: ``http://HOST:PORT/OWNER/NAME.git``.

Three routes, as ``git http-backend`` serves them: ``GET …/info/refs?service=…`` (the ref
advertisement), ``POST …/git-upload-pack`` (clone, fetch) and ``POST …/git-receive-pack``
(push). Each request is checked on the event loop (repository, token, refs and pack list
read from the cluster, missing packs fetched to the node's disk), then dulwich's
``UploadPackHandler`` / receive-pack handler runs in a worker thread
(``MAX_CONCURRENT_GIT_REQUESTS`` at once) with the request and response bodies streamed
through :mod:`bridge`. Errors are ``text/plain``, which git prints as ``remote: …``;
a request without a needed token gets 401 with ``WWW-Authenticate``, so git asks for one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.from_thread

from aspen.errors import AspenError, NotFoundError, UnauthorizedError
from aspen_forge import limits
from aspen_forge.access import allowed, capability, pusher_names, token_from_header
from aspen_forge.bridge import BodyReader, ClientGone, ResponseWriter
from aspen_forge.names import RepoName
from aspen_forge.protection import load_rules
from aspen_forge.push import PushSession, receive_pack_handler
from aspen_forge.refs import commit_updates, make_refs_container, read_refs
from aspen_forge.repos import Repo
from aspen_forge.upload import upload_pack_handler

__all__ = ["GitHttpApp", "choose_head", "is_git_path"]

log = logging.getLogger(__name__)

_ROUTE = re.compile(
    r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/"
    r"(?P<tail>info/refs|git-upload-pack|git-receive-pack)$"
)
UPLOAD, RECEIVE = "git-upload-pack", "git-receive-pack"
_STATUS = {
    "invalid_argument": 400,
    "unauthorized": 403,
    "not_found": 404,
    "compare_failed": 409,
    "resource_exhausted": 413,
    "unavailable": 503,
    "not_leader": 503,
    "timeout": 504,
}
_REALM = b'Basic realm="aspen-forge"'


class HttpError(Exception):
    """Answer ``status`` with ``message`` (text/plain, which git shows)."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def is_git_path(path: str) -> bool:
    """Whether ``path`` is one of git's smart-HTTP routes (the rest is the web UI's)."""
    return _ROUTE.match(path) is not None


def choose_head(repo: Repo, refs: dict[bytes, bytes]) -> bytes | None:
    """The branch ``HEAD`` names: the default branch if it exists, else ``main``,
    ``master`` or the first branch; ``None`` for an empty repository."""
    for branch in (repo.default_branch, "main", "master"):
        ref = b"refs/heads/" + branch.encode()
        if ref in refs:
            return ref
    return next((r for r in sorted(refs) if r.startswith(b"refs/heads/")), None)


async def _text(
    send: Callable[..., Any], status: int, message: str, headers: list[Any] | None = None
) -> None:
    body = (message.rstrip("\n") + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GitHttpApp:
    """The ASGI app a node serves git on (see the module docstring)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.limiter = anyio.CapacityLimiter(limits.MAX_CONCURRENT_GIT_REQUESTS)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            return
        try:
            await self._serve(scope, receive, send)
        except HttpError as exc:
            await _text(send, exc.status, exc.message, exc.headers)
        except UnauthorizedError as exc:
            await _text(send, 401, exc.message, [(b"www-authenticate", _REALM)])
        except AspenError as exc:
            await _text(send, _STATUS.get(exc.code, 500), exc.message)
        except ClientGone:
            return
        except Exception:
            log.exception("forge: %s %s failed", scope.get("method"), scope.get("path"))
            await _text(send, 500, "internal error")

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method, path = scope["method"], scope["path"]
        match = _ROUTE.match(path)
        if match is None:  # the web UI serves the other paths (aspen_forge.web.app)
            raise HttpError(404, f"not found: {path} (repositories are /OWNER/NAME.git)")
        tail = match["tail"]
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        if tail == "info/refs":
            if method not in ("GET", "HEAD"):
                raise HttpError(405, "info/refs takes GET")
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            service = (query.get("service") or [""])[0]
            if service not in (UPLOAD, RECEIVE):
                raise HttpError(403, "only smart HTTP is served: use git 1.6.6 or later")
        else:
            if method != "POST":
                raise HttpError(405, f"{tail} takes POST")
            service = tail
            if headers.get(b"content-type") != f"application/x-{service}-request".encode():
                raise HttpError(
                    415, f"{service} takes content-type application/x-{service}-request"
                )
        name = RepoName(match["owner"], match["name"])
        authority = self._authority(headers)
        repo = await self._repo(name, authority)
        operation = "push" if service == RECEIVE else "read"
        if not allowed(authority, operation, repo.full, private=repo.private):
            wanted = capability(operation, repo.full)
            if authority is None:
                raise HttpError(
                    401,
                    f"authentication required for {repo.full}: give a token holding {wanted} "
                    "(as the password, or http.extraHeader='Authorization: Bearer <token>')",
                    [(b"www-authenticate", _REALM)],
                )
            raise HttpError(403, f"this token does not hold {wanted}")
        await self._run(
            scope, receive, send, repo, service, tail == "info/refs", authority, headers
        )

    def _authority(self, headers: dict[bytes, bytes]) -> Any:
        token = token_from_header(headers.get(b"authorization"))
        if token is None:
            return None
        authority = self.service.node.authenticate(token)
        if authority is None:
            raise UnauthorizedError("this token is not one of this cluster's")
        return authority

    async def _repo(self, name: RepoName, authority: Any) -> Repo:
        try:
            return await self.service.repos.get(name)
        except NotFoundError:
            raise HttpError(404, f"repository {name.full} not found") from None

    async def _run(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        repo: Repo,
        service: str,
        advertise: bool,
        authority: Any,
        headers: dict[bytes, bytes],
    ) -> None:
        node = self.service.node
        refs = await read_refs(node, repo.id)
        stores = self.service.stores
        own = await self.service.sync_stores(repo)
        rules = await load_rules(node, repo.id) if service == RECEIVE and not advertise else []
        kind = "advertisement" if advertise else "result"
        run = anyio.from_thread.run
        out = ResponseWriter(send, run, f"application/x-{service}-{kind}".encode())
        push = service == RECEIVE
        body = BodyReader(
            receive,
            run,
            gzip=headers.get(b"content-encoding", b"").lower() in (b"gzip", b"x-gzip"),
            max_bytes=(self.service.max_push_bytes + limits.PUSH_BODY_SLACK_BYTES)
            if push
            else limits.MAX_UPLOAD_REQUEST_BYTES,
            bound_name="MAX_PUSH_BYTES" if push else "MAX_UPLOAD_REQUEST_BYTES",
        )
        session = PushSession(self.service, repo, rules, pusher_names(authority), run)

        def commit(updates: list[Any]) -> None:
            run(commit_updates, self.service.writer, repo.id, updates)

        def work() -> None:
            from dulwich.protocol import ReceivableProtocol

            store = stores.open(repo.store)
            try:
                container = make_refs_container(refs, choose_head(repo, refs), commit)
                backend = _Backend(_make_repo(store, container, repo))
                proto = ReceivableProtocol(body.recv, out.write)
                if push:
                    handler_cls = receive_pack_handler(session)
                else:
                    whole = (
                        None if repo.alternates else (lambda: stores.pack_paths(repo.store, own))
                    )
                    handler_cls = upload_pack_handler(whole)
                handler = handler_cls(
                    backend, ["/"], proto, stateless_rpc=True, advertise_refs=advertise
                )
                if advertise:
                    proto.write_pkt_line(b"# service=" + service.encode() + b"\n")
                    proto.write_pkt_line(None)
                handler.handle()
                out.finish()
            except BaseException:
                if not out.started:
                    raise
                log.exception("forge: %s of %s failed mid-response", service, repo.full)
                out.finish()
            finally:
                store.close()

        await anyio.to_thread.run_sync(work, limiter=self.limiter)


class _Backend:
    """A dulwich ``Backend`` with the one repository a request is for."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> Any:
        return self.repo


def _make_repo(store: Any, refs: Any, repo: Repo) -> Any:
    """A dulwich repository over ``store`` and ``refs`` (no files, no config, no hooks)."""
    from dulwich.config import ConfigFile
    from dulwich.repo import BaseRepo

    class ForgeRepo(BaseRepo):
        """What dulwich's server side needs of a repository."""

        def get_named_file(self, path: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            return None  # no 'shallow' file: the server side is never shallow

        def get_config(self) -> ConfigFile:
            return ConfigFile()

        def get_description(self) -> bytes:
            return repo.description.encode()

        def _determine_file_mode(self) -> bool:
            return True

    return ForgeRepo(store, refs)
