"""``RawNode``: the driver's handle on one Raft node (etcd's RawNode, sans I/O).

The driver loop, in this order::

    raw.tick()                       # every tick interval
    raw.step(msg)                    # every message from a peer (garbage is dropped)
    raw.propose(data) ...            # local requests
    while raw.has_ready():
        rd = raw.ready()
        install rd.snapshot          # if any, before anything else
        persist rd.hard_state, rd.entries   # one durable write (entries replace a suffix)
        send rd.messages             # only after the write above is durable
        apply rd.committed           # call raw.apply_conf_change() for CONF_CHANGE entries
        serve rd.read_states         # once applied >= read_state.index
        raw.advance(rd)
    raw.flush_commit_notices()       # once commit_notice_pending() held a short delay

Invariants: at most one ``Ready`` is outstanding (``ready()`` again before ``advance()``
is a ``ValueError``; stepping, ticking and proposing in between is fine, their output goes
in the next ``Ready``). A ``Ready`` never hands out an entry twice, and every message in it
depends only on state that is in it or was in an earlier, advanced one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aspen.raft.config import Config
from aspen.raft.raft import Raft
from aspen.raft.status import ProgressStatus, Status
from aspen.raft.storage import RaftStorage
from aspen.raft.types import (
    ConfChange,
    ConfState,
    EntryType,
    Message,
    MessageType,
    Ready,
    Role,
)
from aspen.raft.validate import message_problem

if TYPE_CHECKING:
    import random  # only the type: Raft uses the Random instance it is given

__all__ = ["RawNode"]


class RawNode:
    """Step/tick/propose in, ``Ready`` out; see the module docstring for the loop."""

    def __init__(self, config: Config, storage: RaftStorage, rng: random.Random) -> None:
        self._raft = Raft(config, storage, rng)
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = self._raft.hard_state()
        self._outstanding: Ready | None = None
        #: Messages from peers dropped as malformed (see ``last_drop_reason``).
        self.dropped_messages = 0
        self.last_drop_reason: str | None = None

    # ------------------------------------------------------------------ input
    @property
    def id(self) -> str:
        """This node's id."""
        return self._raft.id

    @property
    def term(self) -> int:
        """The current term (cheap; ``status()`` has everything)."""
        return self._raft.term

    @property
    def role(self) -> Role:
        """The current role (cheap)."""
        return self._raft.soft_state().role

    @property
    def leader(self) -> str | None:
        """The leader this node knows of (cheap)."""
        return self._raft.lead

    def tick(self) -> None:
        """One unit of logical time: elections, heartbeats, check-quorum, transfer deadline."""
        self._raft.tick()

    def skip_ticks(self, ticks: int) -> None:
        """``ticks`` tick intervals passed that the driver did not deliver as ``tick()``
        (it was busy): they count against a leader's lease, nothing else."""
        if ticks > 0 and self._raft.role == Role.LEADER:
            self._raft.lease.elapse(ticks)

    def lease_ticks_left(self) -> int:
        """Ticks for which this leader may answer a read from its local state at once,
        with no ReadIndex request (lease reads): 0 unless it leads with a lease, its
        commit index is of its term and every committed entry is applied."""
        r = self._raft
        if r.role != Role.LEADER or r.log.applied < r.log.committed:
            return 0
        if not r.committed_in_term():
            return 0
        return r.lease.ticks_left()

    def step(self, msg: Message) -> None:
        """Handle a message from a peer; malformed ones are counted and dropped."""
        problem = message_problem(msg, self._raft.id)
        if problem is not None:
            self.dropped_messages += 1
            self.last_drop_reason = problem
            return
        self._raft.step(msg)

    def campaign(self) -> None:
        """Start an election now (pre-vote first if enabled); no-op for non-voters."""
        self._raft.hup(transfer=False)

    def propose(self, data: bytes) -> int:
        """Propose a command; returns the index it will have if it commits."""
        if not isinstance(data, bytes):
            raise ValueError("proposal data must be bytes")
        return self._raft.propose(EntryType.NORMAL, data)

    def propose_batch(self, datas: list[bytes]) -> int:
        """Propose several commands at once (one append message per follower, not one
        per command); returns how many were accepted: a prefix of ``datas``, the rest
        refused by the uncommitted-bytes bound. The accepted ones end at ``last_index``."""
        if not all(isinstance(d, bytes) for d in datas):
            raise ValueError("proposal data must be bytes")
        return self._raft.propose_batch(EntryType.NORMAL, datas)

    def last_index(self) -> int:
        """Index of the last entry of the log (stable or not)."""
        return self._raft.log.last_index()

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose a membership change; raises ``ConfChangeRefusedError`` when unsafe now."""
        return self._raft.propose_conf_change(change)

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Put an applied CONF_CHANGE entry in force; returns the new configuration."""
        return self._raft.apply_conf_change(change)

    def read_index(self, context: bytes) -> bool:
        """Request a linearizable read point tagged ``context`` (unique per request).

        The answer arrives as a ``ReadState`` in a later ``Ready``. Returns False (and
        drops the request) when no leader is known; requests can also be lost with
        messages or leader changes, so the driver retries after a timeout.
        """
        if not isinstance(context, bytes) or not context:
            raise ValueError("a read context must be non-empty bytes")
        return self._raft.read_index(context)

    def transfer_leader(self, to: str) -> None:
        """Hand leadership to voter ``to`` (leader only); aborted after an election timeout."""
        self._raft.transfer_leader(to)

    def commit_notice_pending(self) -> bool:
        """Whether this leader's commit advanced and a member was not told yet: the driver
        calls :meth:`flush_commit_notices` if it still is after
        ``aspen.limits.COMMIT_NOTICE_DELAY_SECONDS`` (the next write's APPEND usually tells
        them first; the next heartbeat would anyway). Followers thus apply an entry later
        than with an immediate notice: see :mod:`aspen.raft.leader` for by how much."""
        return self._raft.commit_notice_pending()

    def flush_commit_notices(self) -> None:
        """Send the pending commit notices now (empty APPENDs where nothing else is due)."""
        self._raft.flush_commit_notices()

    def report_unreachable(self, node: str) -> None:
        """Tell the leader a message to ``node`` could not be sent."""
        self._raft.report_unreachable(node)

    def report_snapshot(self, node: str, ok: bool) -> None:
        """Tell the leader how sending a snapshot to ``node`` went; replication resumes."""
        self._raft.report_snapshot(node, ok=ok)

    # ------------------------------------------------------------------ output
    def has_ready(self) -> bool:
        """Whether ``ready()`` has something (False while a Ready is outstanding)."""
        if self._outstanding is not None:
            return False
        r = self._raft
        return bool(
            r.msgs or r.read_states or r.soft_state() != self._prev_soft or self.has_durable_ready()
        )

    def has_durable_ready(self) -> bool:
        """Whether the next ``Ready`` has anything to persist or apply: entries, a hard
        state change, a snapshot or committed entries (False while one is outstanding).

        A ``Ready`` without them holds only messages, read states and a soft state: its
        messages depend only on what earlier Readies carried, so once those are durable
        the driver may send them and ``advance`` without a write of its own.
        """
        if self._outstanding is not None:
            return False
        r = self._raft
        unstable = r.log.unstable
        return bool(
            unstable.next_entries()
            or unstable.next_snapshot() is not None
            or r.log.has_next_committed()
            or r.hard_state() != self._prev_hard
        )

    def ready(self) -> Ready:
        """Everything the driver must do now, in order; pass it to ``advance`` when done."""
        if self._outstanding is not None:
            raise ValueError("advance() the previous Ready before asking for another")
        r = self._raft
        log = r.log
        soft, hard = r.soft_state(), r.hard_state()
        snapshot = log.unstable.next_snapshot()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=tuple(log.unstable.next_entries()),
            snapshot=snapshot,
            committed=tuple(log.next_committed()),
            messages=coalesce_acks(r.msgs),
            read_states=tuple(r.read_states),
        )
        r.msgs = []
        r.read_states = []
        log.unstable.accept_in_progress()
        if snapshot is not None:
            log.accept_applying(snapshot.index)
        if rd.committed:
            log.accept_applying(rd.committed[-1].index)
        self._prev_soft, self._prev_hard = soft, hard
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has persisted, sent and applied ``rd``."""
        if rd is not self._outstanding:
            raise ValueError("advance() takes the Ready last returned by ready()")
        self._outstanding = None
        r = self._raft
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            r.log.stable_snap_to(rd.snapshot.index)
            r.advance_applied(rd.snapshot.index)
        if rd.committed:
            r.advance_applied(rd.committed[-1].index)
            r.reduce_uncommitted(rd.committed)

    def heartbeats(self) -> list[Message]:
        """The heartbeats this node would send now if it leads (none otherwise), without a
        read context and without changing Raft's state: the driver sends them while a long
        write cycle holds the node in its worker thread, so followers do not time out."""
        r = self._raft
        if r.role != Role.LEADER:
            return []
        committed = r.log.committed
        return [
            Message(
                type=MessageType.HEARTBEAT,
                frm=r.id,
                to=node,
                term=r.term,
                commit=min(pr.match, committed),
            )
            for node, pr in r.tracker.progress.items()
            if node != r.id
        ]

    # ------------------------------------------------------------------ introspection
    def status(self) -> Status:
        """Term, marks, role, leader, configuration and (on a leader) progress."""
        r = self._raft
        soft = r.soft_state()
        progress = {}
        if r.role == Role.LEADER:
            progress = {
                node: ProgressStatus(
                    match=pr.match,
                    next=pr.next,
                    state=str(pr.state),
                    recent_active=pr.recent_active,
                    is_learner=pr.is_learner,
                    inflight=len(pr.inflights),
                    paused=pr.is_paused(),
                )
                for node, pr in r.tracker.progress.items()
            }
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            role=soft.role,
            leader=r.lead,
            conf=r.tracker.conf,
            progress=progress,
            lead_transferee=r.lead_transferee,
            lease=r.role == Role.LEADER and r.lease.valid(),
        )


def coalesce_acks(msgs: list[Message]) -> tuple[Message, ...]:
    """``msgs`` with the APPEND acknowledgements each peer gets in one ``Ready`` folded into
    the one of the highest index (per peer and term).

    A follower that stepped several APPENDs in one batch answers each; the leader learns
    nothing from the lower acknowledgements that the highest one does not tell it (match,
    inflights and probe state all move to the highest index), so one message carries them
    all. Rejections are kept as they are: each carries its own hint.
    """
    if len(msgs) < 2:
        return tuple(msgs)
    best: dict[tuple[str, int], int] = {}
    drop: set[int] = set()
    for i, m in enumerate(msgs):
        if m.type != MessageType.APPEND_RESP or m.reject:
            continue
        key = (m.to, m.term)
        j = best.get(key)
        if j is None:
            best[key] = i
        elif m.index >= msgs[j].index:
            drop.add(j)
            best[key] = i
        else:
            drop.add(i)
    if not drop:
        return tuple(msgs)
    return tuple(m for i, m in enumerate(msgs) if i not in drop)
