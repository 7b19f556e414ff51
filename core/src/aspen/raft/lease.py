"""The leader lease (Raft thesis §6.4): reads served without a heartbeat round.

A leader sends heartbeats in rounds, each tagged with a context that followers echo.
When a quorum of voters (the leader counts itself) has acknowledged a round sent at
leader tick ``s``, no other leader can be elected before the leader's tick
``s + duration``:

- a voter that acknowledged the round refuses every vote and pre-vote for
  ``election_tick`` of *its own* ticks after it received the heartbeat (``Raft.step``,
  the "in lease" check), and a restarted voter does the same after its start (it may
  have acknowledged a round before it crashed);
- every possible new leader needs a vote from at least one of them (quorums intersect).

The round reached the voter after the leader's tick ``s`` began, and the voter's
``election_tick`` ticks span at least ``election_tick - 1`` of its tick periods. So the
lease is safe as long as ``duration`` leader ticks last no longer in real time than
``election_tick - 1`` ticks of the fastest voter: with tick rates differing by at most
``max_clock_drift`` (0.1 = 10 %), ``duration = floor((election_tick - 1) / (1 +
max_clock_drift))``. That is the clock-drift assumption of lease reads; beyond it a
deposed leader may serve a stale read (``core/tests/test_raft_lease.py`` shows both).
The driver must also tick the leader at least as fast as real time (ticks it could not
deliver count through :meth:`LeaderLease.elapse`), never slower.

A leadership transfer ends the lease for the rest of the term: the transferee's forced
election ignores the voters' lease. A membership change the leader applies restarts it
(:meth:`LeaderLease.restart`): the rounds acknowledged under the old voters no longer
count, and a new lease needs a round sent after the change and acknowledged by a quorum
of the new voters. Changes add or remove one voter at a time, so every quorum of the new
voters intersects every quorum of the old ones: a candidate that still counts with the
old voters also needs a vote from one that acknowledged the round (a cluster formed by
joins, ``aspen dev up``, thus has a lease as soon as it is formed, not only after its
first leader change).

Invariants: ``rounds`` maps a context to (the leader tick it was first sent at, the
voters that acknowledged it) and holds only rounds that could still extend the lease
(sent after ``start``, less than ``duration`` ticks ago), at most ``MAX_LEASE_ROUNDS``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

__all__ = ["MAX_LEASE_ROUNDS", "LeaderLease", "lease_duration"]

#: Most heartbeat rounds a leader tracks at once (older ones are dropped first).
MAX_LEASE_ROUNDS = 1024
#: Prefix of the heartbeat contexts of lease rounds.
_ROUND_PREFIX = b"\x00aspen-raft:lease:"


def lease_duration(election_tick: int, max_clock_drift: float) -> int:
    """Leader ticks a lease lasts (see the module docstring); 0 means no lease at all."""
    return max(0, int((election_tick - 1) / (1.0 + max_clock_drift)))


class LeaderLease:
    """A leader's lease, counted in its own ticks."""

    def __init__(self, leader: str, duration: int) -> None:
        self.leader = leader
        self.duration = duration
        #: Leader ticks since it took office (including ticks the driver skipped).
        self.clock = 0
        #: The send tick of the newest round a quorum acknowledged (None: no lease yet).
        self.start: int | None = None
        self.rounds: dict[bytes, tuple[int, set[str]]] = {}
        self._numbers = itertools.count()
        #: False once the lease was given up for the rest of the term (a transfer).
        self.enabled = duration > 0

    def elapse(self, ticks: int) -> None:
        """``ticks`` leader ticks passed."""
        self.clock += ticks
        oldest = self.clock - self.duration
        for context in [c for c, (sent, _) in self.rounds.items() if sent <= oldest]:
            del self.rounds[context]

    def new_context(self) -> bytes:
        """A fresh context for a heartbeat round that carries no read request."""
        return _ROUND_PREFIX + next(self._numbers).to_bytes(8, "big")

    def sent(self, context: bytes) -> None:
        """A heartbeat round tagged ``context`` leaves now (the first send counts)."""
        if not self.enabled or context in self.rounds:
            return
        if len(self.rounds) >= MAX_LEASE_ROUNDS:
            del self.rounds[next(iter(self.rounds))]
        self.rounds[context] = (self.clock, {self.leader})

    def ack(self, node: str, context: bytes, is_quorum: Callable[[set[str]], bool]) -> None:
        """``node`` acknowledged the round ``context``; extend the lease on a quorum."""
        entry = self.rounds.get(context)
        if entry is None:
            return
        sent, acks = entry
        acks.add(node)
        if is_quorum(acks):
            self.start = sent if self.start is None else max(self.start, sent)
            for c in [c for c, (s, _) in self.rounds.items() if s <= sent]:
                del self.rounds[c]

    def valid(self) -> bool:
        """Whether no other leader can exist now (under the clock-drift assumption)."""
        return self.enabled and self.start is not None and self.clock < self.start + self.duration

    def ticks_left(self) -> int:
        """Leader ticks the lease still lasts (0: none now)."""
        if not self.valid():
            return 0
        assert self.start is not None  # valid() says so
        return self.start + self.duration - self.clock

    def restart(self) -> None:
        """Forget the lease and every round sent so far; only rounds sent from now on can
        earn a new one (after a membership change: see the module docstring)."""
        self.start = None
        self.rounds.clear()

    def revoke(self) -> None:
        """Give the lease up for the rest of the term."""
        self.enabled = False
        self.start = None
        self.rounds.clear()
