"""The journal: ``raft.*`` and ``cluster.*`` events written into the KV store, so that
handlers read them from the durable history like kv events.

Those events are not KV writes, and the in-process bus delivers them at most once, so
the leader *reconciles* instead of relaying: it compares what it knows now (its term,
the voters and learners) with the last journaled state, and writes an event when they
differ. A leader that dies before writing loses nothing: the next leader sees the same
difference. Rapid changes between two checks are folded into one event (its
``*_before`` / ``*_after`` fields span them).

Journaled events:

* ``raft.leader_changed``: ``{leader, previous, term}``, once per new leader (a node
  re-elected in a later term is not a change).
* ``cluster.membership_changed``: ``{voters_before, learners_before, voters_after,
  learners_after}``. The first membership a cluster has is the baseline, not an event.
"""

from __future__ import annotations

import time
from typing import Any

from aspen_hooks import kvops
from aspen_hooks.keys import PREFIX, journal_key

__all__ = ["LEADER_CHANGED", "MEMBERSHIP_CHANGED", "Journal"]

LEADER_CHANGED = "raft.leader_changed"
MEMBERSHIP_CHANGED = "cluster.membership_changed"
#: The last membership seen (not under the journal prefix: writing it is not an event).
_MEMBERSHIP_BASELINE = PREFIX + b"membership"


class Journal:
    """Reconciles one node's view into the journal while that node leads."""

    def __init__(self, node: Any) -> None:
        self._node = node
        self._done: tuple[Any, ...] | None = None

    async def reconcile(self) -> None:
        """Journal what changed since the last check (cheap when nothing did)."""
        status = await self._node.call("cluster.status")
        term = status["raft"]["term"]
        voters = sorted(status["conf"]["voters"])
        learners = sorted(status["conf"]["learners"])
        view = (term, tuple(voters), tuple(learners))
        if view == self._done:
            return
        if await self._leader(term) and await self._membership(voters, learners):
            self._done = view  # else a write raced: look again next time

    async def _leader(self, term: int) -> bool:
        """Journal this node's leadership unless it is already (or it led before)."""
        key = journal_key(LEADER_CHANGED)
        last = await kvops.get(self._node, key)
        if last is not None and (
            last["value"].get("term") == term or last["value"].get("leader") == self._node.id
        ):
            return True  # journaled, or a re-election of the same leader (not a change)
        record = {
            "name": LEADER_CHANGED,
            "leader": self._node.id,
            "previous": None if last is None else last["value"].get("leader"),
            "term": term,
            "time": time.time(),
        }
        expected = 0 if last is None else last["mod_revision"]
        done = await kvops.txn(
            self._node, [kvops.cmp_mod(key, expected)], [kvops.put_op(key, record)]
        )
        return bool(done["succeeded"])

    async def _membership(self, voters: list[str], learners: list[str]) -> bool:
        """Journal a membership change since the last one seen."""
        now = {"voters": voters, "learners": learners}
        base = await kvops.get(self._node, _MEMBERSHIP_BASELINE)
        expected = 0 if base is None else base["mod_revision"]
        guard = [kvops.cmp_mod(_MEMBERSHIP_BASELINE, expected)]
        if base is None:
            done = await kvops.txn(self._node, guard, [kvops.put_op(_MEMBERSHIP_BASELINE, now)])
            return bool(done["succeeded"])
        before = base["value"]
        if before == now:
            return True
        record = {
            "name": MEMBERSHIP_CHANGED,
            "voters_before": before["voters"],
            "learners_before": before["learners"],
            "voters_after": voters,
            "learners_after": learners,
            "time": time.time(),
        }
        done = await kvops.txn(
            self._node,
            guard,
            [
                kvops.put_op(_MEMBERSHIP_BASELINE, now),
                kvops.put_op(journal_key(MEMBERSHIP_CHANGED), record),
            ],
        )
        return bool(done["succeeded"])
