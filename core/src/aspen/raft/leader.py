"""The leader side of Raft: proposals, replication with flow control, commit, ReadIndex,
leadership transfer and membership-change admission. Mixed into :class:`aspen.raft.Raft`.

Replication: each follower's :class:`~aspen.raft.progress.Progress` decides what to send
(probe one APPEND at a time; replicate a pipeline bounded by inflight count and bytes;
snapshot when the entries it needs were compacted). A rejected APPEND carries a hint
(index, term) from the follower, so the leader skips a whole conflicting term at once.

Commit: the largest index a quorum of voters matches, and only if that entry is of the
current term (Raft §5.4.2, the "Figure 8" rule); earlier entries commit with it.

ReadIndex: the leader records its commit index, confirms it still leads with a heartbeat
round carrying the request's context, then answers. Before it has committed an entry of
its own term its commit index may be stale, so reads wait until it has.

Commit notices are lazy: every APPEND and heartbeat carries the commit index (a heartbeat
``min(match, commit)``, what the follower can adopt safely), so when an acknowledgement
advances the commit nothing goes out for it at once; the next APPEND (the next write's)
usually tells it. A member not told yet has a notice *pending*
(:meth:`commit_notice_pending`); the driver flushes it (:meth:`flush_commit_notices`, an
empty APPEND) after a short delay (``aspen.limits.COMMIT_NOTICE_DELAY_SECONDS``), and
the next heartbeat would tell it anyway. A follower thus applies an entry later than with
an immediate notice: by up to that delay for a lone write, and when the next write's APPEND
tells it, by that write's round trip plus its fsync (the follower applies after it
persisted the new entry; issue 10 measured 1.6 -> 4.1 ms from a put's answer to a
follower's watch event at one client, 1.1 -> 8 ms for a lone put). Where a follower needs
the commit at once it gets it at once: a follower whose ReadIndex is answered (its read
waits for that index to apply there) and a leadership transferee. Safety does not depend
on notices at all: a follower's commit only ever comes from the leader's, whenever it
learns it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aspen.raft.confchange import apply_to_conf, conf_change_problem, encode_conf_change
from aspen.raft.errors import (
    CompactedError,
    ConfChangeRefusedError,
    ProposalDroppedError,
    UnavailableError,
)
from aspen.raft.log import entries_size
from aspen.raft.progress import ProgressState
from aspen.raft.quorum import majority
from aspen.raft.types import ConfChange, Entry, EntryType, Message, MessageType, Role

if TYPE_CHECKING:
    from aspen.raft.raft import Raft

__all__ = ["LeaderMixin"]

_MT = MessageType


class LeaderMixin:
    """Leader behaviour; every method assumes ``self`` is a :class:`Raft`."""

    #: Declared here so the type checker knows it (set in :class:`Raft`).
    lead_transferee: str | None

    # ------------------------------------------------------------------ proposals
    def append_entries(self: Raft, items: list[tuple[EntryType, bytes]]) -> int:
        """Append new entries of this term to our log; returns the last index."""
        index = self.log.last_index()
        entries = [
            Entry(index + k + 1, self.term, kind, data) for k, (kind, data) in enumerate(items)
        ]
        last = self.log.append(entries)
        self.tracker.progress[self.id].maybe_update(last)
        self.maybe_commit()
        return last

    def propose(self: Raft, kind: EntryType, data: bytes) -> int:
        """Append one proposed entry and replicate it; returns its index."""
        accepted = self.propose_batch(kind, [data])
        if not accepted:
            raise ProposalDroppedError("too many uncommitted bytes on the leader; retry shortly")
        return self.log.last_index()

    def propose_batch(self: Raft, kind: EntryType, datas: list[bytes]) -> int:
        """Append proposed entries (a prefix of ``datas`` within the uncommitted-bytes
        bound) and replicate them in ONE message per follower; returns how many were
        appended (their indexes end at ``log.last_index()``)."""
        self.require_leader()
        if self.id not in self.tracker.progress:
            raise ProposalDroppedError("this leader was removed from the cluster")
        if self.lead_transferee is not None:
            raise ProposalDroppedError(
                f"leadership is being transferred to {self.lead_transferee}; retry shortly"
            )
        bound = self.config.max_uncommitted_bytes
        taken: list[tuple[EntryType, bytes]] = []
        for data in datas:
            size = len(data)
            if self.uncommitted_bytes and self.uncommitted_bytes + size > bound:
                break
            self.uncommitted_bytes += size
            taken.append((kind, data))
        if taken:
            self.append_entries(taken)
            self.bcast_append()
        return len(taken)

    def propose_conf_change(self: Raft, change: ConfChange) -> int:
        """Propose a membership change after checking it is safe to make now."""
        self.require_leader()
        problem = conf_change_problem(self.tracker.conf, change)
        if problem is not None:
            raise ConfChangeRefusedError(problem)
        if self.pending_conf_index > self.log.applied:
            raise ConfChangeRefusedError(
                f"another membership change (index {self.pending_conf_index}) is not applied yet"
            )
        if not self.committed_in_term():
            raise ConfChangeRefusedError("the new leader has not committed an entry yet; retry")
        voters = apply_to_conf(self.tracker.conf, change).voters
        active = sum(
            1
            for v in voters
            if v == self.id
            or (v in self.tracker.progress and self.tracker.progress[v].recent_active)
        )
        if active < majority(len(voters)):
            raise ConfChangeRefusedError(
                f"the change would lose quorum: {active} of the {len(voters)} voters after it "
                f"are reachable, {majority(len(voters))} are needed"
            )
        index = self.propose(EntryType.CONF_CHANGE, encode_conf_change(change))
        self.pending_conf_index = index
        return index

    def reduce_uncommitted(self: Raft, entries: tuple[Entry, ...]) -> None:
        """Applied entries no longer count against the uncommitted-bytes bound."""
        if self.role == Role.LEADER and self.uncommitted_bytes:
            self.uncommitted_bytes = max(
                0, self.uncommitted_bytes - sum(len(e.data) for e in entries)
            )

    # ------------------------------------------------------------------ commit
    def committed_in_term(self: Raft) -> bool:
        """Whether the commit index is in this term (the leader's commit is current);
        remembered for the term, so a read does not look the entry's term up each time."""
        if self.committed_term == self.term:
            return True
        if self.log.zero_term(self.log.committed) != self.term:
            return False
        self.committed_term = self.term
        return True

    def maybe_commit(self: Raft) -> bool:
        """Advance the commit index to what a quorum matches (current-term entries only)."""
        if not self.log.maybe_commit(self.tracker.committed(), self.term):
            return False
        if self.deferred_reads and self.committed_in_term():
            deferred, self.deferred_reads = self.deferred_reads, []
            for origin, context in deferred:
                self.leader_read_index(origin, context)
        return True

    # ------------------------------------------------------------------ sending
    def maybe_send_append(self: Raft, to: str, *, send_if_empty: bool = True) -> bool:
        """Send ``to`` what it needs next (entries or a snapshot) if flow control allows."""
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
            entries = self.log.entries_from(pr.next, self.config.max_size_per_msg)
        except CompactedError:
            return self._send_snapshot(to)
        except UnavailableError:
            return False
        if not entries and not send_if_empty:
            return False
        self.send(
            to,
            _MT.APPEND,
            index=prev,
            log_term=prev_term,
            entries=tuple(entries),
            commit=self.log.committed,
        )
        pr.sent_entries(entries[-1].index if entries else None, entries_size(entries))
        pr.commit_sent = self.log.committed
        return True

    def _send_snapshot(self: Raft, to: str) -> bool:
        pr = self.tracker.progress[to]
        if not pr.recent_active:
            return False  # do not ship a snapshot to a node that may be down
        snap = self.log.snapshot()
        if snap.index < self.log.first_index() - 1 or snap.index == 0:
            return False  # storage broke its promise; wait for a usable snapshot
        pr.become_snapshot(snap.index)
        self.send(to, _MT.SNAPSHOT, snapshot=snap)
        return True

    def bcast_append(self: Raft) -> None:
        """Send every other member what it needs next."""
        for node in self.tracker.progress:
            if node != self.id:
                self.maybe_send_append(node)

    def commit_notice_pending(self: Raft) -> bool:
        """Whether the commit advanced since a flush and some member that could take an
        APPEND now was not sent it yet (in an APPEND, or a heartbeat it can adopt it from).

        At one client this is the state between a write's commit and the next write's
        APPEND, which tells the followers; at many clients the APPENDs stepped in the same
        batch tell them and nothing is pending. A member that cannot take an APPEND now
        (paused) gets the commit with the next one it is sent."""
        if not self.commit_notice_due or self.role != Role.LEADER:
            return False
        committed = self.log.committed
        return any(
            pr.commit_sent < committed and not pr.is_paused()
            for node, pr in self.tracker.progress.items()
            if node != self.id
        )

    def flush_commit_notices(self: Raft) -> None:
        """Tell every member not told yet the current commit index: what it needs next (an
        empty APPEND if nothing). The driver calls it once a notice was pending for
        ``COMMIT_NOTICE_DELAY_SECONDS``; a no-op when nothing is pending."""
        due, self.commit_notice_due = self.commit_notice_due, False
        if not due or self.role != Role.LEADER:
            return
        committed = self.log.committed
        for node, pr in self.tracker.progress.items():
            if node != self.id and pr.commit_sent < committed:
                self.maybe_send_append(node)

    def _tell_commit_now(self: Raft, node: str, index: int) -> None:
        """``node`` needs a commit of at least ``index`` at once (a read it asked for waits
        on it): send it an APPEND now unless one already told it."""
        pr = self.tracker.progress.get(node)
        if pr is not None and pr.commit_sent < min(index, self.log.committed):
            self.maybe_send_append(node)

    def bcast_heartbeat(self: Raft, context: bytes | None = None) -> None:
        """Heartbeat every other member (carrying the newest pending read context)."""
        if context is None:
            context = self.read_requests.last_context()
        if self.lease.enabled:
            context = context or self.lease.new_context()
            self.lease.sent(context)
        committed = self.log.committed
        for node, pr in self.tracker.progress.items():
            if node != self.id:
                commit = min(pr.match, committed)
                pr.commit_sent = max(pr.commit_sent, commit)
                self.send(node, _MT.HEARTBEAT, commit=commit, context=context)

    # ------------------------------------------------------------------ time
    def tick_leader(self: Raft) -> None:
        """Heartbeats, check-quorum and the leadership-transfer deadline."""
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        self.lease.elapse(1)
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum:
                if not self.tracker.quorum_active(self.id):
                    self.become_follower(self.term, None)  # we may be partitioned away
                    return
                for node, pr in self.tracker.progress.items():
                    if node != self.id:
                        pr.recent_active = False
            self.lead_transferee = None  # a transfer must finish within an election timeout
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.bcast_heartbeat()

    # ------------------------------------------------------------------ input
    def step_leader(self: Raft, m: Message) -> None:
        """Handle a message addressed to us as leader."""
        pr = self.tracker.progress.get(m.frm)
        if pr is None:
            return  # not a member (any more)
        if m.type == _MT.APPEND_RESP:
            pr.recent_active = True
            if m.index > self.log.last_index():
                return  # acknowledges entries we never had: malformed
            if m.reject:
                self._on_reject(m)
            else:
                self._on_ack(m)
        elif m.type == _MT.HEARTBEAT_RESP:
            self._on_heartbeat_resp(m)
        elif m.type == _MT.READ_INDEX:
            self.leader_read_index(m.frm, m.context)

    def _on_reject(self: Raft, m: Message) -> None:
        pr = self.tracker.progress[m.frm]
        hint = m.reject_hint
        if m.hint_term > 0:
            hint, _ = self.log.find_conflict_by_term(min(hint, self.log.last_index()), m.hint_term)
        if pr.maybe_decrease_to(m.index, hint):
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self.maybe_send_append(m.frm)

    def _on_ack(self: Raft, m: Message) -> None:
        pr = self.tracker.progress[m.frm]
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT:
            if pr.match + 1 >= self.log.first_index():
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.commit_notice_due = True  # lazily: the next APPEND or a flush tells it
        elif was_paused:
            self.maybe_send_append(m.frm)
        while self.maybe_send_append(m.frm, send_if_empty=False):
            pass  # fill the pipeline
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send_timeout_now(m.frm)

    def _on_heartbeat_resp(self: Raft, m: Message) -> None:
        pr = self.tracker.progress[m.frm]
        pr.recent_active = True
        pr.paused = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first()  # an APPEND may have been lost: let one more through
        if pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            self.maybe_send_append(m.frm)
        if not m.context:
            return
        self.lease.ack(m.frm, m.context, self._voter_quorum)
        acks = self.read_requests.ack(m.frm, m.context)
        if acks is None or not self._voter_quorum(acks):
            return
        for request in self.read_requests.release(m.context):
            self.respond_read(request.origin, request.index, request.context)

    def _voter_quorum(self: Raft, acks: set[str]) -> bool:
        """Whether ``acks`` holds a majority of the voters."""
        return sum(1 for v in acks if self.tracker.is_voter(v)) >= majority(
            len(self.tracker.voters)
        )

    def leader_read_index(self: Raft, origin: str, context: bytes) -> None:
        """Serve a ReadIndex request from ``origin`` (this node or a follower)."""
        if self.tracker.voters == frozenset((self.id,)):
            self.respond_read(origin, self.log.committed, context)
            return
        if not self.committed_in_term():
            if len(self.deferred_reads) < self.read_requests.max_pending:
                self.deferred_reads.append((origin, context))
            return
        if self.lease.valid():
            self.respond_read(origin, self.log.committed, context)
            return  # no other leader can exist yet: no heartbeat round needed
        if self.read_requests.add(self.log.committed, context, origin):
            self.read_requests.ack(self.id, context)
            self.bcast_heartbeat(context)

    def report_unreachable(self: Raft, node: str) -> None:
        """The driver could not reach ``node``: stop streaming to it, probe instead."""
        if self.role != Role.LEADER:
            return
        pr = self.tracker.progress.get(node)
        if pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self: Raft, node: str, *, ok: bool) -> None:
        """The driver finished sending a snapshot to ``node`` (``ok``: it was installed)."""
        if self.role != Role.LEADER:
            return
        pr = self.tracker.progress.get(node)
        if pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.paused = True  # wait for the follower's answer (or a heartbeat) before probing

    # ------------------------------------------------------------------ transfer
    def transfer_leader(self: Raft, to: str) -> None:
        """Hand leadership to ``to``: stop proposals, catch it up, tell it to campaign."""
        self.require_leader()
        if to == self.id:
            self.lead_transferee = None
            return
        pr = self.tracker.progress.get(to)
        if pr is None:
            raise ValueError(f"cannot transfer leadership to {to!r}: not a member")
        if pr.is_learner:
            raise ValueError(f"cannot transfer leadership to {to!r}: it is a learner")
        if self.lead_transferee == to:
            return
        self.lease.revoke()  # the transferee's forced election ignores the voters' lease
        self.lead_transferee = to
        self.election_elapsed = 0
        if pr.match == self.log.last_index():
            self._send_timeout_now(to)
        else:
            self.maybe_send_append(to)

    def _send_timeout_now(self: Raft, to: str) -> None:
        """Tell the caught-up transferee to campaign, and the current commit first: it
        leads next, so let it start from the commit we know, not a lazy notice behind."""
        self._tell_commit_now(to, self.log.committed)
        self.send(to, _MT.TIMEOUT_NOW)

    def after_conf_change(self: Raft) -> None:
        """A leader's configuration changed: step down if removed, else re-evaluate."""
        if not self.tracker.is_voter(self.id):
            self.lease.revoke()
            self._hand_over()
            return
        # rounds acknowledged by the old voters stop counting; a new lease needs a round
        # sent from now on, acknowledged by a quorum of the new voters (see aspen.raft.lease)
        self.lease.restart()
        if self.lead_transferee is not None and not self.tracker.is_voter(self.lead_transferee):
            self.lead_transferee = None
        self.maybe_commit()
        self.bcast_append()  # new members hear from us now, not at the next heartbeat

    def _hand_over(self: Raft) -> None:
        """We were removed: let the most up-to-date voter campaign at once, then step down."""
        last = self.log.last_index()
        best = max(
            (v for v in self.tracker.conf.voters if v in self.tracker.progress),
            key=lambda v: self.tracker.progress[v].match,
            default=None,
        )
        if best is not None and self.tracker.progress[best].match == last:
            self.send(best, _MT.TIMEOUT_NOW)
        self.become_follower(self.term, None)
