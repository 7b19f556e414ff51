"""The Raft state machine of one node: terms, roles, elections and the follower side.

The leader side (replication, commit, ReadIndex, transfer) is :mod:`aspen.raft.leader`,
mixed in. Nothing here does I/O: inputs are method calls, outputs accumulate in
``self.msgs`` / ``self.read_states`` and the log's unstable part, and
:class:`aspen.raft.RawNode` hands them to the driver as a ``Ready``.

Invariants (checked by the unit tests and, across nodes, by the simulator):

* ``term`` never decreases; ``vote`` is only set in the current term and is reset when
  the term changes; at most one vote is granted per term (the vote is part of the hard
  state and is persisted before the VOTE_RESP that depends on it is sent).
* Election safety: a node becomes leader only with votes from a quorum of the voters in
  its configuration, in a single term.
* A pre-vote never changes ``term`` or ``vote`` of anyone: a node that could not win does
  not disrupt the cluster. With check-quorum, a follower that heard from its leader less
  than an election timeout ago ignores (pre-)votes unless they carry the transfer marker.
* The leader appends, never overwrites, its own log; it commits an index only when a
  quorum of voters matches it *and* the entry there is of the current term.
* A follower never truncates committed entries and only commits what it has verified to
  match the leader (``min(leader commit, last index verified by this message)``).
* Membership changes take effect when applied (``apply_conf_change``), one at a time: a
  new one is refused while ``pending_conf_index > applied``.
* Messages are only ever addressed to other nodes; every message's term is the sender's
  current term, except vote answers (the term asked about).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aspen.raft.confchange import apply_to_conf, conf_change_problem
from aspen.raft.config import MAX_PENDING_READ_REQUESTS, Config
from aspen.raft.errors import CompactedError, NotLeaderError, UnavailableError
from aspen.raft.leader import LeaderMixin
from aspen.raft.lease import LeaderLease, lease_duration
from aspen.raft.log import RaftLog
from aspen.raft.quorum import VoteResult
from aspen.raft.readonly import ReadRequestQueue
from aspen.raft.storage import RaftStorage
from aspen.raft.tracker import ProgressTracker
from aspen.raft.types import (
    ConfChange,
    ConfState,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    SnapshotMeta,
    SoftState,
)

if TYPE_CHECKING:
    import random  # only the type: Raft uses the Random instance it is given

__all__ = ["TRANSFER_CONTEXT", "Raft"]

#: Context of a VOTE sent because of leadership transfer: voters skip their leader lease.
TRANSFER_CONTEXT = b"\x00aspen-raft:transfer"

_MT = MessageType


class Raft(LeaderMixin):
    """One node's Raft state; driven through :class:`aspen.raft.RawNode`."""

    def __init__(self, config: Config, storage: RaftStorage, rng: random.Random) -> None:
        config.validate()
        self.id = config.id
        self.config = config
        self.rng = rng
        self.log = RaftLog(storage, config.max_apply_bytes_per_ready)
        self.tracker = ProgressTracker(config.max_inflight_msgs, config.max_inflight_bytes)
        self.term = 0
        self.vote: str | None = None
        self.lead: str | None = None
        self.role = Role.FOLLOWER
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_requests = ReadRequestQueue(MAX_PENDING_READ_REQUESTS)
        self.deferred_reads: list[tuple[str, bytes]] = []
        #: The term in which the commit index was last seen holding an entry of that term
        #: (it stays so for the rest of the term: commit only grows, terms never fall).
        self.committed_term = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee: str | None = None
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self.transfer_after_apply = False
        #: A leader's commit index advanced since the last :meth:`flush_commit_notices`
        #: (members not told yet learn it lazily: see :mod:`aspen.raft.leader`).
        self.commit_notice_due = False
        self.lease = LeaderLease(self.id, 0)
        hard_state, conf = storage.initial_state()
        self.tracker.set_conf(conf, self.log.last_index() + 1)
        self._load(hard_state, config.applied)
        self.become_follower(self.term, None)
        #: With lease reads, a (re)started voter refuses votes for an election timeout,
        #: as if it had just heard from a leader: it may have acknowledged a lease round
        #: before it stopped (see :mod:`aspen.raft.lease`).
        self.vote_guard = config.read_only == "lease"

    def _load(self, hard_state: HardState, applied: int) -> None:
        """Restore term, vote, commit and applied from durable state."""
        log = self.log
        last = log.last_index()
        if hard_state.commit > last:
            raise ValueError(f"stored commit {hard_state.commit} is past the last index {last}")
        if applied > last:
            raise ValueError(f"applied index {applied} is past the last index {last}")
        if applied and applied < log.applied:
            raise ValueError(f"applied index {applied} is below the log start {log.applied}")
        self.term, self.vote = hard_state.term, hard_state.vote
        log.commit_to(max(hard_state.commit, applied))
        log.applied_to(applied)

    # ------------------------------------------------------------------ state views
    def hard_state(self) -> HardState:
        """What must be durable before dependent messages go out."""
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        """Leader and role, as the driver sees them."""
        role = self.role
        if role == Role.FOLLOWER and self.id in self.tracker.learners:
            role = Role.LEARNER
        return SoftState(self.lead, role)

    def promotable(self) -> bool:
        """Whether this node may campaign: a voter without a snapshot to install."""
        return self.tracker.is_voter(self.id) and self.log.unstable.snapshot is None

    # ------------------------------------------------------------------ output
    def send(self, to: str, kind: MessageType, **fields: object) -> None:
        """Queue a message to ``to``; its term is the current one unless given."""
        fields.setdefault("term", self.term)
        self.msgs.append(Message(type=kind, frm=self.id, to=to, **fields))  # type: ignore[arg-type]

    def respond_read(self, origin: str, index: int, context: bytes) -> None:
        """Answer a ReadIndex request, locally or to the follower that forwarded it."""
        if origin == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            # the follower's read waits until it applied ``index``: tell it the commit
            # now rather than lazily (see :mod:`aspen.raft.leader`)
            self._tell_commit_now(origin, index)
            self.send(origin, _MT.READ_INDEX_RESP, index=index, context=context)

    # ------------------------------------------------------------------ roles
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.config.election_tick + self.rng.randrange(
            self.config.election_tick
        )
        self.lead_transferee = None
        self.tracker.reset_votes()
        self.tracker.reset_progress(self.log.last_index() + 1)
        own = self.tracker.progress.get(self.id)
        if own is not None:
            own.match = self.log.last_index()
            own.recent_active = True
        self.pending_conf_index = 0
        self.uncommitted_bytes = 0
        self.transfer_after_apply = False
        self.commit_notice_due = False
        self.read_requests = ReadRequestQueue(MAX_PENDING_READ_REQUESTS)
        self.deferred_reads = []

    def become_follower(self, term: int, lead: str | None) -> None:
        """Follow ``lead`` (None: unknown) in ``term``."""
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        """Ask for pre-votes: no term change, no vote change."""
        if self.role == Role.LEADER:
            raise ValueError("a leader cannot become a pre-candidate")
        self.tracker.reset_votes()
        self.lead = None
        self.role = Role.PRE_CANDIDATE
        self.randomized_election_timeout = self.config.election_tick + self.rng.randrange(
            self.config.election_tick
        )

    def become_candidate(self) -> None:
        """Start a real election in the next term, voting for ourselves."""
        if self.role == Role.LEADER:
            raise ValueError("a leader cannot become a candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        """Lead this term: replicate from scratch and append the term's empty entry."""
        if self.role == Role.FOLLOWER:
            raise ValueError("a follower cannot become leader without an election")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        lease = self.config.read_only == "lease"
        duration = lease_duration(self.config.election_tick, self.config.max_clock_drift)
        self.lease = LeaderLease(self.id, duration if lease else 0)
        own = self.tracker.progress[self.id]
        own.become_replicate()
        # Any conf change in the uncommitted tail may still be pending: be conservative.
        self.pending_conf_index = self.log.last_index()
        self.append_entries([(EntryType.NORMAL, b"")])

    # ------------------------------------------------------------------ time
    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self.role == Role.LEADER:
            self.tick_leader()
            return
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.vote_guard = False
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.hup(transfer=False)

    # ------------------------------------------------------------------ elections
    def _unapplied_conf_change(self) -> bool:
        log = self.log
        if log.applied >= log.committed:
            return False
        try:
            pending = log.slice(log.applied + 1, log.committed + 1, None)
        except (CompactedError, UnavailableError):
            return False  # a snapshot covers them: its configuration is already in force
        return any(e.type == EntryType.CONF_CHANGE for e in pending)

    def hup(self, *, transfer: bool) -> None:
        """Start an election (pre-vote first unless this is a leadership transfer)."""
        if self.role == Role.LEADER or not self.promotable():
            return
        if self._unapplied_conf_change():
            # Campaign with the configuration the log will have, not an old one; a
            # transfer (TIMEOUT_NOW) is only postponed until the driver has applied it.
            self.transfer_after_apply = self.transfer_after_apply or transfer
            return
        self.campaign(pre=self.config.pre_vote and not transfer, transfer=transfer)

    def campaign(self, *, pre: bool, transfer: bool) -> None:
        """Ask every voter for a (pre-)vote."""
        if pre:
            self.become_pre_candidate()
            kind, term = _MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            kind, term = _MT.VOTE, self.term
        self.tracker.record_vote(self.id, True)
        if self.tracker.tally() == VoteResult.WON:
            self._won(pre=pre, transfer=transfer)
            return
        context = TRANSFER_CONTEXT if transfer else b""
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for voter in self.tracker.conf.voters:
            if voter != self.id:
                self.send(
                    voter, kind, term=term, index=last_index, log_term=last_term, context=context
                )

    def _won(self, *, pre: bool, transfer: bool) -> None:
        if pre:
            self.campaign(pre=False, transfer=transfer)
        else:
            self.become_leader()
            self.bcast_append()

    # ------------------------------------------------------------------ stepping
    def step(self, m: Message) -> None:
        """Handle a (validated) message from a peer."""
        if m.type == _MT.UNREACHABLE:
            self.report_unreachable(m.frm)
            return
        if m.type == _MT.SNAPSHOT_STATUS:
            self.report_snapshot(m.frm, ok=not m.reject)
            return
        if m.term > self.term:
            if m.type in (_MT.VOTE, _MT.PRE_VOTE):
                forced = m.context == TRANSFER_CONTEXT
                in_lease = (
                    self.config.check_quorum
                    and (self.lead is not None or self.vote_guard)
                    and self.election_elapsed < self.config.election_tick
                )
                if in_lease and not forced:
                    return  # we heard from a live leader recently: do not help unseat it
            if m.type == _MT.PRE_VOTE or (m.type == _MT.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change terms
            elif m.type in (_MT.APPEND, _MT.HEARTBEAT, _MT.SNAPSHOT):
                self.become_follower(m.term, m.frm)
            elif m.type == _MT.VOTE and self.role != Role.LEADER:
                # Adopt the term but keep our election timer running (Raft §5.2: only a
                # granted vote resets it). Otherwise candidates with stale logs, each
                # campaign resetting everyone's timer, can starve the nodes that could win.
                elapsed = self.election_elapsed
                self.become_follower(m.term, None)
                self.election_elapsed = elapsed
            else:
                self.become_follower(m.term, None)
        elif m.term < self.term:
            self._step_stale(m)
            return
        if m.type in (_MT.VOTE, _MT.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self.step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _step_stale(self, m: Message) -> None:
        if (self.config.check_quorum or self.config.pre_vote) and m.type in (
            _MT.APPEND,
            _MT.HEARTBEAT,
        ):
            # A deposed leader (e.g. back from a partition) learns the new term from this and
            # steps down; without it, it could never hear of the term it missed.
            self.send(m.frm, _MT.APPEND_RESP)
        elif m.type == _MT.PRE_VOTE:
            self.send(m.frm, _MT.PRE_VOTE_RESP, reject=True)

    def _handle_vote_request(self, m: Message) -> None:
        resp = _MT.VOTE_RESP if m.type == _MT.VOTE else _MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.frm
            or (self.vote is None and self.lead is None)
            or (m.type == _MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self.send(m.frm, resp, term=m.term)
            if m.type == _MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self.send(m.frm, resp, reject=True)

    def _step_follower(self, m: Message) -> None:
        handler = self._FOLLOWER_INPUT.get(m.type)
        if handler is not None:
            self.election_elapsed = 0
            self.lead = m.frm
            handler(self, m)
        elif m.type == _MT.TIMEOUT_NOW:
            self.hup(transfer=True)
        elif m.type == _MT.READ_INDEX_RESP and m.frm == self.lead:
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        handler = self._FOLLOWER_INPUT.get(m.type)
        if handler is not None:
            self.become_follower(m.term, m.frm)
            handler(self, m)
            return
        mine = _MT.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else _MT.VOTE_RESP
        if m.type != mine:
            return
        self.tracker.record_vote(m.frm, not m.reject)
        result = self.tracker.tally()
        if result == VoteResult.WON:
            self._won(pre=self.role == Role.PRE_CANDIDATE, transfer=False)
        elif result == VoteResult.LOST:
            self.become_follower(self.term, None)

    # ------------------------------------------------------------------ follower input
    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self.send(m.frm, _MT.APPEND_RESP, index=log.committed)
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.send(m.frm, _MT.APPEND_RESP, index=last_new)
            return
        hint, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self.send(
            m.frm,
            _MT.APPEND_RESP,
            index=m.index,
            reject=True,
            reject_hint=hint,
            hint_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self.send(m.frm, _MT.HEARTBEAT_RESP, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None  # validated
        if self._restore(m.snapshot):
            self.send(m.frm, _MT.APPEND_RESP, index=self.log.last_index())
        else:
            self.send(m.frm, _MT.APPEND_RESP, index=self.log.committed)

    def _restore(self, snap: SnapshotMeta) -> bool:
        """Adopt a snapshot from the leader; False when we already have what it covers."""
        log = self.log
        if snap.index <= log.committed:
            return False
        if log.match_term(snap.index, snap.term):
            log.commit_to(snap.index)  # our log already has it: just catch the commit up
            return False
        log.restore(snap)
        self.tracker.set_conf(snap.conf, log.last_index() + 1)
        return True

    _FOLLOWER_INPUT: dict[MessageType, Callable[[Raft, Message], None]] = {
        _MT.APPEND: _handle_append,
        _MT.HEARTBEAT: _handle_heartbeat,
        _MT.SNAPSHOT: _handle_snapshot,
    }

    # ------------------------------------------------------------------ local requests
    def read_index(self, context: bytes) -> bool:
        """Ask for a ReadIndex; False when no leader is known (the request is dropped)."""
        if self.role == Role.LEADER:
            self.leader_read_index(self.id, context)
            return True
        if self.lead is None:
            return False
        self.send(self.lead, _MT.READ_INDEX, context=context)
        return True

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Put an applied membership change in force; an invalid one changes nothing."""
        if conf_change_problem(self.tracker.conf, change) is not None:
            return self.tracker.conf
        self.tracker.set_conf(apply_to_conf(self.tracker.conf, change), self.log.last_index() + 1)
        if self.role == Role.LEADER:
            self.after_conf_change()
        return self.tracker.conf

    def require_leader(self) -> None:
        """Raise ``NotLeaderError`` unless this node leads."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead)

    def advance_applied(self, index: int) -> None:
        """The driver applied entries up to ``index``."""
        self.log.applied_to(index)
        if self.transfer_after_apply and self.role != Role.LEADER:
            self.transfer_after_apply = False
            self.hup(transfer=True)
