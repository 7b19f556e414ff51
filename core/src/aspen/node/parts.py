"""What a running node is made of: :class:`NodeParts`, created in one piece when it opens.

:class:`~aspen.node.node.Node` is the plugin-facing object and exists before it runs; the
parts below exist only once its data directory is open, so the node builds all of them
together (``Node._open``) and holds them as one object: nothing is ever half-built.
"""

from __future__ import annotations

from dataclasses import dataclass

from aspen.auth.service import TokenService
from aspen.blobs.service import BlobService
from aspen.journal.hub import JournalHub
from aspen.kv.state_machine import KVStateMachine
from aspen.node.bus import EventBus
from aspen.node.cluster import ClusterRuntime
from aspen.node.kv_service import KVService
from aspen.node.leases import LeaseService
from aspen.node.watch import WatchHub
from aspen.rpc.registry import MethodRegistry
from aspen.rpc.server import RpcServer
from aspen.storage import Storage
from aspen.transport.identity import NodeIdentity
from aspen.transport.tls import NodeCredentials

__all__ = ["NodeParts"]


@dataclass(frozen=True, slots=True)
class NodeParts:
    """The open storage and every service built on it, for one run of a node."""

    #: This node's Ed25519 identity (its id derives from it).
    identity: NodeIdentity
    #: TLS credentials of this node in its cluster.
    credentials: NodeCredentials
    #: The root token clients present (``aspen1.…``).
    token: str
    #: Checks the root token and capability tokens; follows revocations as they apply.
    tokens: TokenService
    storage: Storage
    #: The blob store (content-addressed files under the data dir, metadata in KV).
    blobs: BlobService
    state_machine: KVStateMachine
    watch_hub: WatchHub
    #: Wakes ``events.watch`` streams as journal events are applied.
    journal_hub: JournalHub
    bus: EventBus
    cluster: ClusterRuntime
    leases: LeaseService
    kv: KVService
    #: Core and plugin RPC methods.
    registry: MethodRegistry
    #: The client RPC server (not yet serving until the node starts it).
    server: RpcServer
