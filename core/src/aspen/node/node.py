"""The node: wires storage, the state machine, the Raft cluster runtime, leases, watches,
the RPC server and the plugins together, and is the API plugins get (``NodeAPI``).

What exists only while the node is open is one :class:`~aspen.node.parts.NodeParts`, built
in one piece by :meth:`Node._open`; each part gets its collaborators there, in its
constructor (the handlers get the services they use, not the node).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.abc import TaskGroup

import aspen
from aspen import limits
from aspen.api import NodeAPI
from aspen.auth.access import Authority
from aspen.auth.service import TokenService
from aspen.blobs.events import blob_events
from aspen.blobs.handlers import blob_handlers
from aspen.blobs.service import BlobService
from aspen.errors import UnavailableError
from aspen.events import Event
from aspen.journal.api import EventsAPI
from aspen.journal.handlers import events_handlers
from aspen.journal.hub import JournalHub
from aspen.kv.state_machine import KVStateMachine
from aspen.node.auth import load_or_create_root_token, revoked_ids, token_service
from aspen.node.bus import EventBus
from aspen.node.cluster import JOINED_MARKER, ClusterRuntime, obtain_credentials
from aspen.node.cluster_handlers import cluster_handlers
from aspen.node.config import NodeConfig, parse_hostport
from aspen.node.handlers import core_handlers
from aspen.node.kv_service import KVService
from aspen.node.leases import LeaseService
from aspen.node.parts import NodeParts
from aspen.node.token_handlers import token_handlers
from aspen.node.watch import WatchHub
from aspen.plugins.config import load_config_file, resolve_config
from aspen.plugins.manager import current_plugin
from aspen.rpc.context import RpcContext
from aspen.rpc.handler import RpcHandler, UnaryHandler
from aspen.rpc.registry import MethodRegistry
from aspen.rpc.server import RpcServer
from aspen.storage import Storage
from aspen.storage.private import tighten_tree
from aspen.transport.identity import NodeIdentity, load_or_create_identity
from aspen.transport.tls import server_context

if TYPE_CHECKING:
    from aspen.http import HttpLimits, HttpServer

__all__ = ["NOTIFICATION_HOOKS", "Node", "NodeAPI"]

log = logging.getLogger(__name__)

#: The bus hooks a node subscribes plugins to.
NOTIFICATION_HOOKS = (
    "aspen_on_kv_event",
    "aspen_on_raft_event",
    "aspen_on_cluster_event",
    "aspen_on_blob_event",
)
#: Name of the LMDB environment directory inside the data directory.
DB_DIR = "db"


class Node:
    """One Aspen node. Plugins receive it as ``node`` in hooks, typed :class:`NodeAPI`
    (the documented part); everything else here is the core's own."""

    def __init__(self, config: NodeConfig, pm: Any | None = None) -> None:
        """``pm`` is an :class:`aspen.plugins.manager.AspenPluginManager` (None = no plugins)."""
        self.config_ = config
        self.pm = pm
        self.data_dir = Path(config.data_dir)
        self.endpoint = ""
        self.id = ""
        self._parts: NodeParts | None = None
        self._tg: TaskGroup | None = None
        self._plugin_config: dict[str, dict[str, Any]] = {}
        self._stop: anyio.Event | None = None
        self._stopping = False
        self._cluster_id = ""
        self._plugin_state: dict[str, dict[str, Any]] = {}
        # cancel scopes of the running tasks each plugin spawned (cancelled if it fails)
        self._plugin_scopes: dict[str, set[anyio.CancelScope]] = {}

    @property
    def parts(self) -> NodeParts:
        """Storage and every service of the open node (the core's own; not for plugins)."""
        if self._parts is None:
            raise RuntimeError("the node is not open: run() it first")
        return self._parts

    # ------------------------------------------------------------------ the API for plugins
    @property
    def blobs(self) -> BlobService:
        """The node's blob store (:mod:`aspen.blobs`; plugins see its ``BlobsAPI``)."""
        return self.parts.blobs

    @property
    def events(self) -> EventsAPI:
        """The event journal: ``publish``, ``op`` (inside ``kv.txn``), ``read``, ``watch``."""
        return EventsAPI(self)

    @property
    def token(self) -> str:
        """The node's root token (``aspen1.…``), for clients a plugin opens to the cluster."""
        return self.parts.token

    def internal_token(self, capabilities: Sequence[str]) -> str:
        """A capability token granting only ``capabilities``, for a client the core opens
        to its own cluster (least privilege instead of the root token). It is signed with
        the cluster's signing key, so every member accepts it; it lives only in this
        process (never written to the token store: nothing to list or revoke, it ends with
        the process) and carries :data:`~aspen.limits.INTERNAL_TOKEN_RATE_PER_SECOND`."""
        from aspen.auth.capability import parse_capabilities
        from aspen.auth.tokens import TokenLimits

        rate = limits.INTERNAL_TOKEN_RATE_PER_SECOND
        grant = TokenLimits(rate=rate, burst=int(rate))
        signer = self.parts.tokens.signer
        return signer.issue(parse_capabilities(capabilities), limits=grant)[1]

    def config(self, plugin: str) -> dict[str, Any]:
        """The resolved configuration section of ``plugin`` (defaults applied)."""
        return dict(self._plugin_config.get(plugin, {}))

    async def propose(self, command: dict) -> Any:
        """Replicate one core command (see :mod:`aspen.kv.commands`), apply it, return its
        result. Raises ``not_leader`` (with the leader's endpoint) on a follower."""
        return await self.parts.cluster.propose(command)

    async def read_barrier(self) -> None:
        """Wait until a linearizable read may be served from this node's state (ReadIndex)."""
        await self.parts.cluster.read_barrier()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call any RPC method in-process, as the node itself (unary methods only)."""
        handler = self.parts.registry.get(method)
        if handler is None or handler.streaming:
            raise UnavailableError(f"no unary method {method!r} on this node")
        ctx = RpcContext(node=self, peer="local", identity="node", connection_id=0)
        return await cast(UnaryHandler, handler.func)(ctx, params or {})

    async def stream(
        self, method: str, params: dict[str, Any] | None = None
    ) -> AsyncGenerator[Any, None]:
        """Call a streaming RPC method in-process (``kv.watch``…) and yield its items.

        Stop iterating (or close the generator) to cancel the stream.
        """
        handler = self.parts.registry.get(method)
        if handler is None or not handler.streaming:
            raise UnavailableError(f"no streaming method {method!r} on this node")
        ctx = RpcContext(node=self, peer="local", identity="node", connection_id=0)
        items = cast("AsyncGenerator[Any, None]", handler.func(ctx, params or {}))
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()

    def authenticate(self, token: str) -> Authority | None:
        """What ``token`` allows on this cluster (``None``: not a token of it); raises a
        typed ``unauthorized`` error for a forged, expired or revoked capability token."""
        return self.parts.tokens.authenticate(token)

    async def create_token(
        self,
        authority: Authority,
        capabilities: list[str],
        *,
        ttl: float | None = None,
        name: str = "",
    ) -> dict[str, Any]:
        """Issue a capability token on behalf of ``authority`` (which must hold each of
        ``capabilities``); returns ``{id, token, expires}``."""
        from aspen.auth.capability import parse_capabilities
        from aspen.node.token_handlers import issue_token

        return await issue_token(
            self.parts.tokens,
            self.propose,
            authority,
            parse_capabilities(capabilities),
            ttl=ttl,
            name=name,
        )

    @property
    def is_leader(self) -> bool:
        """Whether this node is the Raft leader now (writes proposed here are local)."""
        return bool(self.parts.cluster.replicator.is_leader)

    @property
    def leader_id(self) -> str | None:
        """The node id of the leader this node knows of, or ``None`` during an election."""
        return self.parts.cluster.replicator.leader or None

    def plugin_state(self, plugin: str) -> dict[str, Any]:
        """A dict this node keeps for ``plugin``'s runtime objects (services, caches,
        connections): create them in ``aspen_startup``, find them from RPC handlers with
        ``ctx.node.plugin_state(name)``. It lives as long as the node object."""
        return self._plugin_state.setdefault(plugin, {})

    @property
    def cluster_id(self) -> str:
        """The id of the cluster this node belongs to (derived from the cluster CA key)."""
        return self._cluster_id

    def spawn(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str = ""
    ) -> None:
        """Run ``func(*args)`` in the background until the node stops (or, for a task a
        plugin started, until that plugin fails)."""
        if self._tg is None:
            raise RuntimeError("the node is not running")
        name = name or getattr(func, "__name__", "task")
        plugin = current_plugin.get()
        if plugin is None:
            self._tg.start_soon(func, *args, name=name)
        else:
            self._tg.start_soon(self._plugin_task, plugin, func, *args, name=name)

    async def _plugin_task(
        self, plugin: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        """Run one of ``plugin``'s tasks under a scope :meth:`_unload_plugin` cancels."""
        if self.pm is not None and plugin not in self.pm.loaded_names():
            return  # the plugin failed before its task started
        scopes = self._plugin_scopes.setdefault(plugin, set())
        with anyio.CancelScope() as scope:
            scopes.add(scope)
            try:
                await func(*args)
            finally:
                scopes.discard(scope)

    def _unload_plugin(self, plugin: str, error: str) -> None:
        """A plugin failed (see :meth:`AspenPluginManager.add_failure_listener`): its methods
        answer ``unavailable``, it gets no more events, the tasks it spawned are cancelled."""
        methods = self.parts.registry.unload(plugin, error)
        subscribers = self.parts.bus.unsubscribe(plugin)
        scopes = self._plugin_scopes.pop(plugin, set())
        for scope in scopes:
            scope.cancel()
        log.warning(
            "plugin %r unloaded: %d method(s) now unavailable, %d subscriber(s) and %d task(s) "
            "stopped",
            plugin,
            len(methods),
            subscribers,
            len(scopes),
        )

    def serve_http(
        self,
        app: Any,
        listen: str,
        *,
        name: str,
        error_body: Callable[[int, str], Any] | None = None,
        limits: HttpLimits | None = None,
    ) -> HttpServer:
        """Serve the ASGI ``app`` on ``listen`` (``host:port``, port 0 = free) through the
        core's hardened HTTP listener until the node stops or ``.stop()`` is called; returns
        the bound :class:`aspen.http.HttpServer` (``.address``). ``error_body(status,
        message)`` shapes the JSON errors the listener answers itself; ``limits`` is an
        :class:`aspen.http.HttpLimits`. Raises ``OSError`` if the address is taken."""
        from aspen.http import HttpServer, default_error_body

        server = HttpServer(
            app, listen, name=name, error_body=error_body or default_error_body, limits=limits
        )
        server.bind()
        self.spawn(server.serve, name=f"http-{name}")
        return server

    async def status(self) -> dict[str, Any]:
        """Identity, revisions, sizes, free disk space, Raft view, and event bus counters."""
        parts = self.parts
        with parts.storage.begin() as txn:
            revision = parts.state_machine.current_revision(txn)
            compacted = parts.state_machine.compact_revision(txn)
        replicator = parts.cluster.replicator
        return {
            "node_id": self.id,
            "endpoint": self.endpoint,
            "version": aspen.__version__,
            "revision": revision,
            "compact_revision": compacted,
            "applied_index": replicator.applied_index,
            "db_size": parts.storage.size_bytes(),
            "disk": replicator.space.report(),
            "leases": len(parts.leases),
            "watches": parts.watch_hub.active,
            "watch_reads_skipped": parts.watch_hub.skipped_reads,
            "events": {"watches": parts.journal_hub.active, "end": parts.journal_hub.end},
            "writes": {
                "cycles": replicator.cycles,
                "write_cycles": replicator.write_cycles,
                "commands": replicator.commands,
                "lmdb_commits": replicator.lmdb_commits,
                "lmdb_flushes": parts.storage.flushes,
                "wal": parts.cluster.wal.stats(),
            },
            "reads": {"lease": replicator.lease_reads},
            "cluster": await parts.cluster.status(),
            "rpc": parts.server.stats(),
            "peers": parts.cluster.transport.stats() if parts.cluster.transport else {},
            "bus": parts.bus.stats(),
            "plugins": [info.to_json() for info in self.pm.infos()] if self.pm else [],
        }

    # ------------------------------------------------------------------ life
    async def _open(self) -> NodeParts:
        """Open the data directory and build every part of the node (none runs yet):
        storage, state machine, watches, the bus, credentials (founding or joining a cluster
        on a fresh node), the cluster runtime, leases, the registry and the RPC server."""
        tighten_tree(self.data_dir)  # 0700/0600, also for a data dir made before that rule
        identity = load_or_create_identity(self.data_dir)
        self.id = identity.node_id
        storage = Storage(self.data_dir / DB_DIR, sync=self.config_.sync)
        try:
            return await self._build(identity, storage)
        except BaseException:
            storage.close()
            raise

    async def _build(self, identity: NodeIdentity, storage: Storage) -> NodeParts:
        state_machine = KVStateMachine(storage)
        with storage.begin() as txn:
            revision = state_machine.current_revision(txn)
        watch_hub = WatchHub(storage, state_machine, revision)
        journal_hub = JournalHub(storage, state_machine.journal)
        self._plugin_config = self._load_plugin_config()
        subscribers: dict[str, list[tuple[str, Callable[..., Any]]]] = {}
        if self.pm is not None:
            for hook in NOTIFICATION_HOOKS:
                subscribers[hook] = [(s.plugin, s.function) for s in self.pm.subscribers(hook)]
        bus = EventBus(subscribers, self)
        config = self.config_
        creds, granted = await obtain_credentials(
            self.data_dir,
            identity,
            config.join,
            config.listen,
            config.advertise_peer or config.peer_listen,
        )
        self._cluster_id = creds.cluster_id
        token = load_or_create_root_token(self.data_dir)
        tighten_tree(self.data_dir)  # the credentials just written, too
        tokens = token_service(creds, token, identity.node_id)
        tokens.load_revoked(revoked_ids(state_machine))
        #: The blob store (``node.blobs``, see :mod:`aspen.blobs`); it reaches the cluster
        #: runtime through ``self.parts`` once the node runs.
        blobs = BlobService(self)
        cluster = ClusterRuntime(
            identity,
            self.data_dir,
            storage,
            state_machine,
            bus=bus,
            watch_hub=watch_hub,
            root_token=token,
            granted_members=granted,
            spawn=self.spawn,
            stop=self.stop,
            lease_reads=config.lease_reads,
            apply_batch_seconds=config.apply_batch_seconds,
            on_applied=_applied_observer(tokens, state_machine, bus, journal_hub),
            blobs=blobs,
        )
        leases = LeaseService(
            storage,
            state_machine,
            propose=cluster.propose,
            require_leader=cluster.require_leader,
            settled=cluster.settled,
        )
        cluster.add_leadership_listener(leases)
        watch_hub.settled = journal_hub.settled = cluster.settled  # see ``WatchHub.settled``
        kv = KVService(
            storage,
            state_machine,
            anyio.CapacityLimiter(limits.MAX_READ_THREADS),  # reads served off the loop
            propose=cluster.propose,
            read_barrier=cluster.read_barrier,
            settled=cluster.settled,
        )
        plugin_infos = self.pm.infos if self.pm is not None else list
        core = (
            core_handlers(kv, leases, watch_hub, plugin_infos)
            + cluster_handlers(cluster)
            + token_handlers(tokens, cluster.propose_visible)
            + blob_handlers()
            + events_handlers(kv, journal_hub)
        )
        registry = self._build_registry(core)
        server = RpcServer(
            registry,
            node=self,
            authenticate=tokens.authenticate,
            node_id=self.id,
            features=("watch", "leases", "txn", "cluster", "blobs", "events"),
            ssl_context=server_context(creds),
        )
        return NodeParts(
            identity=identity,
            credentials=creds,
            token=token,
            tokens=tokens,
            storage=storage,
            blobs=blobs,
            state_machine=state_machine,
            watch_hub=watch_hub,
            journal_hub=journal_hub,
            bus=bus,
            cluster=cluster,
            leases=leases,
            kv=kv,
            registry=registry,
            server=server,
        )

    def _load_plugin_config(self) -> dict[str, dict[str, Any]]:
        if self.pm is None:
            return {}
        file_data = load_config_file(self.config_.config_file)
        return resolve_config(self.pm.config_sections(), file_data, os.environ)

    def _build_registry(self, core: list[RpcHandler]) -> MethodRegistry:
        """Core methods plus every loaded plugin's; a plugin with a refused handler is
        marked failed and none of its handlers are served."""

        def build() -> tuple[MethodRegistry, set[str]]:
            registry, refused = MethodRegistry(), set()
            for handler in core:
                registry.add(handler)
            for handler in self.pm.rpc_handlers() if self.pm is not None else ():
                try:
                    registry.add(handler)
                except Exception as exc:
                    self.pm.mark_failed(handler.plugin, f"handler {handler.name} refused: {exc}")  # type: ignore[union-attr]
                    refused.add(handler.plugin)
            return registry, refused

        registry, refused = build()
        return build()[0] if refused else registry

    async def _wait_for_leader_if_alone(self) -> None:
        """A one-voter cluster elects itself at once; wait for that so that the banner
        printed after start-up means "ready" (a bigger cluster serves as members come up)."""
        replicator = self.parts.cluster.replicator
        if replicator.conf.voters == (self.id,):
            await replicator.wait_for_leader()

    def stop(self) -> None:
        """Ask a running node to stop: plugins shut down while storage is still writable.

        Call it from the node's event loop (``portal.call(node.stop)`` from other threads).
        """
        self._stopping = True
        if self._stop is not None:
            self._stop.set()

    async def _shutdown_plugins(self) -> None:
        if self.pm is not None:
            await self.pm.run_lifecycle("aspen_shutdown", self)
        self.parts.bus.close()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Open storage and serve until :meth:`stop` (or cancellation), then shut plugins
        down (storage still writable) and close storage."""
        self._stop = anyio.Event()
        if self._stopping:
            self._stop.set()
        founding = self.config_.join is None and not (self.data_dir / JOINED_MARKER).exists()
        host, port = parse_hostport(self.config_.listen)
        parts = self._parts = await self._open()
        if self.pm is not None:
            self.pm.add_failure_listener(self._unload_plugin)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await parts.bus.run(tg)
                bound = await tg.start(parts.server.serve, host, port)
                self.endpoint = f"{host}:{bound}"
                await parts.cluster.start_transport(
                    tg,
                    parts.credentials,
                    self.config_.peer_listen,
                    advertise=self.config_.advertise_peer,
                )
                parts.cluster.open(self.endpoint, founding=founding)
                await tg.start(parts.cluster.replicator.run)
                tg.start_soon(parts.leases.run, name="leases")
                await self._wait_for_leader_if_alone()
                await tg.start(parts.blobs.run, name="blobs")
                if self.pm is not None:
                    await self.pm.run_lifecycle("aspen_startup", self)
                task_status.started(self.endpoint)
                try:
                    await self._stop.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._shutdown_plugins()
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            if self.pm is not None:
                self.pm.remove_failure_listener(self._unload_plugin)
            parts.cluster.wal.close()
            parts.storage.close()


def _applied_observer(
    tokens: TokenService, state_machine: KVStateMachine, bus: EventBus, journal_hub: JournalHub
) -> Callable[[list[Event]], None]:
    """What a commit's events tell the node beyond watches and the bus: ``tokens`` each
    revocation as it applies (the whole revoked set again after a snapshot was installed),
    the bus the ``blob.*`` events derived from the blob records' changes, and the journal's
    watchers that events were appended."""

    def follow(events: list[Event]) -> None:
        journal_hub.follow(events)
        if tokens.on_applied(events):
            tokens.load_revoked(revoked_ids(state_machine))
        bus.publish(blob_events(events))

    return follow


def _offers_the_node_api(node: Node) -> NodeAPI:
    """Never called: mypy checks here that :class:`Node` offers every :class:`NodeAPI` member."""
    return node
