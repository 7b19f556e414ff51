"""The node's cluster side: Raft driver, peer transport, membership, snapshots, leadership.

:class:`ClusterRuntime` owns the :class:`~aspen.node.replicator.Replicator` and the peer
transport, turns Raft's outgoing messages into frames (and snapshot streams), feeds
incoming frames back, tells its leadership listeners (the lease service) when this node
gains or loses the leadership, answers joins, wakes watchers and publishes applied ``kv.*``,
``raft.*`` and ``cluster.*`` events. It gets what it works with in its constructor (storage,
state machine, event bus, watch hub, root token, and the node's ``spawn`` and ``stop``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from aspen import limits
from aspen.errors import InvalidArgumentError, NotLeaderError, UnavailableError
from aspen.events import Event, LeaderChanged, MembershipChanged, SnapshotCreated
from aspen.kv.state_machine import KVStateMachine
from aspen.node.bus import EventBus
from aspen.node.config import parse_hostport
from aspen.node.membership import member_context
from aspen.node.raft_storage import LmdbRaftStorage
from aspen.node.raft_wire import message_from_wire, message_to_wire
from aspen.node.replicator import Replicator
from aspen.node.snapshots import SnapshotSpool, dump_with_meta, snapshot_header
from aspen.node.watch import WatchHub
from aspen.raft import bootstrap_state
from aspen.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Message,
    MessageType,
    Role,
    SoftState,
)
from aspen.storage import Storage
from aspen.storage.log import Log
from aspen.storage.wal import Wal
from aspen.transport.framing import FrameError
from aspen.transport.identity import NodeIdentity
from aspen.transport.join import JoinService, init_cluster, load_join_token, request_join
from aspen.transport.peer import PeerTransport
from aspen.transport.tls import ClusterCA, NodeCredentials, load_node_credentials

if TYPE_CHECKING:
    from aspen.blobs.service import BlobService

__all__ = [
    "JOINED_MARKER",
    "WAL_DIR",
    "ClusterRuntime",
    "LeadershipListener",
    "obtain_credentials",
]

#: File a node that joined an existing cluster keeps, so it never founds one of its own.
JOINED_MARKER = "cluster-joined"
#: Directory (in the data dir) of the Raft-log WAL (:mod:`aspen.storage.wal`).
WAL_DIR = "wal"

log = logging.getLogger(__name__)


async def obtain_credentials(
    data_dir: Path, identity: NodeIdentity, join: str | None, client: str, peer: str
) -> tuple[NodeCredentials, dict[str, dict[str, Any]]]:
    """This node's TLS credentials: found a new cluster (fresh node, no ``join``), join
    one (fresh node with ``join`` = ``TOKEN@member-peer-address``), or load its own. Also
    returns the members a join grant listed (``{id: {"peer", "client"}}``, empty unless the
    node joined just now): it trusts them until the leader's snapshot tells it the membership."""
    granted: dict[str, dict[str, Any]] = {}
    if not ClusterCA.exists(data_dir):
        if join is None:
            init_cluster(data_dir, [peer, client])
        else:
            token, sep, via = join.rpartition("@")
            if not sep or not token or not via:
                raise InvalidArgumentError("--join takes JOIN_TOKEN@HOST:PORT of a member")
            grant = await request_join(token, via, identity, {"peer": peer, "client": client})
            (data_dir / JOINED_MARKER).write_text(via + "\n")  # first: never found
            grant.save(data_dir)
            granted = {m["id"]: {"peer": m["peer"], "client": m["client"]} for m in grant.members}
    creds = load_node_credentials(data_dir, identity, [peer, client])
    if creds is None:
        raise InvalidArgumentError(f"{data_dir} holds no cluster credentials")
    return creds, granted


class LeadershipListener(Protocol):
    """Told when this node gains or loses the leadership (the lease service is one)."""

    def leadership_changed(self, leading: bool) -> None:
        """This node became leader (``leading``) or stopped leading."""

    def leader_ready(self) -> None:
        """This node's election no-op applied: what earlier leaders committed is visible."""


class ClusterRuntime:
    """Everything between a node's state machine and its peers."""

    def __init__(
        self,
        identity: NodeIdentity,
        data_dir: Path,
        storage: Storage,
        state_machine: KVStateMachine,
        *,
        bus: EventBus,
        watch_hub: WatchHub,
        root_token: str,
        granted_members: dict[str, dict[str, Any]],
        spawn: Callable[..., None],
        stop: Callable[[], None],
        lease_reads: bool = False,
        apply_batch_seconds: float = limits.APPLY_BATCH_SECONDS,
        on_applied: Callable[[list[Event]], None] | None = None,
        blobs: BlobService | None = None,
    ) -> None:
        """``granted_members`` are the members a join grant listed (see
        :func:`obtain_credentials`); ``spawn(func, *args, name=)`` runs a task until the node
        stops; ``stop()`` asks the node to stop (when it was removed from the cluster);
        ``lease_reads`` serves linearizable reads from a leader lease (``--lease-reads``);
        ``apply_batch_seconds`` bounds how long applies wait for their LMDB commit
        (``--apply-batch-seconds``, see :class:`Replicator`);
        ``on_applied(events)`` sees each commit's events once the bus has them;
        ``blobs`` serves members' blob fetches and streamed copies (:mod:`aspen.blobs`)."""
        self.identity = identity
        self.id = identity.node_id
        self.data_dir = data_dir
        self.storage = storage
        self.state_machine = state_machine
        self.bus = bus
        self.watch_hub = watch_hub
        self.root_token = root_token
        self._spawn = spawn
        self._stop = stop
        self._lease_reads = lease_reads
        self._apply_batch_seconds = apply_batch_seconds
        self._applied_observer = on_applied
        self._blobs = blobs
        self.peer_endpoint = ""
        self.raft_storage = LmdbRaftStorage(storage, Log(storage), state_machine)
        #: The Raft-log WAL, redone into LMDB now (a data dir without one simply starts it).
        self.wal = Wal(data_dir / WAL_DIR, sync=storage.syncs)
        self.raft_storage.attach_wal(self.wal)
        self.spool = SnapshotSpool(data_dir)
        self.transport: PeerTransport | None = None
        self._replicator: Replicator | None = None  # made by open()
        self._granted_members = granted_members
        self._leader: str | None = None
        self._leadership_listeners: list[LeadershipListener] = []

    @property
    def replicator(self) -> Replicator:
        """The Raft driver; it exists once :meth:`open` ran."""
        if self._replicator is None:
            raise RuntimeError("the cluster runtime is not open: open() it first")
        return self._replicator

    def add_leadership_listener(self, listener: LeadershipListener) -> None:
        """Tell ``listener`` from now on when this node gains or loses the leadership."""
        self._leadership_listeners.append(listener)

    # ------------------------------------------------------------------ start-up
    async def start_transport(
        self,
        tg: anyio.abc.TaskGroup,
        creds: NodeCredentials,
        listen: str,
        *,
        advertise: str | None = None,
    ) -> str:
        """Serve the peer port (Raft traffic, snapshots, joins); return the host:port other
        members dial (``advertise``, else the bound address)."""
        join_token = load_join_token(self.data_dir)
        self.transport = PeerTransport(
            creds,
            listen,
            is_member=self.is_member,
            on_message=self.on_peer_message,
            on_stream=self.on_peer_stream,
            on_fetch=self._blobs.serve_fetch if self._blobs is not None else None,
            on_join=JoinService(creds, join_token, self.root_token, self.admit)
            if join_token
            else None,
        )
        port = await tg.start(self.transport.serve)
        host, _ = parse_hostport(listen)
        self.peer_endpoint = advertise or f"{host}:{port}"
        return self.peer_endpoint

    def open(self, client_endpoint: str, *, founding: bool) -> None:
        """Found a one-node cluster when ``founding`` on a fresh store, then start Raft
        over the stored state and tell the transport where the members are."""
        if founding:
            self.bootstrap_if_new(client_endpoint)
        self._last_conf = self._conf()
        self._replicator = Replicator(
            self.id,
            self.storage,
            self.state_machine,
            self.raft_storage,
            send=self._send,
            on_applied=self._on_applied,
            on_soft_state=self._on_soft_state,
            leader_hint=self.leader_hint,
            spool=self.spool,
            on_leader_ready=self._on_leader_ready,
            lease_reads=self._lease_reads,
            apply_batch_seconds=self._apply_batch_seconds,
        )
        self._publish_addresses()

    def _publish_addresses(self) -> None:
        """Point the transport at every other member's peer address."""
        if self.transport is None:
            return
        members = {**self._granted_members, **self.members()}
        self.transport.update_addresses({i: m["peer"] for i, m in members.items() if i != self.id})

    # ------------------------------------------------------------------ membership
    def _conf(self) -> ConfState:
        with self.storage.begin() as txn:
            return self.raft_storage.conf_state(txn)

    def members(self) -> dict[str, dict[str, Any]]:
        """Every member's addresses by node id."""
        with self.storage.begin() as txn:
            return self.raft_storage.members(txn)

    def is_member(self, node_id: str) -> bool:
        """Whether ``node_id`` may talk Raft with us (a joining node also trusts the members
        its grant listed, until the leader's snapshot tells it the membership)."""
        return node_id in self.members() or node_id in self._granted_members

    async def admit(self, node_id: str, addresses: dict[str, str]) -> list[dict[str, Any]]:
        """A join request passed the secret check: add the node as a learner (through the
        leader) and return the members it should trust."""
        peer, client = addresses.get("peer"), addresses.get("client")
        if not peer or not client:
            raise InvalidArgumentError("a joining node must announce its peer and client address")
        with anyio.fail_after(limits.PROPOSAL_TIMEOUT_SECONDS):
            while node_id not in self.members():
                try:
                    await self._add_learner_via_leader(node_id, peer, client)
                except UnavailableError as exc:  # another change in flight (e.g. a
                    log.info("admitting %s: %s; retrying", node_id, exc)  # parallel join)
                    await anyio.sleep(limits.RAFT_TICK_SECONDS * limits.RAFT_HEARTBEAT_TICKS)
        return [{"id": i, **m} for i, m in self.members().items()]

    async def _add_learner_via_leader(self, node_id: str, peer: str, client: str) -> None:
        replicator = self.replicator
        await replicator.wait_for_leader()
        if replicator.is_leader:
            await self.add_learner(node_id, peer, client)
            return
        leader = self.leader_hint(replicator.leader).get("leader")
        if leader is None:
            raise NotLeaderError("no leader to admit the node; retry")
        import aspen

        async with aspen.aconnect(leader, token=self.root_token) as c:
            await c.call("cluster.add_learner", {"id": node_id, "peer": peer, "client": client})
        with anyio.fail_after(limits.PROPOSAL_TIMEOUT_SECONDS):
            while node_id not in self.members():  # wait until the change reached us too
                await anyio.sleep(limits.RAFT_TICK_SECONDS)

    def leader_hint(self, leader: str | None) -> dict[str, Any]:
        """Error details that point a client at the leader's client endpoint."""
        if leader is None:
            return {}
        member = self.members().get(leader, {})
        hint: dict[str, Any] = {"leader_id": leader}
        if member.get("client"):
            hint["leader"] = member["client"]
        return hint

    def bootstrap_if_new(self, client_endpoint: str) -> None:
        """A brand-new node that is not joining founds a one-voter cluster of itself."""
        with self.storage.begin(write=True) as txn:
            if self.raft_storage.conf_state(txn).voters or self.raft_storage.members(txn):
                return
            hard_state, meta = bootstrap_state([self.id])
            self.raft_storage.reset_log(txn, meta.index, meta.term)
            self.raft_storage.persist(txn, hard_state, ())
            self.raft_storage.set_conf_state(txn, meta.conf)
            self.raft_storage.set_members(
                txn, {self.id: {"peer": self.peer_endpoint, "client": client_endpoint}}
            )
            self.state_machine.mark_applied(txn, meta.index, meta.term)

    async def add_learner(self, node_id: str, peer: str, client: str) -> Any:
        """Propose adding ``node_id`` as a learner (leader only)."""
        change = ConfChange(ConfChangeType.ADD_LEARNER, node_id, member_context(peer, client))
        return await self.replicator.propose_conf_change(change)

    async def promote(self, node_id: str) -> Any:
        """Propose promoting a learner that has caught up to voter."""
        if node_id not in self._conf().learners:
            raise InvalidArgumentError(f"{node_id} is not a learner")
        self.require_leader()
        raft = await self.replicator.status()
        match = raft.get("progress", {}).get(node_id, {}).get("match", 0)
        if match + limits.PROMOTE_MAX_LAG_ENTRIES < raft.get("commit", 0):
            raise UnavailableError(
                f"learner {node_id} has not caught up yet (has {match} of {raft['commit']} "
                "committed entries); retry once it has",
                match=match,
                commit=raft["commit"],
            )
        return await self.replicator.propose_conf_change(
            ConfChange(ConfChangeType.PROMOTE, node_id)
        )

    async def remove(self, node_id: str) -> Any:
        """Propose removing a member."""
        return await self.replicator.propose_conf_change(ConfChange(ConfChangeType.REMOVE, node_id))

    async def snapshot(self) -> dict[str, Any]:
        """Compact the log to the applied index and publish ``raft.snapshot_created``."""
        index = await self.replicator.snapshot()
        size = self.storage.size_bytes()
        self.bus.publish([SnapshotCreated(index=index, term=self.replicator.term, size_bytes=size)])
        return {"index": index, "size_bytes": size}

    # ------------------------------------------------------------------ messages
    def _send(self, messages: list[Message]) -> None:
        if self.transport is None:
            return
        for msg in messages:
            if msg.type == MessageType.SNAPSHOT:
                self._spawn(self._send_snapshot, msg, name=f"snapshot->{msg.to}")
                continue
            try:
                if not self.transport.send(msg.to, None, message_to_wire(msg)):
                    self.replicator.report(lambda raw, to=msg.to: raw.report_unreachable(to))  # type: ignore[misc]
            except FrameError as exc:  # entries are bounded below the frame size; log a bug
                log.error("raft message to %s not sent: %s", msg.to, exc)

    async def _send_snapshot(self, msg: Message) -> None:
        """Stream a dump of our state to ``msg.to``; always report the outcome to Raft."""
        ok = False
        chunks = None
        try:
            meta, chunks = dump_with_meta(self.storage, self.raft_storage)

            async def stream() -> AsyncIterator[bytes]:
                while True:
                    chunk = await anyio.to_thread.run_sync(next, chunks, None)
                    if chunk is None:
                        return
                    yield chunk

            await self.transport.send_stream(  # type: ignore[union-attr]
                msg.to, None, snapshot_header(meta, self.id, msg.term), stream()
            )
            ok = True
            log.info("sent a snapshot at index %d to %s", meta.index, msg.to)
        except Exception as exc:
            log.warning("sending snapshot to %s failed: %s", msg.to, exc)
        finally:
            if chunks is not None:
                chunks.close()  # type: ignore[attr-defined]
            self.replicator.report(lambda raw: raw.report_snapshot(msg.to, ok))

    def on_peer_message(self, peer_id: str, frame: dict[str, Any]) -> None:
        """A frame from an authenticated peer: decode it and hand it to Raft."""
        try:
            msg = message_from_wire(frame)
            if self._replicator is None:
                return  # still starting: Raft retransmits
        except ValueError as exc:
            log.warning("dropped malformed raft message from %s: %s", peer_id, exc)
            return
        if msg.frm != peer_id or msg.to != self.id:
            log.warning("dropped raft message from %s claiming to be %s", peer_id, msg.frm)
            return
        self.replicator.deliver(msg)

    async def on_peer_stream(
        self, peer_id: str, header: dict[str, Any], chunks: AsyncIterator[bytes]
    ) -> Any:
        """A snapshot streamed by the leader: spool it, then step its SNAPSHOT message; or a
        member's streamed copy of a blob put (:mod:`aspen.blobs.tee`), or a member's blob
        instruction (:mod:`aspen.blobs.transfer`)."""
        if header.get("kind") == "blob" and self._blobs is not None:
            return await self._blobs.receive_copy(peer_id, header, chunks)
        if header.get("kind") == "blob-call" and self._blobs is not None:
            return await self._blobs.serve_call(peer_id, header, chunks)
        if header.get("kind") != "snapshot" or header.get("from") != peer_id:
            raise InvalidArgumentError("unexpected stream from peer")
        meta = await self.spool.receive(header, chunks)
        self.replicator.deliver(
            Message(
                type=MessageType.SNAPSHOT,
                frm=peer_id,
                to=self.id,
                term=int(header["term"]),
                snapshot=meta,
            )
        )

    # ------------------------------------------------------------------ events
    def _on_applied(self, events: list[Event], revision: int, replayed: int = 0) -> None:
        """After every apply (durable in the WAL, maybe not committed to LMDB yet): wake
        watchers, hand events to the bus (not the first ``replayed``: a process killed
        before their apply committed may have handed them out, and the bus calls a hook at
        most once per node), follow membership."""
        self.watch_hub.advance(revision, events)
        if events:
            self.bus.publish(events[replayed:] if replayed else events)
            if self._applied_observer is not None:
                self._applied_observer(events)
        conf = self.replicator.conf
        if conf != self._last_conf:
            before, self._last_conf = self._last_conf, conf
            self._publish_addresses()
            gone = set(before.voters + before.learners) - set(conf.voters + conf.learners)
            for node_id in gone:
                if node_id == self.id:
                    log.warning("this node was removed from the cluster; stopping")
                    self._stop()
                elif self.transport is not None:
                    self.transport.remove_peer(node_id)
            self.bus.publish(
                [
                    MembershipChanged(
                        index=self.replicator.applied_index,
                        term=0,
                        voters_before=before.voters,
                        learners_before=before.learners,
                        voters_after=conf.voters,
                        learners_after=conf.learners,
                    )
                ]
            )

    def _on_leader_ready(self) -> None:
        """Our election no-op applied: what earlier leaders committed (leases) is visible now."""
        for listener in self._leadership_listeners:
            listener.leader_ready()

    def _on_soft_state(self, soft: SoftState) -> None:
        previous, self._leader = self._leader, soft.leader
        for listener in self._leadership_listeners:
            listener.leadership_changed(soft.role == Role.LEADER)
        if soft.leader != previous:
            self.bus.publish(
                [
                    LeaderChanged(
                        index=self.replicator.applied_index,
                        term=self.replicator.term,
                        leader=soft.leader,
                        previous=previous,
                    )
                ]
            )

    async def propose(self, command: dict) -> Any:
        """Replicate one core command, apply it, return its result (``not_leader`` on a
        follower)."""
        return await self.replicator.propose(command)

    async def read_barrier(self) -> None:
        """Wait until a linearizable read may be served from this node's state (ReadIndex)."""
        await self.replicator.read_barrier()

    async def propose_visible(self, command: dict) -> Any:
        """:meth:`propose`, returning once the apply is also committed and its events went
        to the bus and ``on_applied`` (a write is answered before that: see
        ``Replicator.settled``) — for a caller whose effect lives there, such as a token
        revocation this node enforces from the moment it is acknowledged."""
        result = await self.replicator.propose(command)
        await self.replicator.settled()
        return result

    async def settled(self) -> None:
        """Wait until every write this node answered is visible to a new read transaction
        (what a serializable read needs to see its own writes; see ``Replicator.settled``)."""
        await self.replicator.settled()

    def require_leader(self) -> None:
        """Raise ``not_leader`` (with the leader's endpoint) unless this node leads."""
        if not self.replicator.is_leader:
            raise NotLeaderError(
                "this node is not the leader", **self.leader_hint(self.replicator.leader)
            )

    async def status(self) -> dict[str, Any]:
        """This node's Raft view plus membership and free disk space (``disk``)."""
        raft = await self.replicator.status()
        return {
            "id": self.id,
            "role": str(self.replicator.role),
            "leader": self.replicator.leader,
            "applied_index": self.replicator.applied_index,
            "members": self.members(),
            "conf": {
                "voters": list(self._last_conf.voters),
                "learners": list(self._last_conf.learners),
            },
            "raft": raft,
            "disk": self.replicator.space.report(),
        }
