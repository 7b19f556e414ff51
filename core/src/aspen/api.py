"""The typed surface a plugin may use: :class:`NodeAPI`.

Hooks receive it as ``node`` and RPC handlers as ``ctx.node``. It is a
:class:`typing.Protocol`: the running :class:`aspen.node.node.Node` satisfies it (mypy checks
that in ``node.py``), and so may a test double. Whatever a node has beyond these members is the
core's own and may change without notice. ``docs/plugins.md`` ("The node API") lists exactly
these members, and ``core/tests/test_docs.py`` keeps the two equal.

This module imports nothing from the node, so ``import aspen`` stays cheap, and it sits above
``aspen.node`` so that the RPC layer (``RpcContext.node``) can name it without importing the
node (the layers: ``core/tests/test_layering.py``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aspen.auth.access import Authority
    from aspen.blobs.api import BlobsAPI
    from aspen.http import HttpLimits, HttpServer
    from aspen.journal.api import EventsAPI

__all__ = ["NodeAPI"]


@runtime_checkable
class NodeAPI(Protocol):
    """The part of a node a plugin may use; everything else is private to the core."""

    # ------------------------------------------------------------------ who this node is
    @property
    def id(self) -> str:
        """This node's id (derived from its Ed25519 public key)."""
        ...

    @property
    def endpoint(self) -> str:
        """The ``host:port`` its clients connect to."""
        ...

    @property
    def token(self) -> str:
        """The node's root token (``aspen1.…``), for clients a plugin opens to the cluster."""
        ...

    @property
    def cluster_id(self) -> str:
        """The id of the cluster this node belongs to (derived from the cluster CA key)."""
        ...

    @property
    def data_dir(self) -> Path:
        """This node's data directory; a plugin keeps its files under ``data_dir / <name>``."""
        ...

    @property
    def blobs(self) -> BlobsAPI:
        """The blob store: ``put(stream) -> BlobRef``, ``open(hash)``, ``stat``, ``pin``,
        ``unpin`` (docs/blobs.md)."""
        ...

    @property
    def events(self) -> EventsAPI:
        """The event journal: ``publish(name, subject, payload)``, ``op(...)`` (a ``kv.txn``
        op publishing with a KV change), ``read``, ``watch`` (docs/events.md)."""
        ...

    # ------------------------------------------------------------------ where writes go
    @property
    def is_leader(self) -> bool:
        """Whether this node is the Raft leader now (writes proposed here are local)."""
        ...

    @property
    def leader_id(self) -> str | None:
        """The node id of the leader this node knows of, or ``None`` during an election."""
        ...

    # ------------------------------------------------------------------ calling the node
    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call any unary RPC method in-process, as the node itself.

        A write on a follower raises :class:`aspen.errors.NotLeaderError` (code ``not_leader``,
        with the leader's endpoint): see "Notification hooks run on every node" in
        ``docs/plugins.md``.
        """
        ...

    def stream(
        self, method: str, params: dict[str, Any] | None = None
    ) -> AsyncGenerator[Any, None]:
        """Call a streaming RPC method in-process (``kv.watch``…) and iterate its items.

        Stop iterating, or close the generator (``contextlib.aclosing``), to cancel it.
        """
        ...

    async def status(self) -> dict[str, Any]:
        """What ``aspen status`` shows for this node."""
        ...

    # ------------------------------------------------------------------ plugin runtime
    def spawn(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str = ""
    ) -> None:
        """Run ``await func(*args)`` in the background until the node stops."""
        ...

    def config(self, plugin: str) -> dict[str, Any]:
        """The resolved configuration section of ``plugin`` (defaults applied)."""
        ...

    def plugin_state(self, plugin: str) -> dict[str, Any]:
        """A dict this node keeps for ``plugin``'s runtime objects (services, caches):
        create them in ``aspen_startup``, find them from RPC handlers."""
        ...

    # ------------------------------------------------------------------ tokens
    def authenticate(self, token: str) -> Authority | None:
        """What ``token`` (root or capability token) allows, ``None`` if it is none of this
        cluster's; raises ``unauthorized`` for a forged, expired or revoked one."""
        ...

    async def create_token(
        self,
        authority: Authority,
        capabilities: list[str],
        *,
        ttl: float | None = None,
        name: str = "",
    ) -> dict[str, Any]:
        """Issue a capability token on behalf of ``authority`` (which must hold each
        capability); returns ``{id, token, expires}``."""
        ...

    # ------------------------------------------------------------------ serving HTTP
    def serve_http(
        self,
        app: Any,
        listen: str,
        *,
        name: str,
        error_body: Callable[[int, str], Any] | None = None,
        limits: HttpLimits | None = None,
    ) -> HttpServer:
        """Serve the ASGI ``app`` on ``listen`` (``host:port``) through the core's hardened
        HTTP listener (header/body/idle timeouts, a connection cap, JSON errors shaped by
        ``error_body``) until the node stops; returns the bound server (``.address``)."""
        ...
