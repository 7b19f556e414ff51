"""A hand-driven cluster for unit tests: nothing moves unless the test says so.

Messages wait in :attr:`Cluster.wire` until :meth:`Cluster.stabilize` delivers them (all of
them, round after round, until the cluster is quiet; a quiet cluster lets the leader's
lazy commit notices fall due, :meth:`Cluster.fire_commit_notices`) or the test picks some with
:meth:`Cluster.take`. Links can be cut (:attr:`Cluster.cut`), messages dropped or
rewritten on their way (:attr:`Cluster.intercept`), nodes crashed and restarted. Every
node runs the same driver and safety checks as the simulator.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from aspen.raft import (
    Config,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Role,
    bootstrap,
)
from aspen.testing.raftsim_checks import InvariantChecker
from aspen.testing.raftsim_node import SimNode, encode_command

__all__ = ["Cluster"]

#: Rounds of delivery after which :meth:`Cluster.stabilize` gives up (a livelock).
MAX_ROUNDS = 1000


class Cluster:
    """Nodes ``ids`` bootstrapped together (plus ``joiners`` with empty storage)."""

    def __init__(
        self,
        ids: Iterable[str] = ("n1", "n2", "n3"),
        *,
        joiners: Iterable[str] = (),
        seed: int = 0,
        snapshot_every: int = 0,
        keep_entries: int = 0,
        **config: Any,
    ) -> None:
        self.ids = list(ids)
        self.rng = random.Random(seed)
        self.checker = InvariantChecker()
        self.wire: list[tuple[Message, Any]] = []
        self.cut: set[tuple[str, str]] = set()
        #: Sees every message about to be delivered: returns it (maybe changed) or None to drop.
        self.intercept: Callable[[Message], Message | None] = lambda m: m
        self.nodes: dict[str, SimNode] = {}
        # scenarios count ticks with a heartbeat every tick, whatever the node's default is
        config.setdefault("heartbeat_tick", 1)
        for node_id in [*self.ids, *joiners]:
            storage = MemoryStorage()
            if node_id in self.ids:
                bootstrap(storage, self.ids)
            self.nodes[node_id] = SimNode(
                node_id,
                storage,
                Config(id=node_id, **config),
                random.Random(self.rng.random()),
                self.checker,
                snapshot_every=snapshot_every,
                keep_entries=keep_entries,
            )

    # ------------------------------------------------------------------ access
    def raw(self, node_id: str) -> RawNode:
        """The node's ``RawNode``."""
        return self.nodes[node_id].raw

    def leader(self) -> str | None:
        """The live leader with the highest term, if any."""
        leaders = [n for n in self.nodes.values() if n.alive and n.raw.role == Role.LEADER]
        best = max(leaders, key=lambda n: n.raw.term, default=None)
        return best.id if best else None

    def reconfigure(self, node_id: str, **changes: Any) -> None:
        """Change a node's config; it takes effect at its next restart."""
        node = self.nodes[node_id]
        node.config = replace(node.config, **changes)

    # ------------------------------------------------------------------ moving things
    def flush(self) -> None:
        """Run every live node's driver loop; their messages go on the wire."""
        for node in self.nodes.values():
            if node.alive:
                node.handle_ready()
                self.wire.extend(node.take_outbox())
                self.checker.check_node(node)

    def take(
        self, kind: MessageType | None = None, frm: str | None = None, to: str | None = None
    ) -> list[Message]:
        """Remove and return the messages on the wire that match (after a flush)."""
        self.flush()
        taken: list[Message] = []
        kept: list[tuple[Message, Any]] = []
        for item in self.wire:
            msg = item[0]
            match = (
                (kind is None or msg.type == kind)
                and (frm is None or msg.frm == frm)
                and (to is None or msg.to == to)
            )
            if match:
                taken.append(msg)
            else:
                kept.append(item)
        self.wire = kept
        return taken

    def deliver(self, msg: Message, data: Any = None) -> None:
        """Step one message into its target (if the link is up and the target alive)."""
        target = self.nodes.get(msg.to)
        sender = self.nodes[msg.frm]
        up = target is not None and target.alive and (msg.frm, msg.to) not in self.cut
        arriving = self.intercept(msg) if up else None
        if msg.type == MessageType.SNAPSHOT and sender.alive:
            sender.raw.report_snapshot(msg.to, arriving is not None)
        if arriving is None:
            return
        assert target is not None
        if arriving.type == MessageType.SNAPSHOT:
            assert arriving.snapshot is not None
            if data is None:  # taken off the wire by a test: the sender still has it
                data = sender.snapshot_data(arriving.snapshot.index)
            target.receive_snapshot_data(arriving.snapshot.index, data)
        target.raw.step(arriving)
        self.checker.check_node(target)

    def stabilize(self, *, notices: bool = True) -> int:
        """Deliver until no node has anything to say; returns the messages delivered.
        ``notices=False``: the commit-notice timers never fall due meanwhile."""
        delivered = 0
        for _ in range(MAX_ROUNDS):
            self.flush()
            if not self.wire and not (notices and self.fire_commit_notices()):
                return delivered
            batch, self.wire = self.wire, []
            for msg, data in batch:
                self.deliver(msg, data)
                delivered += 1
        raise AssertionError(f"the cluster did not settle within {MAX_ROUNDS} rounds")

    def fire_commit_notices(self) -> bool:
        """What the driver's commit-notice timer does once the delay passed: every live
        leader with a notice pending flushes it (onto the wire); False when none had one."""
        fired = False
        for node in self.nodes.values():
            if node.alive and node.raw.commit_notice_pending():
                node.raw.flush_commit_notices()
                fired = True
        if fired:
            self.flush()
        return fired

    def tick(self, ticks: int = 1, nodes: Iterable[str] | None = None) -> None:
        """Tick (each live node of) ``nodes`` ``ticks`` times, stabilizing after each."""
        chosen = list(nodes) if nodes is not None else list(self.nodes)
        for _ in range(ticks):
            for node_id in chosen:
                if self.nodes[node_id].alive:
                    self.nodes[node_id].raw.tick()
            self.stabilize()

    def tick_until(
        self, done: Callable[[], bool], *, nodes: Iterable[str] | None = None, limit: int = 200
    ) -> int:
        """Tick until ``done()``; returns the ticks it took (fails after ``limit``)."""
        chosen = list(nodes) if nodes is not None else None
        for ticks in range(limit):
            if done():
                return ticks
            self.tick(1, chosen)
        raise AssertionError(f"condition not reached within {limit} ticks")

    # ------------------------------------------------------------------ scenarios
    def elect(self, node_id: str) -> None:
        """Make ``node_id`` campaign and deliver until it has won (or the test fails)."""
        self.raw(node_id).campaign()
        self.stabilize()
        if self.raw(node_id).role != Role.LEADER:
            raise AssertionError(f"{node_id} did not win: {self.raw(node_id).status()}")

    def put(self, node_id: str, key: str, value: str) -> int:
        """Propose a put on ``node_id`` and deliver; returns the entry's index."""
        index = self.raw(node_id).propose(encode_command({"op": "put", "key": key, "value": value}))
        self.stabilize()
        return index

    def isolate(self, node_id: str) -> None:
        """Cut ``node_id`` off from everyone, both ways."""
        for other in self.nodes:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        """Every link up, nothing intercepted."""
        self.cut.clear()
        self.intercept = lambda m: m

    def crash(self, node_id: str) -> None:
        """Crash a node (what is not on disk is lost)."""
        self.nodes[node_id].crash()

    def restart(self, node_id: str) -> None:
        """Start a crashed node from its disk."""
        self.nodes[node_id].start()
