"""The Raft driver: the node's one writer.

Everything that touches the ``RawNode`` runs in one driver cycle at a time, so nothing
races the Raft state, and the event loop never waits on an fsync:

1. on the event loop: step the peer messages, ticks, proposals and read requests queued
   since the last cycle (CPU only; LMDB is at most read);
2. when Raft has something to persist or apply (``has_durable_ready``), in the driver's
   own worker thread (``aspen.node.cycle_thread``), while Raft has work: take
   ``ready()``, install a received snapshot, persist hard state and entries, apply
   committed entries to the state machine, ``advance()``. The first ``Ready`` is taken
   on the event loop, so a leader's appends leave before the thread hop. What Raft needs
   durable (new entries, a new term or vote) is made so by the Raft-log WAL
   (``aspen.storage.wal``): the cycle queues it there as it persists, syncs the WAL ONCE,
   and right then hands the cycle's messages and results to the event loop
   (``_release``). New entries and hard state need no LMDB write at all: they go to the
   WAL and an in-memory tail (``LmdbRaftStorage.defer``), which the next LMDB commit
   writes in first. A cycle thus costs ONE fsync (the WAL's), whether it only persists
   or also applies (``_persist_cycle``).
   **The apply batch.** Applies go into ONE LMDB write transaction that stays open
   across cycles (in the worker thread, the only one that may use it) and is committed
   later (``_commit_batch``), as etcd commits its bbolt state every 100 ms: when it is
   ``--apply-batch-seconds`` (``APPLY_BATCH_SECONDS``) old, when it holds
   ``APPLY_BATCH_BYTES`` / ``APPLY_BATCH_ENTRIES`` of applied entries (its dirty pages
   stay within the disk ``Storage.reserve`` keeps allocated), at once when a read waits
   for visibility (``_commit_wanted``: a reader never sits out the timer), and before
   whatever needs LMDB whole or durable: a snapshot installed or a membership change
   (committed and flushed, with a WAL checkpoint, before anything of the cycle leaves),
   a WAL checkpoint (every ``WAL_CHECKPOINT_BYTES`` / ``WAL_CHECKPOINT_ENTRIES``: LMDB is
   flushed before older WAL segments go, so the WAL never drops what LMDB does not hold
   durably), a log compaction, a write that replaces entries LMDB holds (Raft reads LMDB
   outside the cycle too), a disk short of its reserve, and a stop. The commit skips the
   meta-page flush (see ``aspen.storage.env``): a power loss may undo it, and the
   restart then redoes the WAL into LMDB and re-applies from the log, as the applied
   index is written with the state machine. ``kill -9`` loses the open batch (and the
   tail) with the process, which the restart redoes the same way. Committing every cycle
   cost a second fsync per write on every node (``bench/wal_costs.py``); syncing the WAL
   beside the LMDB commit, and finishing the commit after handing Raft back, were both
   tried and measured slower on one disk (issue 10).
   **A single voter under load** commits the batch with every cycle that applied
   ``APPLY_BATCH_BUSY_COMMANDS`` commands or more. Its cycle waits on nothing but the
   WAL's fsync, so with the batch left open it ends as soon as its answers leave, and
   the next one starts with the few writes that arrived meanwhile: at 16 clients its
   cycles carried about 8 commands instead of 15 and twice as many cycles paid the
   per-cycle costs (thread hops, the loop's steps, a WAL fsync each), the clients split
   into groups that each waited out the other's cycle, and on a quiet machine the node
   ran 12-20% slower, with twice the p99, than committing every cycle
   (``--apply-batch-seconds 0``). The commit, after the answers left, keeps the thread
   busy while the answered clients send their next writes, so the next cycle gathers
   them all (about 13 commands per cycle at 16 clients again, as when every cycle
   commits). A lone client's cycle carries one command: it keeps the batch, and its one
   fsync per write; on a cluster the followers' round trip gathers the leader's writes,
   and the batch stays open.
   **Reads interleaved with writes** (a read right after a write, a consumer's fetch
   after its ack): once a read had to commit the batch, every write cycle commits as it
   ends for ``APPLY_BATCH_READ_WINDOW_SECONDS`` (``_reads_lately``), as with the batch
   off, rather than each read paying a commit cycle of its own after the write's.
   Otherwise (the light path: heartbeats, their answers, ReadIndex rounds) take the
   ``Ready`` — messages, read states, soft state only — right there on the event loop,
   with no thread hop and no write transaction;
3. back on the event loop, and only now that it is durable (the WAL synced): send the
   messages, wake the proposers whose entries applied, answer reads whose index is
   visible, publish the events of the entries applied (``on_applied``: watches, the
   journal's watchers, bus subscribers), without waiting for the batch's commit, so watch
   latency and hooks never wait for ``APPLY_BATCH_SECONDS``. They are events of
   committed entries, durable on a quorum: a crash cannot take them back, and the
   restart applies the same entries again to the same effect (``apply`` is a pure
   function of the log; journal positions are assigned in it). Whoever reads LMDB after
   an event waits in :meth:`settled` first (a watch or journal stream before each page:
   ``WatchHub.settled``), which commits the batch at once. Events of entries applied
   again after a crash are not handed to the bus a second time (its hooks run at most
   once per node: ``_replay_upto``), nor after a batch aborted for lack of space
   (``_published_index``).
   Proposers whose entries were durable before the cycle began (a leader's entries that
   a quorum acknowledged since) are woken earlier: as soon as their result is computed,
   inside the cycle, before its WAL sync (``_answer_early``).

What a write's answer guarantees: its entry is durable on a quorum (the leader's own
copy included) and committed, and its result is the one every replica computes, as
``apply`` is a pure function of the log. A crash (``kill -9`` or power loss) before the
apply's commit loses nothing: the applied index is stored with the state machine, so the
restart applies the entry again from the durable log, and the log is only ever trimmed
in the transaction that applies up to the trimmed index (LMDB restores whole commits, so
a state whose apply was undone still holds those entries). Nothing observes the gap
between the answer and the commit: ``visible_index`` is the applied index a new read
transaction sees (it moves at ``_deliver`` after a commit); a ReadIndex read waits until
it reaches the read index, which is at least every answered entry's; reads that need no
quorum (a single voter's, serializable ones, the lease service's, a lease read) wait in
``settled`` until every entry this node answered or applied is visible. Either wait
commits the open batch at once. The batch's commit keeps its data flush (LMDB's
integrity on a power loss needs data pages on disk before the meta page that points at
them); it is off the answer's path, and now shared by many writes.

A write on a cluster thus costs the leader two write cycles (persist and send; then, once
a quorum acknowledged, apply and answer) and each follower one: a follower learns that an
entry is committed with the leader's next APPEND (or a commit notice at most
``COMMIT_NOTICE_DELAY_SECONDS`` later, see ``aspen.raft.leader``), so it applies it in the
cycle that persists the next entries — after it synced the WAL and sent its
acknowledgement (``_ack_before_apply``), so that apply is off the leader's commit path.

A linearizable read on a leader costs no thread hop at all: its heartbeat round goes
out in the cycle that steps the request, and the cycle that steps a quorum of answers
releases it.

Step 2 advances Raft before the commit; that is safe because nothing it produced leaves
the process before the WAL holds it, and a crash loses the open batch together with
Raft's memory of it. A failure inside step 2 or a commit stops the node (fail-stop), it
never continues with Raft believing something LMDB does not hold — except running out of
space (disk or LMDB map full, see ``aspen.storage.space``): LMDB aborted the batch, so Raft
restarts from what LMDB holds (the WAL redone into it first when it held more), exactly
as after a crash (nothing of the failed cycle is sent: no vote, no acknowledgement of
entries that are not stored), the writes in flight fail with
``resource_exhausted``, and the driver retries after ``DISK_FULL_RETRY_SECONDS``. A
follower out of space thus never acknowledges, and catches up once space is freed; a
leader refuses new writes before they enter the log while the disk lacks room for them
(``SpaceGuard``), so it keeps leading and serving reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgpack

from aspen import limits
from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    NotLeaderError,
    ResourceExhaustedError,
    TimeoutError,
    UnavailableError,
)
from aspen.events import Event, SnapshotInstalled
from aspen.kv.state_machine import KVStateMachine
from aspen.node import timeline
from aspen.node.cycle_thread import CycleThread
from aspen.node.oneshot import OneShot
from aspen.node.raft_storage import LmdbRaftStorage
from aspen.raft import Config, ProposalDroppedError, RawNode
from aspen.raft import NotLeaderError as RaftNotLeader
from aspen.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Ready,
    Role,
    SoftState,
)
from aspen.storage import Storage
from aspen.storage.space import OutOfSpace, SpaceGuard, no_space_raised

__all__ = ["CycleOutput", "Replicator"]

log = logging.getLogger(__name__)

#: A write cycle running this long when a request times out is named as what held it up.
_BUSY_SECONDS = 1.0


class _Waiter:
    """One proposal or read waiting for the driver (a proposal until ``deadline``, on
    ``time.monotonic``'s clock: see ``Replicator._expire_proposals``)."""

    __slots__ = ("deadline", "done", "result")

    def __init__(self, deadline: float = 0.0) -> None:
        self.done = OneShot()  # not anyio.Event: one per request, ~4x cheaper
        self.result: Any = None
        self.deadline = deadline

    def resolve(self, result: Any) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()


@dataclass
class CycleOutput:
    """What one driver cycle hands back to the event loop."""

    messages: list[Message] = field(default_factory=list)
    results: list[tuple[int, Any]] = field(default_factory=list)  # (seq, result) of ours
    refused: list[tuple[int, AspenError]] = field(default_factory=list)
    read_states: list[tuple[int, bytes]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    soft_state: SoftState | None = None
    snapshots: list[tuple[_Waiter, int | AspenError]] = field(default_factory=list)
    refused_reads: list[tuple[_Waiter, AspenError]] = field(default_factory=list)
    answers: list[tuple[_Waiter, Any]] = field(default_factory=list)
    installed_snapshot: int = 0
    hard_state: tuple[int, str | None] | None = None
    #: The commit index Raft reported in this cycle, if it moved.
    commit: int | None = None
    leader_ready: bool = False
    #: Whether the cycle wrote something Raft needs durable before its messages leave.
    needs_sync: bool = False
    #: Our results whose entries were durable before the cycle began: answered as soon as
    #: they are computed, before the cycle's commit (``Replicator._answer_early``).
    early: list[tuple[int, Any]] = field(default_factory=list)
    #: Highest log index among ``early`` (0: none).
    early_index: int = 0
    #: Entries of this cycle up to this index were stored durable with entries <= it.
    durable_upto: int = 0
    #: Last index of the entries this cycle persisted (0: none).
    persisted_to: int = 0
    #: Highest log index among ``results`` (0: none).
    results_index: int = 0
    #: The cycle installed a snapshot or changed the membership: LMDB is flushed and the
    #: WAL checkpointed before anything of it leaves (no early release).
    checkpoint: bool = False
    #: Messages and results went out once the WAL was synced, before the LMDB commit.
    released: bool = False
    #: Whether they may (disk space for the commit is allocated: ``Storage.reserve``).
    release_early: bool = True
    #: Applied index and revision a new read transaction sees once the cycle's LMDB commit
    #: is done (None: the cycle wrote nothing, e.g. a light one).
    visible: int | None = None
    revision: int = 0
    #: Applied index and revision after the cycle (ahead of ``visible`` while the apply
    #: batch stays open: ``Replicator._commit_batch``); 0: not a write cycle.
    applied: int = 0
    applied_revision: int = 0
    #: Commit the apply batch at the end of the cycle: a read waits for visibility.
    commit_now: bool = False
    #: Commands this cycle applied (``Replicator._batch_due``'s load signal).
    commands: int = 0
    #: How many of ``events`` (the first ones) a process before a crash may have
    #: published already (``Replicator._replay_upto``).
    replayed: int = 0


@dataclass(frozen=True)
class _Taken:
    """A ``Ready`` taken from Raft, with the messages still to send after the commit."""

    ready: Ready
    messages: tuple[Message, ...]


class Replicator:
    """Drives a ``RawNode`` over LMDB; ``propose`` and ``read_barrier`` are its API."""

    def __init__(
        self,
        node_id: str,
        storage: Storage,
        state_machine: KVStateMachine,
        raft_storage: LmdbRaftStorage,
        *,
        send: Callable[[list[Message]], None],
        on_applied: Callable[[list[Event], int, int], None],
        on_soft_state: Callable[[SoftState], None],
        leader_hint: Callable[[str | None], dict[str, Any]],
        spool: Any,
        on_leader_ready: Callable[[], None] = lambda: None,
        lease_reads: bool = False,
        apply_batch_seconds: float = limits.APPLY_BATCH_SECONDS,
    ) -> None:
        self.id = node_id
        #: Tags our proposals and reads; new at every start, so entries proposed before a
        #: restart can never wake waiters of this run.
        self.origin = f"{node_id}:{secrets.token_hex(8)}"
        self._storage = storage
        self._sm = state_machine
        self._rs = raft_storage
        self._send = send
        self._on_applied = on_applied
        self._on_soft_state = on_soft_state
        self._leader_hint = leader_hint
        self.spool = spool
        self._on_leader_ready = on_leader_ready
        #: Leader leases answer reads without a heartbeat round (``aspen.raft.lease``).
        self._lease_reads = lease_reads
        #: Admits writes by free space; says whether the last write cycle lacked it.
        self.space = SpaceGuard(storage)
        self.leader: str | None = None
        #: (term, vote) known to be on disk; early APPEND sends need it unchanged.
        self._durable_vote: tuple[int, str | None] | None = None
        #: Last log index known durable (entries up to it survive a power loss).
        self._stable_index = 0
        #: The WAL holds acknowledged entries LMDB lost with a failed commit (``_redo_wal``).
        self._wal_ahead = False
        #: The open apply batch (cycle thread only): an LMDB write transaction holding
        #: applies of earlier cycles not committed yet (None: none open), when it opened,
        #: and the log entries (count, data bytes) applied into it (``_commit_batch``).
        self._batch: Any = None
        self._batch_opened = 0.0
        self._batch_entries = 0
        self._batch_bytes = 0
        #: Whether a batch may stay open across cycles: only in our own cycle thread (an
        #: LMDB write transaction belongs to the thread that began it), set by ``run``.
        self._batching = False
        #: Longest a batch stays open (``APPLY_BATCH_SECONDS`` unless the node says; 0:
        #: commit every cycle).
        self._batch_seconds = apply_batch_seconds
        #: Highest log index whose events were handed out (cycle thread): entries applied
        #: again after a batch was aborted (disk full) do not publish them twice.
        self._published_index = 0
        #: On the event loop: the applied index and revision the last write cycle reported
        #: (ahead of ``visible_index`` while a batch is open; :meth:`settled` waits for it).
        self._applied_seen = 0
        self._applied_revision = 0
        self._open_raft()
        #: The last log index when the node started: a crashed process may have published
        #: the events of entries up to it already (they went out before their apply
        #: committed), so they count as replayed (``on_applied``'s third argument).
        self._replay_upto = self._rs.last_index()
        #: The role and leader the node was last told of (``_soft_state_changed``).
        self._told_soft_state = SoftState(None, Role.FOLLOWER)
        self._seq = itertools.count(1)
        #: Tick intervals since ``_clock_start`` that cycles have taken (``_due_ticks``).
        self._clock_start = time.monotonic()
        self._ticks = 0
        self._inbox: deque[Message] = deque()
        self._proposals: deque[tuple[int, bytes | ConfChange]] = deque()
        self._reads: list[_Waiter] = []
        self._waiters: dict[int, _Waiter] = {}
        #: seq -> log index of our proposals in flight; the commit index of the last cycle
        #: committed to LMDB; when the write cycle running in the worker thread started
        #: (None: none running). They say what held up a write that timed out.
        self._proposed: dict[int, int] = {}
        self.commit_index = 0
        self._cycle_started: float | None = None
        #: While a leader's write cycle runs in the thread: its heartbeats, built before
        #: the cycle began, which the ticker sends every heartbeat interval until it ends
        #: (a long apply, e.g. a 100k-key delete, must not make followers campaign).
        self._bridge: list[Message] = []
        self._bridge_sent = 0.0
        #: How many times the ticker sent them (tests and benches read it).
        self.bridged_heartbeats = 0
        #: Flushes the leader's lazy commit notices when due (``_time_commit_notice``).
        self._notice_timer: asyncio.TimerHandle | None = None
        #: Lease reads: until when (``time.monotonic()``) a read on this leader is answered
        #: at once, without a driver cycle (see ``_lease_deadline``; 0: not now).
        self._lease_until = 0.0
        #: The highest log index whose result was handed out before its apply committed
        #: (``_answer_early``); reads wait until it is visible (``settled``).
        self._answered_index = 0
        #: context -> (when asked, waiters); unanswered ones are pruned (readers re-ask)
        self._read_batches: dict[bytes, tuple[float, list[_Waiter]]] = {}
        self._reads_to_apply: list[tuple[int, list[_Waiter]]] = []
        #: When a read last had to commit the apply batch (``_reads_lately``).
        self._read_commit_at = -math.inf
        self._local: deque[Callable[[RawNode], None]] = deque()
        self._snapshot_waiters: list[_Waiter] = []
        self._queries: deque[tuple[_Waiter, Callable[[RawNode], Any]]] = deque()
        self._wake = anyio.Event()
        self._leader_known = anyio.Event()
        #: The worker thread write cycles run in.
        self._thread = CycleThread(f"aspen-raft-{node_id[:8]}")
        #: Runs ``func(*args)`` on the event loop from the cycle's worker thread (``run``).
        self._to_loop: Callable[..., None] = anyio.from_thread.run_sync
        #: Driver cycles, and those of them that needed the worker thread and a write;
        #: LMDB commits of write cycles (each flushes LMDB's data pages, not its meta page).
        self.cycles = 0
        self.write_cycles = 0
        self.lmdb_commits = 0
        self.commands = 0
        #: Linearizable reads answered from the lease at once, without a driver cycle.
        self.lease_reads = 0

    # ------------------------------------------------------------------ API (event loop)
    @property
    def is_leader(self) -> bool:
        """Whether this node leads the cluster right now."""
        return self.role == Role.LEADER

    def _kick(self) -> None:
        self._wake.set()

    def deliver(self, msg: Message) -> None:
        """Queue a message from a peer for the next cycle (bounded; excess is dropped)."""
        if len(self._inbox) < limits.MAX_RAFT_MESSAGES_PER_CYCLE * 4:
            if timeline.ON:
                self._stamp_message("decoded", msg)
            self._inbox.append(msg)
            self._kick()

    def _stamp_message(self, stage: str, msg: Message) -> None:
        """Debug timeline (``aspen.node.timeline``): ``stage`` of an APPEND carrying entries
        or of an acknowledgement; the flag says whether a write cycle was running."""
        busy = int(self._cycle_started is not None)
        if msg.type == MessageType.APPEND and msg.entries:
            timeline.stamp(f"append_{stage}", msg.entries[-1].index, busy)
        elif msg.type == MessageType.APPEND_RESP and not msg.reject:
            timeline.stamp(f"ack_{stage}", msg.index, busy)

    def report(self, action: Callable[[RawNode], None]) -> None:
        """Run ``action(raw)`` in the next cycle (unreachable / snapshot reports)."""
        self._local.append(action)
        self._kick()

    async def propose(self, command: dict) -> Any:
        """Replicate ``command`` through the log, apply it, return its result."""
        packed = self._pack(command)
        if len(packed) > limits.MAX_ENTRY_BYTES:
            raise InvalidArgumentError(
                f"the request is {len(packed)} bytes once encoded, over MAX_ENTRY_BYTES "
                f"({limits.MAX_ENTRY_BYTES}); split it into smaller transactions"
            )
        return await self._submit(packed, len(packed))

    async def propose_conf_change(self, change: ConfChange) -> Any:
        """Replicate a membership change and return once it is applied."""
        return await self._submit(change)

    def _pack(self, command: dict) -> bytes:
        return msgpack.packb(command, use_bin_type=True)

    async def wait_for_leader(self, timeout: float = limits.PROPOSAL_TIMEOUT_SECONDS) -> bool:
        """Wait until some leader is known (an election may be under way); False on timeout."""
        if self.leader is not None:
            return True  # the common case: no cancel scope to set up
        with anyio.move_on_after(timeout):
            while self.leader is None:
                await self._leader_known.wait()
            return True
        return False

    async def _submit(self, payload: bytes | ConfChange, nbytes: int = 0) -> Any:
        await self.wait_for_leader()
        if not self.is_leader:
            raise NotLeaderError("this node is not the leader", **self._leader_hint(self.leader))
        if len(self._waiters) >= limits.MAX_PENDING_PROPOSALS:
            raise ResourceExhaustedError("too many writes waiting; retry later")
        with self.space.claim(nbytes):  # a full disk refuses the write here, before Raft
            return await self._await_result(payload)

    async def _await_result(self, payload: bytes | ConfChange) -> Any:
        seq = next(self._seq)
        deadline = time.monotonic() + limits.PROPOSAL_TIMEOUT_SECONDS
        waiter = self._waiters[seq] = _Waiter(deadline)
        if timeline.ON:
            timeline.stamp("propose_seq", seq, int(self._cycle_started is not None))
        self._proposals.append((seq, payload))
        self._kick()
        try:
            await waiter.done.wait()  # answered, refused, or timed out by the ticker
        finally:
            self._waiters.pop(seq, None)
            self._proposed.pop(seq, None)
        if isinstance(waiter.result, AspenError):
            raise waiter.result
        return waiter.result

    def _why_late(self, seq: int) -> tuple[str, str]:
        """Say what held up proposal ``seq`` past its deadline: (message, outcome).

        The node itself may be what is slow (one write cycle persisting and applying a
        long batch), or a quorum may not answer.
        """
        late = f"within PROPOSAL_TIMEOUT_SECONDS ({limits.PROPOSAL_TIMEOUT_SECONDS:g} s)"
        busy = self._busy_note()
        index = self._proposed.get(seq)
        if index is None:
            return f"the write was not proposed {late}{busy}; it may still be applied", "unknown"
        if index > self.commit_index:
            why = busy or (
                f": no quorum of voters acknowledged it (commit index {self.commit_index})"
            )
            message = f"the write (log index {index}) was not committed {late}{why}"
            return f"{message}; it may still be applied", "unknown"
        return (
            f"the write (log index {index}) was committed but not applied {late} (applied "
            f"index {self.applied_index}){busy}; it will be applied",
            "committed",
        )

    def _busy_note(self) -> str:
        """``": this node has been busy … for N s"`` while a long write cycle runs, else ``""``."""
        if self._cycle_started is None or time.monotonic() - self._cycle_started < _BUSY_SECONDS:
            return ""
        return (
            ": this node has been busy persisting and applying log entries for "
            f"{time.monotonic() - self._cycle_started:.1f} s"
        )

    async def read_barrier(self) -> None:
        """Return once this node may serve a linearizable read (ReadIndex)."""
        await self.wait_for_leader()
        if self.is_leader and self.conf.voters == (self.id,):
            # a single voter is the only possible leader: its applied state is current once
            # every write it answered is visible (a ReadIndex below waits for that anyway:
            # the read index is at least every answered entry's, see ``_deliver``)
            await self.settled()
            return
        if time.monotonic() < self._lease_until:
            self.lease_reads += 1
            await self.settled()  # our lease holds, every committed entry is applied:
            return  # once visible too, the read sees every write committed before it
        if len(self._reads) >= limits.MAX_PENDING_READS:
            raise ResourceExhaustedError("too many reads waiting; retry later")
        deadline = anyio.current_time() + limits.PROPOSAL_TIMEOUT_SECONDS
        while anyio.current_time() < deadline:
            waiter = _Waiter()  # a ReadIndex request can be lost with a message: ask again
            self._reads.append(waiter)
            self._kick()
            with anyio.move_on_after(
                min(limits.READ_INDEX_RETRY_SECONDS, deadline - anyio.current_time())
            ):
                await waiter.done.wait()
            if waiter.done.is_set():
                if isinstance(waiter.result, AspenError):
                    raise waiter.result
                return
        raise TimeoutError(
            f"no leader confirmed the read within PROPOSAL_TIMEOUT_SECONDS "
            f"({limits.PROPOSAL_TIMEOUT_SECONDS:g} s){self._busy_note() or ' (no quorum?)'}"
        )

    async def settled(self) -> None:
        """Return once every write this node has answered is visible to a new read
        transaction (writes are answered as soon as their result is computed, before the
        commit of their apply: ``_answer_early``). Reads that do not go through
        :meth:`read_barrier` (serializable reads, lease reads of the leader's state) wait
        here, so nothing reads a state older than an answer it may have seen. It returns
        after the ``_deliver`` that made them visible also handed their events to
        ``on_applied`` (the waiter wakes once that call is over).

        It also waits for everything this node applied (and published events of) into the
        open apply batch, and a waiter here makes the driver commit that batch at once
        (``_commit_wanted``): a read never sits out ``APPLY_BATCH_SECONDS``."""
        index = max(self._answered_index, self._applied_seen)
        if index <= self.visible_index:
            return  # the common case: nothing applied ahead of its commit
        waiter = _Waiter()
        self._reads_to_apply.append((index, [waiter]))
        self._kick()
        with anyio.move_on_after(limits.PROPOSAL_TIMEOUT_SECONDS):
            await waiter.done.wait()
        if not waiter.done.is_set():
            raise TimeoutError(
                f"log index {index} was answered but not visible within "
                f"PROPOSAL_TIMEOUT_SECONDS ({limits.PROPOSAL_TIMEOUT_SECONDS:g} s)"
                f"{self._busy_note()}"
            )

    async def snapshot(self) -> int:
        """Compact the log up to the applied index (the LMDB state is the snapshot); return
        that index once durable."""
        waiter = _Waiter()
        self._snapshot_waiters.append(waiter)
        self._kick()
        await waiter.done.wait()
        if isinstance(waiter.result, AspenError):
            raise waiter.result
        return waiter.result

    async def status(self) -> dict[str, Any]:
        """Raft's view (role, term, commit, applied, leader, progress of followers), taken
        inside the next driver cycle so it never races the Raft state, and how many times
        this node sent heartbeats while a write cycle ran (``bridged_heartbeats``)."""
        waiter = _Waiter()
        self._queries.append(
            (
                waiter,
                lambda raw: {
                    **raw.status().to_dict(),
                    "bridged_heartbeats": self.bridged_heartbeats,
                },
            )
        )
        self._kick()
        with anyio.fail_after(limits.PROPOSAL_TIMEOUT_SECONDS):
            await waiter.done.wait()
        return waiter.result

    def transfer_leader(self, to: str) -> None:
        """Ask Raft to hand leadership to ``to``."""
        self.report(lambda raw: raw.transfer_leader(to))

    # ------------------------------------------------------------------ the driver
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Tick and cycle until cancelled."""
        self._to_loop = _loop_caller()
        # only in our own thread (else every job may run in another one), and if asked
        self._batching = _on_asyncio() and self._batch_seconds > 0
        if self.conf.voters == (self.id,):
            self.report(lambda raw: raw.campaign())  # alone: no need to wait a timeout
        try:
            await self._cycle_forever(task_status)
        finally:
            if self._notice_timer is not None:
                self._notice_timer.cancel()
            if self._batch is not None:
                with anyio.CancelScope(shield=True):
                    await self._thread.run(self._close_batch)
            self._thread.close()
            self._flush_on_stop()

    def _close_batch(self) -> None:
        """In the worker thread, on a stop: commit the open apply batch (if that fails,
        the restart redoes the WAL and applies its entries again)."""
        try:
            self._commit_batch()
        except Exception as exc:
            log.warning("the open apply batch was not committed at stop: %s", exc)

    def _flush_on_stop(self) -> None:
        """On a stop, with no cycle running: write the tail into LMDB (durably), so a
        stopped node's LMDB holds its whole log, as it did before the tail (a restart
        would redo it from the WAL anyway). Not after a failed cycle (what it queued was
        never synced)."""
        if not self._rs.lmdb_lags_wal or self._rs.wal_pending():
            return
        try:
            with self._storage.begin(write=True) as txn:
                self._rs.flush_tail(txn)
            self._rs.lmdb_lags_wal = False
        except Exception as exc:  # the restart redoes the WAL instead
            log.warning("the Raft log tail was not written into LMDB at stop: %s", exc)

    async def _cycle_forever(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._ticker)
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                out = self._step_inputs()
                if self._raw.has_durable_ready() or self._snapshot_waiters:
                    first = (
                        self._take_ready(self._raw, out, self._send)
                        if self._raw.has_ready()
                        else None
                    )
                    out = await self._run_write_cycle(out, first)
                else:
                    if self._raw.has_ready():
                        self._handle_light_ready(self._raw, out)
                    if self._commit_wanted():
                        out = await self._run_write_cycle(out, None)  # commit only
                self.cycles += 1
                self._deliver(out)
                self._lease_until = self._lease_deadline()
                self._time_commit_notice()
                if self._commit_wanted():
                    self._kick()  # e.g. a read state this cycle delivered waits for it

    def _time_commit_notice(self) -> None:
        """After a cycle: flush the leader's commit notices once they were pending for
        ``COMMIT_NOTICE_DELAY_SECONDS`` (``aspen.raft.leader``), or forget the timer when
        an APPEND told the followers first (usually the next write's)."""
        pending = self._raw.commit_notice_pending()
        if pending and self._notice_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on asyncio: tell them at once
                self.report(RawNode.flush_commit_notices)
                return
            self._notice_timer = loop.call_later(
                limits.COMMIT_NOTICE_DELAY_SECONDS, self._commit_notice_due
            )
        elif not pending and self._notice_timer is not None:
            self._notice_timer.cancel()
            self._notice_timer = None

    def _commit_notice_due(self) -> None:
        self._notice_timer = None
        self.report(RawNode.flush_commit_notices)

    async def _run_write_cycle(self, out: CycleOutput, first: _Taken | None) -> CycleOutput:
        """Run ``_write_cycle(out, first)`` in the worker thread; return what to deliver."""
        self._cycle_started = self._bridge_sent = time.monotonic()
        self._lease_until = 0.0  # Raft's state changes in the thread: ask it
        self._bridge = self._raw.heartbeats()
        out.commit_now = bool(self._reads_to_apply)
        if out.commit_now:
            self._read_commit_at = time.monotonic()
        try:
            await self._thread.run(self._write_cycle, out, first)
        except OutOfSpace as exc:
            out = await self._recover_from_no_space(out, exc.reason)
        finally:
            self._cycle_started = None
            self._bridge = []
        if timeline.ON:
            timeline.stamp("cycle_end", out.persisted_to or self.applied_index)
        return out

    def _commit_wanted(self) -> bool:
        """On the event loop, between cycles: whether the open apply batch must be committed
        now: a read waits for visibility (:meth:`settled`, a read index), or the batch
        is ``APPLY_BATCH_SECONDS`` old (the ticker's wake-ups check it when idle)."""
        if self._batch is None:
            return False
        return bool(self._reads_to_apply) or (
            time.monotonic() - self._batch_opened >= self._batch_seconds
        )

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(limits.RAFT_TICK_SECONDS)
            self._expire_proposals()
            self._bridge_heartbeats()
            self._kick()

    def _bridge_heartbeats(self) -> None:
        """Send the leader's heartbeats every heartbeat interval while one write cycle runs
        in the thread (Raft's own come only between cycles). Built before the cycle, they
        hold its term (a term changes only when the loop steps a message, never inside a
        cycle) and commit indexes no follower may lack, so a follower steps them as if Raft
        had sent them; their answers wait in the inbox for the next cycle."""
        if not self._bridge:
            return
        now = time.monotonic()
        if now - self._bridge_sent >= limits.RAFT_HEARTBEAT_TICKS * limits.RAFT_TICK_SECONDS:
            self._bridge_sent = now
            self._send(self._bridge)
            self.bridged_heartbeats += 1

    def _expire_proposals(self) -> None:
        """Fail the proposals still waiting past their deadline with a ``timeout`` that
        says what held them up (one sweep per tick instead of a cancel scope per write).
        ``_waiters`` is in proposal order and every proposal gets the same time, so the
        sweep stops at the first one still in time."""
        now = time.monotonic()
        for seq, waiter in self._waiters.items():
            if waiter.deadline > now:
                break
            if not waiter.done.is_set():
                message, outcome = self._why_late(seq)
                waiter.resolve(TimeoutError(message, outcome=outcome))

    def _lease_deadline(self) -> float:
        """Until when a read may skip Raft: the moment ``_due_ticks`` would have delivered
        the ticks the lease has left, so a cycle run then would find it expired too (0
        without lease reads, a lease, or with committed entries still to apply)."""
        if not self._lease_reads:
            return 0.0
        left = self._raw.lease_ticks_left()
        if left <= 0:
            return 0.0
        return self._clock_start + (self._ticks + left) * limits.RAFT_TICK_SECONDS

    def _due_ticks(self) -> int:
        """Tick intervals passed since the last cycle took them, by the clock (not by the
        ticker's wake-ups: a busy event loop wakes late, and a lease must never run slow)."""
        due = int((time.monotonic() - self._clock_start) / limits.RAFT_TICK_SECONDS)
        ticks, self._ticks = due - self._ticks, due
        return ticks

    def _step_inputs(self) -> CycleOutput:
        """Step everything queued since the last cycle into Raft (no write, no fsync)."""
        raw, out = self._raw, CycleOutput()
        while self._local:
            action = self._local.popleft()
            try:
                action(raw)
            except Exception as exc:  # e.g. a transfer asked of a node that just lost the lead
                log.warning("raft request not carried out: %s", exc)
        while self._queries:
            waiter, query = self._queries.popleft()
            out.answers.append((waiter, query(raw)))
        for _ in range(min(len(self._inbox), limits.MAX_RAFT_MESSAGES_PER_CYCLE)):
            msg = self._inbox.popleft()
            try:
                raw.step(msg)
            except Exception as exc:  # remote input must never stop the driver
                log.warning("dropped raft message %s from %s: %s", msg.type, msg.frm, exc)
            if timeline.ON:
                self._stamp_message("stepped", msg)
        # after the peers' messages, and at most one tick however long the last cycle took:
        # a slow fsync must not make a leader miss its followers' answers and step down
        ticks = self._due_ticks()  # just before the reads: a lease is judged by the clock
        if ticks:
            raw.tick()
            raw.skip_ticks(ticks - 1)  # they still count against a leader's lease
        self._step_proposals(raw, out)
        if self._reads:
            reads, self._reads = self._reads, []
            context = self.origin.encode() + next(self._seq).to_bytes(8, "big")
            if raw.read_index(context):
                self._read_batches[context] = (time.monotonic(), reads)
            else:
                error = UnavailableError("no leader to confirm the read; retry")
                out.refused_reads.extend((w, error) for w in reads)
        return out

    def _write_cycle(self, out: CycleOutput, first: _Taken | None) -> None:
        """In the worker thread: persist/apply/advance every Ready (``first`` was already
        taken on the event loop) into the open apply batch, and commit the batch when it is
        due (``_batch_due``); with no ``first``, only commit the batch (``_commit_wanted``)
        and compact the log if asked."""
        raw = self._raw
        self.write_cycles += 1
        if timeline.ON and first is not None:
            self._stamp_cycle(first.ready)
        # Raft's promises are made durable by the WAL's one sync inside ``_persist_cycle``;
        # LMDB commits without its meta flush, except when the cycle installed a snapshot
        # or changed the membership (a checkpoint).
        out.durable_upto = self._stable_index if self.role == Role.LEADER else 0
        try:
            with no_space_raised(self._storage):
                committed = False
                if first is not None:
                    # the commit after an early release must not fail for disk space
                    out.release_early = self._storage.reserve()
                    committed = self._persist_cycle(raw, first, out)
                if first is None or self._snapshot_waiters:  # (compaction writes apart)
                    committed = self._commit_batch() or committed
        except OutOfSpace:
            self._abort_batch()
            self._rs.discard_wal_pending()
            # acknowledged from the WAL but not in LMDB: redo the WAL into LMDB before
            # Raft restarts from LMDB (``_recover_from_no_space``)
            self._wal_ahead = self._wal_ahead or out.released or self._rs.lmdb_lags_wal
            raise
        except BaseException:
            self._abort_batch()
            self._rs.discard_wal_pending()
            self._rs.drop_tail()  # it may hold what was never synced: the WAL redoes it
            raise
        if timeline.ON and committed:
            timeline.stamp("lmdb_committed", self.applied_index)
        if first is not None:
            if self.space.full is not None:
                log.info("writes succeed again (%s before)", self.space.full)
                self.space.full = None
            if out.checkpoint or (committed and self._rs.checkpoint_due(self.space)):
                self._checkpoint()  # LMDB flushed: it holds everything the WAL holds
            if out.persisted_to:
                self._stable_index = out.persisted_to
            # durable now (or nothing written needs to be): so are the term and vote
        if out.hard_state is not None:
            self._durable_vote = out.hard_state
        if self._snapshot_waiters:
            waiters, self._snapshot_waiters = self._snapshot_waiters, []
            result: int | AspenError = self.applied_index
            try:
                with no_space_raised(self._storage), self._storage.begin(write=True) as txn:
                    self._rs.compact(txn, self.applied_index)
            except OutOfSpace as exc:
                result = ResourceExhaustedError(f"{exc.reason}: the log was not compacted")
            out.snapshots.extend((w, result) for w in waiters)
        out.applied, out.applied_revision = self.applied_index, self.revision
        if self._batch is None:  # everything applied is committed
            out.visible, out.revision = self.applied_index, self.revision

    def _stamp_cycle(self, rd: Ready) -> None:
        """Debug timeline: a write cycle begins in the thread with ``rd``."""
        if rd.entries:
            timeline.stamp("persist_begin", rd.entries[-1].index)
        if rd.committed:
            timeline.stamp("apply_begin", rd.committed[-1].index)

    def _answer_early(self, out: CycleOutput) -> None:
        """In the worker thread, as soon as their results are computed and before the
        cycle's commit: wake the proposers of entries that were durable (on this leader,
        and committed: on a quorum) before the cycle began. Their result is a pure function
        of the log, which a crash cannot undo: a restart applies them again. Until the
        commit makes the apply visible, :meth:`settled` holds back the reads that could
        see the state without it. Entries this cycle stored wait for its flush."""
        if out.early:
            early, out.early = out.early, []
            self._to_loop(self._resolve_before_visible, out.early_index, early)

    def _resolve_before_visible(self, index: int, results: list[tuple[int, Any]]) -> None:
        """On the event loop: note that the results up to log index ``index`` are out before
        their apply is visible, then wake their proposers (see :meth:`settled`)."""
        self._answered_index = max(self._answered_index, index)
        self._resolve_results(results)
        if timeline.ON:
            timeline.stamp("answered", index, 1)

    def _resolve_results(self, results: list[tuple[int, Any]]) -> None:
        """Wake the proposers of ``results`` ((seq, result) pairs)."""
        for seq, result in results:
            waiter = self._waiters.get(seq)
            if waiter is not None:
                waiter.resolve(result)

    def _persist_cycle(self, raw: RawNode, first: _Taken, out: CycleOutput) -> bool:
        """Persist/apply/advance ``first`` and the Readies after it; return whether it
        committed the apply batch.

        New entries and hard state go to the WAL and the in-memory tail
        (``LmdbRaftStorage.defer``) whenever they may; the first Ready that applies or
        installs something opens the apply batch (ONE write transaction, unless an earlier
        cycle left it open), which every later Ready shares, and writes the tail of
        earlier cycles into it first (synced to the WAL already). The WAL is synced once,
        before any LMDB commit (``_sync_and_release``): LMDB never holds a Raft write the
        WAL has not synced. The batch is committed at the end when ``_batch_due`` says so,
        or when the cycle wrote into it what Raft reads back from LMDB (not deferred:
        ``serial``), as Raft reads LMDB outside the cycle too.

        When a follower's first Ready both stores and applies (its usual cycle: new entries
        plus the commit of earlier ones), it syncs the WAL and sends its acknowledgements
        before it applies (``_ack_before_apply``): the apply's CPU is then off the leader's
        commit path."""
        txn = self._batch
        with contextlib.ExitStack() as stack:
            self._rs.cycle_txn = txn  # Raft reads what the batch already holds
            stack.callback(setattr, self._rs, "cycle_txn", None)
            serial = False  # the transaction holds entries or hard state the WAL lacks
            taken: _Taken | None = first
            for _ in range(limits.MAX_READY_PER_CYCLE):
                if taken is None:
                    if not raw.has_ready():
                        break
                    taken = self._take_ready(raw, out, self._send_from_thread)
                rd = taken.ready
                defer = self._deferrable(rd, out)
                if txn is None and (rd.committed or not defer):
                    txn = self._open_batch()
                    serial = self._rs.wal_pending()  # this cycle's tail goes in: unsynced
                    self._rs.flush_tail(txn, keep=True)
                    self._rs.cycle_txn = txn  # Raft reads what this cycle already wrote
                serial = serial or not defer
                stored = (
                    taken is first
                    and defer
                    and not serial
                    and self._acks_early(rd, out)
                    and self.role != Role.LEADER
                )
                if stored:
                    self._ack_before_apply(taken, out)
                self._persist_ready(txn, raw, taken, out, defer=defer, stored=stored)
                taken = None
            if txn is not None:
                self._rs.cycle_txn = None
                self._rs.trim(txn, self.applied_index)
            if out.needs_sync:
                self._sync_and_release(out)  # the cycle's one fdatasync
        if txn is None or not (serial or self._batch_due(out)):
            return False
        return self._commit_batch()

    def _open_batch(self) -> Any:
        """In the worker thread: begin the apply batch's write transaction."""
        txn = self._storage.begin(write=True, durable=False)
        self._batch, self._batch_opened = txn, time.monotonic()
        self._batch_entries = self._batch_bytes = 0
        return txn

    def _batch_due(self, out: CycleOutput) -> bool:
        """In the worker thread, at the end of a cycle that wrote into the apply batch:
        whether to commit it now rather than leave it open for the next cycles."""
        return (
            not self._batching
            or out.commit_now  # a read waits for visibility
            or out.checkpoint  # a snapshot or membership change: flushed before it leaves
            or not out.release_early  # short of disk: commit while the space is there
            or self._batch_entries >= limits.APPLY_BATCH_ENTRIES
            or self._batch_bytes >= limits.APPLY_BATCH_BYTES
            or time.monotonic() - self._batch_opened >= self._batch_seconds
            or self._rs.checkpoint_due(self.space)  # never drop WAL data LMDB lacks
            or self._busy_single_voter(out)
            or self._reads_lately()
        )

    def _reads_lately(self) -> bool:
        """Whether a read had to commit the batch in the last
        ``APPLY_BATCH_READ_WINDOW_SECONDS``: reads and writes interleave, so each write
        cycle commits as it ends (as with the batch off) instead of each read paying a
        commit cycle of its own (a consumer's fetch after its ack, a read after a write)."""
        return time.monotonic() - self._read_commit_at < limits.APPLY_BATCH_READ_WINDOW_SECONDS

    def _busy_single_voter(self, out: CycleOutput) -> bool:
        """Whether a single voter's cycle applied enough commands
        (``APPLY_BATCH_BUSY_COMMANDS``) to commit its batch at once: see the module
        docstring, "a single voter under load"."""
        return out.commands >= limits.APPLY_BATCH_BUSY_COMMANDS and self.conf.voters == (self.id,)

    def _commit_batch(self) -> bool:
        """In the worker thread: write the tail into the open apply batch and commit it
        (without LMDB's meta flush; see ``aspen.storage.env``); False: none was open. A
        failed commit aborts it (the caller recovers as from a failed cycle)."""
        txn = self._batch
        if txn is None:
            return False
        try:
            if self._rs.wal_pending():  # LMDB never holds what the WAL has not synced
                self._rs.sync_wal()
            self._rs.flush_tail(txn, keep=True)
            self._rs.trim(txn, self.applied_index)  # the tail is in: keep LMDB's log bounded
            txn.commit()
        except BaseException:
            self._abort_batch()
            raise
        self._batch = None
        self._rs.commit_done()
        self._rs.lmdb_lags_wal = self._rs.has_tail()  # committed, older tail included
        self.lmdb_commits += 1
        return True

    def _abort_batch(self) -> None:
        """In the worker thread: abort the open apply batch (if any); what it held is in
        the WAL and the log, and Raft restarts from LMDB or the node stops."""
        txn, self._batch = self._batch, None
        if txn is not None:
            with contextlib.suppress(Exception):  # a failed commit already freed it
                txn.abort()
        self._rs.abort_flush()

    def _acks_early(self, rd: Ready, out: CycleOutput) -> bool:
        """Whether ``rd``'s messages may leave once the WAL holds its entries, before its
        committed entries are applied (``_ack_before_apply``): it has entries or a vote to
        sync and entries to apply, none of which changes the membership (that cycle
        checkpoints before anything of it leaves)."""
        return (
            out.needs_sync
            and out.release_early
            and bool(rd.committed)
            and all(e.type != EntryType.CONF_CHANGE for e in rd.committed)
        )

    def _ack_before_apply(self, taken: _Taken, out: CycleOutput) -> None:
        """On a follower, in the worker thread: store ``taken``'s entries and hard state,
        sync the WAL and send its messages (the acknowledgements) BEFORE applying its
        committed entries, so the apply's CPU is off the leader's commit path. The same
        flushes in the same order as otherwise (the WAL's, then LMDB's). Not on a leader:
        it answers the entries durable before the cycle right after applying them, which
        must not wait for this cycle's sync."""
        self._rs.defer(taken.ready.hard_state, taken.ready.entries)
        messages = [*out.messages, *taken.messages]
        out.messages = []
        self._rs.sync_wal()
        out.released = True
        if messages:
            self._to_loop(self._send, messages)
        if timeline.ON:
            if taken.ready.entries:
                timeline.stamp("wal_synced", taken.ready.entries[-1].index)
            for m in messages:
                self._stamp_message("sent", m)

    def _sync_and_release(self, out: CycleOutput) -> None:
        """Sync the WAL (the cycle's one fdatasync), then ``_release`` what waited on it."""
        self._rs.sync_wal()
        if out.release_early and not out.checkpoint:
            self._release(out)

    def _deferrable(self, rd: Ready, out: CycleOutput) -> bool:
        """Whether ``rd``'s entries and hard state may go to the WAL and the tail only (no
        snapshot, no truncation of entries LMDB holds), while the disk has room (short of
        it, every cycle commits LMDB as before, whose reserve fails before the WAL does)."""
        return out.release_early and rd.snapshot is None and self._rs.can_defer(rd.entries)

    def _release(self, out: CycleOutput) -> None:
        """In the worker thread, once the WAL holds the cycle's entries and hard state and
        before the LMDB commit: send the cycle's messages (acknowledgements, votes) and
        answer its results (see ``_resolve_before_visible``). A crash before the commit
        loses nothing of them: the restart redoes the WAL into LMDB and re-applies."""
        out.released = True
        if timeline.ON and out.persisted_to:
            timeline.stamp("wal_synced", out.persisted_to)
        if out.messages:
            messages, out.messages = out.messages, []
            self._to_loop(self._send, messages)
            if timeline.ON:
                for m in messages:
                    self._stamp_message("sent", m)
        if out.results:
            results, out.results = out.results, []
            self._to_loop(self._resolve_before_visible, out.results_index, results)

    async def _recover_from_no_space(self, failed: CycleOutput, reason: str) -> CycleOutput:
        """A write cycle failed for lack of space and LMDB aborted it: restart Raft from
        what LMDB holds (nothing of the cycle is sent or believed), fail the writes in
        flight, pause, and return what of ``failed`` may still be delivered."""
        if self.space.full is None:
            log.warning(
                "%s: writes fail until space is freed (retrying every %gs)",
                reason,
                limits.DISK_FULL_RETRY_SECONDS,
            )
        self.space.full = reason
        error = ResourceExhaustedError(
            f"{reason}: this node could not store the write; free disk space and writes "
            "resume by themselves (the write may still be applied if other members stored it)",
            outcome="unknown",
        )
        for waiter in self._waiters.values():
            waiter.resolve(error)
        self._proposals.clear()  # not in Raft yet: their proposers were just told
        if not self._wal_ahead:  # give the WAL's space back (LMDB holds all of it)
            with contextlib.suppress(OSError):
                await self._thread.run(self._checkpoint)
        while self._wal_ahead:  # as a restart would, before Raft reads LMDB again
            try:
                await self._thread.run(self._redo_wal)
            except OutOfSpace:
                for waiter in self._waiters.values():
                    waiter.resolve(error)  # writes fail at once while the redo waits
                self._proposals.clear()
                self._answer_queries_stalled()
                await anyio.sleep(limits.DISK_FULL_RETRY_SECONDS)
        self._open_raft()
        out = CycleOutput(
            refused=failed.refused, refused_reads=failed.refused_reads, answers=failed.answers
        )
        if self._told_soft_state.role != Role.FOLLOWER:
            out.soft_state = SoftState(None, Role.FOLLOWER)  # e.g. a leader's leases stop
        else:
            self.leader = self._told_soft_state.leader  # the best hint until Raft hears again
        if self.conf.voters == (self.id,):
            self.report(lambda raw: raw.campaign())  # alone: lead again once it can write
        await anyio.sleep(limits.DISK_FULL_RETRY_SECONDS)
        return out

    def _answer_queries_stalled(self) -> None:
        """While the redo waits for space no cycle runs: answer status queries from Raft's
        state as it stands (no cycle runs to change it), so ``cluster.status`` still says
        the disk is full instead of timing out. A follower's log tail is often in the WAL
        only when the disk fills (it applies an entry when the next APPEND or a commit
        notice tells it the commit, ``aspen.raft.leader``)."""
        while self._queries:
            waiter, query = self._queries.popleft()
            waiter.resolve(query(self._raw))

    def _checkpoint(self) -> None:
        """In the worker thread: write the tail into LMDB, flush LMDB, then start a new
        WAL segment."""
        self._commit_batch()
        if self._rs.lmdb_lags_wal:
            with self._storage.begin(write=True, durable=False) as txn:
                self._rs.flush_tail(txn)
            self._rs.lmdb_lags_wal = False
        self._storage.flush()
        self._rs.checkpoint_wal()

    def _redo_wal(self) -> None:
        """In the worker thread: redo the WAL into LMDB (it acknowledged entries whose LMDB
        commit then failed for lack of space)."""
        with no_space_raised(self._storage):
            self._rs.redo_wal()
        self._wal_ahead = False

    def _open_raft(self) -> None:
        """(Re)start Raft from what LMDB holds, as a restarted process would."""
        with self._storage.begin() as txn:
            self.applied_index = self._sm.applied_index(txn)
            self.revision = self._sm.current_revision(txn)
            self.conf = self._rs.conf_state(txn)
        #: The applied index a new read transaction sees (``applied_index`` runs ahead of
        #: it while a write cycle applies entries it has not committed yet).
        self.visible_index = self.applied_index
        self._visible_revision = self.revision
        self._sm.forget_cache()
        config = Config(
            id=self.id,
            election_tick=limits.RAFT_ELECTION_TICKS,
            heartbeat_tick=limits.RAFT_HEARTBEAT_TICKS,
            applied=self.applied_index,
            read_only="lease" if self._lease_reads else "safe",
        )
        self._raw = RawNode(config, self._rs, random.Random())
        self.role = Role.FOLLOWER
        self.leader = None
        hard_state, _ = self._rs.initial_state()
        self._stable_index = self._rs.last_index()
        self.term = hard_state.term
        self._durable_vote = (hard_state.term, hard_state.vote)

    def _step_proposals(self, raw: RawNode, out: CycleOutput) -> None:
        """Propose everything queued: runs of commands as one batch (one append message
        per follower for the whole run), membership changes one by one."""
        batch: list[tuple[int, bytes]] = []
        while self._proposals:
            seq, payload = self._proposals.popleft()
            if isinstance(payload, ConfChange):
                self._propose_commands(raw, batch, out)
                batch = []
                change = ConfChange(payload.type, payload.node_id, self._tag(seq, payload.context))
                try:
                    index = raw.propose_conf_change(change)
                except Exception as exc:
                    self._refuse(seq, exc, out)
                    continue
                if seq in self._waiters:
                    self._proposed[seq] = index
            else:
                batch.append((seq, payload))
        self._propose_commands(raw, batch, out)

    def _propose_commands(
        self, raw: RawNode, batch: list[tuple[int, bytes]], out: CycleOutput
    ) -> None:
        """Propose ``batch`` (seq, command) at once; refuse what Raft did not take."""
        if not batch:
            return
        datas = [msgpack.packb([self.origin, seq, p], use_bin_type=True) for seq, p in batch]
        try:
            taken = raw.propose_batch(datas)
        except Exception as exc:
            for seq, _ in batch:
                self._refuse(seq, exc, out)
            return
        first = raw.last_index() - taken + 1
        for k, (seq, _) in enumerate(batch):
            if k >= taken:
                self._refuse(
                    seq,
                    ProposalDroppedError("too many uncommitted bytes on the leader; retry shortly"),
                    out,
                )
            elif seq in self._waiters:
                self._proposed[seq] = first + k
                if timeline.ON:
                    timeline.stamp("proposal_stepped", first + k, seq)

    def _refuse(self, seq: int, exc: Exception, out: CycleOutput) -> None:
        """Answer proposal ``seq`` with the error Raft's refusal ``exc`` stands for."""
        if isinstance(exc, RaftNotLeader):
            error: AspenError = NotLeaderError(
                "this node is not the leader", **self._leader_hint(self.leader)
            )
        elif isinstance(exc, AspenError):
            error = exc
        else:
            error = UnavailableError(f"proposal refused: {exc}")
        out.refused.append((seq, error))

    def _tag(self, seq: int, context: bytes) -> bytes:
        """Wrap a conf change context with our (origin, seq) so its proposer is woken."""
        return msgpack.packb([self.origin, seq, context], use_bin_type=True)

    def _handle_light_ready(self, raw: RawNode, out: CycleOutput) -> None:
        """On the event loop: a Ready with nothing to persist or apply (see
        ``RawNode.has_durable_ready``) — only messages, read states and soft state."""
        rd = raw.ready()
        self._take_soft_state(rd, out)
        out.messages.extend(rd.messages)
        out.read_states.extend((r.index, r.context) for r in rd.read_states)
        raw.advance(rd)

    def _take_soft_state(self, rd: Ready, out: CycleOutput) -> None:
        """Note a role or leader change (the event loop hears of it in ``_deliver``)."""
        if rd.soft_state is not None:
            out.soft_state = rd.soft_state
            self.role, self.leader = rd.soft_state.role, rd.soft_state.leader

    def _send_from_thread(self, messages: list[Message]) -> None:
        self._to_loop(self._send, messages)

    def _take_ready(
        self, raw: RawNode, out: CycleOutput, send: Callable[[list[Message]], None]
    ) -> _Taken:
        """Take the next ``Ready`` and, on a leader, ``send`` its appends at once."""
        rd = raw.ready()
        messages = rd.messages
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
            out.commit = rd.hard_state.commit
            out.hard_state = (rd.hard_state.term, rd.hard_state.vote)
        in_force = out.hard_state if out.hard_state is not None else self._durable_vote
        if (
            rd.entries
            or rd.snapshot is not None
            or (rd.hard_state is not None and in_force != self._durable_vote)
        ):
            # Raft's promises (votes, acknowledged entries, an installed snapshot) must be
            # on disk before this cycle's messages leave. Committed entries need not be:
            # after a power loss undoes their apply, the restart re-applies them from the
            # durable log (applied index and state machine are written together).
            out.needs_sync = True
        if self.role == Role.LEADER and in_force == self._durable_vote:
            # A leader may replicate its new entries while it writes them itself (Raft
            # thesis 10.2.1): only its term and vote must already be durable, and they
            # are. Everything else waits for the commit.
            early = [m for m in messages if m.type == MessageType.APPEND]
            if early:
                messages = tuple(m for m in messages if m.type != MessageType.APPEND)
                send(early)
                if timeline.ON:
                    for m in early:
                        self._stamp_message("sent", m)
        self._take_soft_state(rd, out)
        return _Taken(rd, messages)

    def _persist_ready(
        self,
        txn: Any,
        raw: RawNode,
        taken: _Taken,
        out: CycleOutput,
        *,
        defer: bool,
        stored: bool = False,
    ) -> None:
        """In the cycle's transaction (if any): install, persist (``defer``: to the WAL and
        the tail only; ``stored``: ``_ack_before_apply`` did, and took the messages), apply,
        then ``advance``."""
        rd, messages = taken.ready, taken.messages
        if stored:
            messages = ()
        elif defer:
            self._rs.defer(rd.hard_state, rd.entries)
        else:
            if rd.snapshot is not None:
                self._install_snapshot(txn, rd.snapshot, out)
            self._rs.persist(txn, rd.hard_state, rd.entries)
        if rd.entries:
            out.persisted_to = rd.entries[-1].index
        if rd.committed:  # a new cycle for the state machine, even in an open batch: it
            self._sm.forget_cache()  # compacts one more slice per write cycle, as before
        for entry in rd.committed:
            self._apply(txn, raw, entry, out)
        self._answer_early(out)
        out.messages.extend(messages)
        out.read_states.extend((r.index, r.context) for r in rd.read_states)
        raw.advance(rd)

    def _apply(self, txn: Any, raw: RawNode, entry: Entry, out: CycleOutput) -> None:
        if entry.index <= self.applied_index:
            return
        if timeline.ON:
            timeline.stamp("apply", entry.index)
        if entry.type == EntryType.CONF_CHANGE:
            self._apply_conf_change(txn, raw, entry, out)
        elif entry.data:
            origin, seq, command_bytes = msgpack.unpackb(entry.data, raw=False)
            command = msgpack.unpackb(command_bytes, raw=False)
            ours = origin == self.origin  # only the proposer answers: only it builds reads
            result, events = self._sm.apply(txn, entry.index, entry.term, command, answer=ours)
            if entry.index > self._published_index:  # (not again after an aborted batch)
                out.events.extend(events)
                if entry.index <= self._replay_upto:
                    out.replayed += len(events)
            if ours:
                if entry.index <= out.durable_upto:
                    out.early.append((seq, result))
                    out.early_index = entry.index
                else:
                    out.results.append((seq, result))
                    out.results_index = entry.index
            self.commands += 1
            out.commands += 1
        else:  # the no-op a leader appends when elected
            self._sm.mark_applied(txn, entry.index, entry.term)
            if entry.term == self.term and self.role == Role.LEADER:
                out.leader_ready = True  # everything earlier leaders committed is applied
        self.applied_index = entry.index
        self._published_index = max(self._published_index, entry.index)
        self.revision = self._sm.current_revision(txn)
        self._batch_entries += 1
        self._batch_bytes += len(entry.data)

    def _apply_conf_change(self, txn: Any, raw: RawNode, entry: Entry, out: CycleOutput) -> None:
        from aspen.node.membership import apply_member_change, decode_tagged_conf_change

        change, origin, seq, context = decode_tagged_conf_change(entry.data)
        out.needs_sync = True  # membership changes are rare: keep them simple
        out.checkpoint = True
        conf: ConfState = raw.apply_conf_change(change)
        self._rs.set_conf_state(txn, conf)
        apply_member_change(self._rs, txn, change, context)
        self._sm.mark_applied(txn, entry.index, entry.term)
        self.conf = conf
        if origin == self.origin:
            out.results.append(
                (seq, {"voters": list(conf.voters), "learners": list(conf.learners)})
            )

    def _install_snapshot(self, txn: Any, meta: Any, out: CycleOutput) -> None:
        from aspen.node.snapshots import install_received_snapshot

        size = install_received_snapshot(self._storage, self._rs, txn, meta, self.spool)
        self._rs.bump_wal_generation(txn)  # the old log's WAL is never redone over it
        out.checkpoint = True
        out.events.append(
            SnapshotInstalled(
                index=meta.index, term=meta.term, source=self.leader or "", size_bytes=size
            )
        )
        self._sm.forget_cache()
        self.applied_index = self._published_index = meta.index
        self.revision = self._sm.current_revision(txn)
        self.conf = meta.conf
        out.installed_snapshot = meta.index

    # ------------------------------------------------------------------ after the commit
    def _deliver(self, out: CycleOutput) -> None:
        """On the event loop, after the cycle's commit: send, wake, answer, publish."""
        if out.commit is not None:
            self.commit_index = out.commit  # durable now
        if out.visible is not None:  # the cycle is over and committed every apply
            self.visible_index, self._visible_revision = out.visible, out.revision
        if out.applied:
            self._applied_seen = max(self._applied_seen, out.applied)
            self._applied_revision = max(self._applied_revision, out.applied_revision)
        if out.messages:
            self._send(out.messages)
            if timeline.ON:
                for m in out.messages:
                    self._stamp_message("sent", m)
        self._resolve_results(out.results)
        if timeline.ON and out.results:
            timeline.stamp("answered", out.results_index, 0)
        for seq, error in out.refused:
            waiter = self._waiters.get(seq)
            if waiter is not None:
                waiter.resolve(error)
        for index, context in out.read_states:
            asked = self._read_batches.pop(context, None)
            if asked:
                self._reads_to_apply.append((index, asked[1]))
        stale = time.monotonic() - 2 * limits.READ_INDEX_RETRY_SECONDS
        for context in [c for c, (when, _) in self._read_batches.items() if when < stale]:
            del self._read_batches[context]  # lost on the way; its readers asked again
        if self._reads_to_apply:
            still = []
            for index, batch in self._reads_to_apply:
                if index <= self.visible_index:
                    for waiter in batch:
                        waiter.resolve(None)
                else:
                    still.append((index, batch))
            self._reads_to_apply = still
        for waiter, snapshot_index in out.snapshots:
            waiter.resolve(snapshot_index)
        for waiter, error in out.refused_reads:
            waiter.resolve(error)
        for waiter, answer in out.answers:
            waiter.resolve(answer)
        if out.installed_snapshot:
            self.spool.cleanup(out.installed_snapshot)
        if out.soft_state is not None:
            self._soft_state_changed(out.soft_state)
        # applied and durable (the WAL synced), maybe not visible yet: whoever reads LMDB
        # after an event waits in ``settled`` (watch and journal streams too)
        revision = max(self._applied_revision, self._visible_revision)
        self._on_applied(out.events, revision, out.replayed)
        if out.leader_ready:
            self._on_leader_ready()

    def _soft_state_changed(self, soft: SoftState) -> None:
        self._told_soft_state = soft
        if soft.leader is not None:
            known, self._leader_known = self._leader_known, anyio.Event()
            known.set()
        if soft.role != Role.LEADER:
            hint = self._leader_hint(soft.leader)
            for seq, waiter in list(self._waiters.items()):
                waiter.resolve(
                    UnavailableError(
                        "leadership changed while this write was in flight; it may or may "
                        "not have been applied",
                        outcome="unknown",
                        **hint,
                    )
                )
                self._waiters.pop(seq, None)
            for _, batch in self._read_batches.values():
                for waiter in batch:
                    waiter.resolve(NotLeaderError("leadership changed; retry the read", **hint))
            self._read_batches.clear()
        self._on_soft_state(soft)


def _on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (``CycleThread`` runs every job in its
    one thread only there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _loop_caller() -> Callable[..., None]:
    """How the worker thread hands work to the running event loop: on asyncio, queue it
    without waiting (the thread goes on to its flush at once; callbacks run in the order
    queued, before the cycle's own completion); elsewhere, anyio's blocking hand-off.

    A plain callback runs outside any task, where anyio cannot tell which library runs the
    loop (sniffio looks for the current task), so anything it builds there (a peer link's
    ``CancelScope`` or ``Event``, a task spawned for a snapshot) would fail. The callbacks
    therefore run in a context that names asyncio, as sniffio lets an event loop do."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on asyncio (e.g. trio)
        return anyio.from_thread.run_sync
    context = contextvars.copy_context()
    with contextlib.suppress(ImportError):  # without sniffio, anyio asks the running loop
        import sniffio

        context.run(sniffio.current_async_library_cvar.set, "asyncio")

    def call_soon(func: Callable[..., object], *args: Any) -> None:
        loop.call_soon_threadsafe(func, *args, context=context)

    return call_soon
