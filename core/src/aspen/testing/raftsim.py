"""Deterministic Raft simulation: N ``RawNode``s, a faulty network, crashes, clients.

One run is a pure function of its arguments (everything random comes from
``random.Random(seed)``), so a failing seed replays exactly::

    uv run python -m aspen.testing.raftsim --seed 17 --nodes 3 --steps 300 --faults mixed

Each step: scheduled faults happen, clients act, every live node ticks, due messages are
delivered (``step``), and each live node runs its driver loop (persist, send, apply,
advance) — usually; sometimes a node leaves its ``Ready`` for later, so a crash can lose
unstable entries. Safety invariants (:mod:`aspen.testing.raftsim_checks`) are checked as
the nodes act and after every step. After ``heal_at`` all faults and membership changes
stop and every node restarts; then a leader must emerge and commit a proposal within
``LIVENESS_STEPS``, and every member must apply it before the run ends.

Fault kinds (``faults``): drop, duplicate, delay (reordering), partition, crash,
membership (add a learner, promote it, remove a voter), transfer (leadership transfer),
compaction (snapshots, so lagging followers are sent one), config (random flow-control
bounds, pre-vote and check-quorum off in some runs). ``"mixed"`` picks a random subset
per seed, ``"all"`` enables all, ``"none"`` none.

``lease=True`` runs every node with lease reads (``read_only="lease"``, check-quorum on)
and gives each node its own clock: a tick rate drawn from ``[1 / (1 + drift), 1]`` ticks
per step, so ``drift`` is the largest relative difference between two nodes' clocks
(by default the bound the nodes assume, ``Config.max_clock_drift``).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aspen.raft import (
    ConfChange,
    ConfChangeRefusedError,
    ConfChangeType,
    Config,
    MemoryStorage,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
    bootstrap,
)
from aspen.testing.raftsim_checks import InvariantChecker, SafetyViolation
from aspen.testing.raftsim_clients import SimClients
from aspen.testing.raftsim_net import SimNetwork
from aspen.testing.raftsim_node import SimNode, encode_command

__all__ = [
    "FAULT_KINDS",
    "LIVENESS_STEPS",
    "SimResult",
    "Simulation",
    "replay_command",
    "resolve_faults",
    "run_simulation",
]

FAULT_KINDS = (
    "drop",
    "duplicate",
    "delay",
    "partition",
    "crash",
    "membership",
    "transfer",
    "compaction",
    "config",
)
#: Steps after the faults heal within which a proposal must commit.
LIVENESS_STEPS = 80
#: Steps at the end reserved for healing, liveness and convergence.
HEAL_STEPS = 120
_ELECTION_TICK = 10
_HEARTBEAT_TICK = 2


def resolve_faults(faults: str | Iterable[str], seed: int) -> tuple[str, ...]:
    """``"mixed"``/``"all"``/``"none"``/comma list -> the fault kinds of this run."""
    if isinstance(faults, str):
        if faults == "all":
            return FAULT_KINDS
        if faults == "none":
            return ()
        if faults == "mixed":
            pick = random.Random(f"faults-{seed}")
            return tuple(k for k in FAULT_KINDS if pick.random() < 0.65)
        faults = [f for f in faults.split(",") if f]
    kinds = tuple(faults)
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
    return tuple(k for k in FAULT_KINDS if k in kinds)


def replay_command(seed: int, nodes: int, steps: int, faults: str | Iterable[str]) -> str:
    """The one-line command that replays a run."""
    spec = faults if isinstance(faults, str) else ",".join(faults) or "none"
    return (
        f"uv run python -m aspen.testing.raftsim --seed {seed} --nodes {nodes} "
        f"--steps {steps} --faults {spec}"
    )


@dataclass
class SimResult:
    """How a run went; ``error`` names the broken property and ``step`` when."""

    seed: int
    nodes: int
    steps: int
    faults: tuple[str, ...]
    replay: str
    ok: bool = True
    error: str | None = None
    step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One paragraph for a failing test."""
        verdict = "ok" if self.ok else f"FAILED at step {self.step}: {self.error}"
        kinds = ",".join(self.faults) or "no faults"
        return f"seed {self.seed} ({kinds}): {verdict}\n  replay: {self.replay}"


class Simulation:
    """One seeded run; :func:`run_simulation` is the usual entry point."""

    def __init__(
        self,
        seed: int,
        nodes: int,
        steps: int,
        faults: str | Iterable[str],
        *,
        lease: bool = False,
        drift: float | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.seed, self.n, self.steps = seed, nodes, steps
        self.kinds = resolve_faults(faults, seed)
        replay = replay_command(seed, nodes, steps, faults)
        self.result = SimResult(seed, nodes, steps, self.kinds, replay)
        self.rng = rng = random.Random(seed)
        #: Times the leaders' lazy commit notices (its own stream: the faults stay put).
        self.notice_rng = random.Random(seed + 0x6E6F74696365)
        self.heal_at = max(0, steps - HEAL_STEPS)
        self.checker = InvariantChecker()
        self.net = SimNetwork(rng)
        on = self.kinds.__contains__
        if on("drop"):
            self.net.drop_rate = rng.choice([0.02, 0.05, 0.1, 0.2])
        if on("duplicate"):
            self.net.duplicate_rate = rng.choice([0.02, 0.05, 0.1])
        if on("delay"):
            self.net.max_delay = rng.choice([2, 3, 5])
        self.crash_rate = rng.choice([0.01, 0.02, 0.05])
        self.vote_crash_rate = rng.choice([0.0, 0.2, 0.5])
        self.restart_span = rng.choice([(1, 4), (3, 40)])
        self.founders = [f"n{i}" for i in range(1, nodes + 1)]
        self.spare = f"n{nodes + 1}" if on("membership") else None
        snapshot_every = rng.choice([4, 10, 25]) if on("compaction") else 0
        keep = rng.choice([0, 2, 8])
        base = Config(id="-", election_tick=_ELECTION_TICK, heartbeat_tick=_HEARTBEAT_TICK)
        if on("config"):
            base = Config(
                id="-",
                election_tick=_ELECTION_TICK,
                heartbeat_tick=_HEARTBEAT_TICK,
                max_size_per_msg=rng.choice([1, 200, 1 << 20]),
                max_inflight_msgs=rng.choice([1, 2, 4, 256]),
                max_inflight_bytes=rng.choice([150, 1000, 1 << 23]),
                pre_vote=rng.random() < 0.7,
                check_quorum=rng.random() < 0.7,
            )
        if lease:
            base = dataclasses.replace(base, read_only="lease", check_quorum=True)
        drift = base.max_clock_drift if drift is None else drift
        #: node id -> (ticks per step, ticks owed); everyone ticks every step without lease
        self.clocks: dict[str, list[float]] = {}
        self.nodes: dict[str, SimNode] = {}
        for node_id in [*self.founders, *([self.spare] if self.spare else [])]:
            self.clocks[node_id] = [rng.uniform(1 / (1 + drift), 1.0) if lease else 1.0, 0.0]
            storage = MemoryStorage()
            if node_id != self.spare:
                bootstrap(storage, self.founders)
            config = Config(**{**_fields(base), "id": node_id})
            self.nodes[node_id] = SimNode(
                node_id,
                storage,
                config,
                random.Random(rng.random()),
                self.checker,
                snapshot_every=snapshot_every,
                keep_entries=keep,
            )
        self.clients = SimClients(rng, self.nodes)
        self.restart_at: dict[str, int] = {}
        self.decommissioned: set[str] = set()
        self.partition_until = -1
        self.membership = self._membership_plan() if on("membership") else []
        self.next_membership = rng.randint(5, max(6, self.heal_at // 3))
        self.marker_index: tuple[str, int] | None = None
        self.marker_applied_at: int | None = None
        self.marker_seq = 0
        self.marker_proposed_at = 0
        self.now = 0
        self.stats = {
            "crashes": 0,
            "partitions": 0,
            "transfers": 0,
            "conf_changes": 0,
            "snapshots": 0,
            "commit_notices": 0,
        }

    def _membership_plan(self) -> list[ConfChange]:
        assert self.spare is not None
        plan = [ConfChange(ConfChangeType.ADD_LEARNER, self.spare)]
        plan.append(ConfChange(ConfChangeType.PROMOTE, self.spare))
        if self.n >= 3 or self.rng.random() < 0.5:
            victim = self.rng.choice(self.founders)
            plan.append(ConfChange(ConfChangeType.REMOVE, victim))
        return plan

    # ------------------------------------------------------------------ the loop
    def run(self) -> SimResult:
        """Run every step; stop at the first violation."""
        result = self.result
        try:
            for now in range(self.steps):
                self.now = now
                self.step()
            self._final_checks()
        except SafetyViolation as exc:
            result.ok, result.error, result.step = False, str(exc), self.now
        except Exception as exc:  # a crash in Raft or the simulator is a failure too
            detail = "".join(traceback.format_exception(exc)[-3:]).strip()
            result.ok, result.error, result.step = False, f"exception: {detail}", self.now
        self.clients.finish_all()
        result.history = self.clients.history
        result.stats = {
            **self.stats,
            "elections": self.checker.elections,
            "max_term": max(self.checker.leaders, default=0),
            "committed": self.checker.max_committed,
            "ops_ok": self.clients.completed,
            "sent": self.net.sent,
            "delivered": self.net.delivered,
        }
        return result

    def step(self) -> None:
        """One logical step of the whole system."""
        now = self.now
        if now == self.heal_at:
            self._heal()
        if now < self.heal_at:
            self._inject_faults()
        self._restart_due()
        self._drive_membership(propose=now < self.heal_at)
        self._drive_liveness()
        self.clients.step(now)
        live = [n for n in self.nodes.values() if n.alive]
        for node in live:
            clock = self.clocks[node.id]
            clock[1] += clock[0]
            if clock[1] >= 1.0:
                clock[1] -= 1.0
                node.raw.tick()
            self.checker.check_node(node)
        for delivery in self.net.due(now):
            self._deliver(delivery)
        for node in live:
            # the driver's commit-notice timer: falls due after a random number of steps
            if node.alive and node.raw.commit_notice_pending() and self.notice_rng.random() < 0.3:
                node.raw.flush_commit_notices()
                self.stats["commit_notices"] += 1
        for node in live:
            if node.alive and (now >= self.heal_at or self.rng.random() < 0.9):
                node.handle_ready()
                self._send_outbox(node)
        for node in live:
            if node.alive:
                self.checker.check_node(node)

    def _deliver(self, delivery: Any) -> None:
        msg = delivery.msg
        sender = self.nodes.get(msg.frm)
        target = self.nodes.get(msg.to)
        arrives = (
            not delivery.lost
            and target is not None
            and target.alive
            and self.net.linked(msg.frm, msg.to)
        )
        if msg.type == MessageType.SNAPSHOT:
            if arrives:
                assert target is not None
                target.receive_snapshot_data(msg.snapshot.index, delivery.data)
                self.stats["snapshots"] += 1
            if sender is not None and sender.alive:
                sender.raw.report_snapshot(msg.to, arrives)
        if not arrives:
            self.net.dropped += 1
            if sender is not None and sender.alive and self.rng.random() < 0.1:
                sender.raw.report_unreachable(msg.to)
            return
        assert target is not None
        self.net.delivered += 1
        target.raw.step(msg)
        self.checker.check_node(target)

    # ------------------------------------------------------------------ faults
    def _inject_faults(self) -> None:
        rng, on = self.rng, self.kinds.__contains__
        if on("partition") and self.now >= self.partition_until and rng.random() < 0.03:
            self.net.cut.clear()
            ids = sorted(self.nodes)
            rng.shuffle(ids)
            kind = rng.random()
            if kind < 0.4:
                self.net.partition([ids[:1], ids[1:]])
            elif kind < 0.8:
                cut = rng.randint(1, max(1, len(ids) // 2))
                self.net.partition([ids[:cut], ids[cut:]])
            else:
                for _ in range(rng.randint(1, 3)):
                    a, b = rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
                    self.net.cut.add((a, b))
            self.partition_until = self.now + rng.randint(10, 60)
            self.stats["partitions"] += 1
        elif self.now == self.partition_until:
            self.net.cut.clear()
        if on("crash") and rng.random() < self.crash_rate:
            alive = [n for n in self.nodes.values() if n.alive]
            if self._may_crash():
                victim = rng.choice(alive)
                if rng.random() < 0.5:
                    victim.handle_ready()  # persisted, but crashes before sending
                self._crash(victim)
        if on("transfer") and rng.random() < 0.01:
            leader = self._leader()
            if leader is not None:
                voters = [v for v in leader.raw.status().conf.voters if v != leader.id]
                if voters:
                    try:
                        leader.raw.transfer_leader(rng.choice(voters))
                        self.stats["transfers"] += 1
                    except (NotLeaderError, ValueError):
                        pass

    def _may_crash(self) -> bool:
        down = sum(1 for n in self.nodes.values() if not n.alive)
        return down < max(1, len(self.nodes) // 2)

    def _crash(self, victim: SimNode) -> None:
        victim.crash()
        low, high = self.restart_span
        self.restart_at[victim.id] = self.now + self.rng.randint(low, high)
        self.stats["crashes"] += 1

    def _send_outbox(self, node: SimNode) -> None:
        """Hand a node's messages to the network; maybe crash it right after it voted."""
        out = node.take_outbox()
        for msg, data in out:
            self.net.send(msg, data, self.now)
        if (
            self.now < self.heal_at
            and "crash" in self.kinds
            and any(m.type == MessageType.VOTE_RESP and not m.reject for m, _ in out)
            and self.rng.random() < self.vote_crash_rate
            and self._may_crash()
        ):
            self._crash(node)  # its vote must survive: it may be asked again in this term

    def _restart_due(self) -> None:
        for node_id, when in list(self.restart_at.items()):
            if self.now >= when:
                del self.restart_at[node_id]
                self.nodes[node_id].start()

    def _heal(self) -> None:
        self.net.heal()
        self.partition_until = -1
        for node_id in list(self.restart_at):
            self.restart_at[node_id] = self.now

    # ------------------------------------------------------------------ membership
    def _leader(self) -> SimNode | None:
        """The live leader with the highest term, if any."""
        leaders = [n for n in self.nodes.values() if n.alive and n.raw.role == Role.LEADER]
        return max(leaders, key=lambda n: n.raw.term, default=None)

    def _decommission(self, node_id: str) -> None:
        """An operator stops a removed node for good (it may not know it was removed)."""
        node = self.nodes[node_id]
        if node.alive:
            node.crash()
        self.restart_at.pop(node_id, None)
        self.decommissioned.add(node_id)

    def _drive_membership(self, *, propose: bool) -> None:
        if not self.membership or (propose and self.now < self.next_membership):
            return
        leader = self._leader()
        if leader is None:
            return
        change = self.membership[0]
        conf = leader.conf
        done = {
            ConfChangeType.ADD_LEARNER: change.node_id in conf.learners + conf.voters,
            ConfChangeType.PROMOTE: change.node_id in conf.voters,
            ConfChangeType.REMOVE: change.node_id not in conf.learners + conf.voters,
        }[change.type]
        if done:
            self.membership.pop(0)
            if change.type == ConfChangeType.REMOVE:
                self._decommission(change.node_id)
            self.next_membership = self.now + self.rng.randint(5, 40)
            return
        if not propose:
            return  # after the faults heal, only finish what is in flight
        if change.type == ConfChangeType.PROMOTE:
            progress = leader.raw.status().progress.get(change.node_id)
            if progress is None or progress.match < leader.raw.status().commit:
                return  # promote only a learner that has caught up
        try:
            leader.raw.propose_conf_change(change)
            self.stats["conf_changes"] += 1
        except (ConfChangeRefusedError, NotLeaderError, ProposalDroppedError):
            pass
        self.next_membership = self.now + 5

    # ------------------------------------------------------------------ liveness
    def _drive_liveness(self) -> None:
        if self.now < self.heal_at or self.marker_applied_at is not None:
            return
        if self.now >= self.heal_at + LIVENESS_STEPS:
            raise SafetyViolation(
                f"liveness: no proposal committed within {LIVENESS_STEPS} steps after the "
                f"faults healed at step {self.heal_at}"
            )
        if self.marker_index is not None and self.now - self.marker_proposed_at > 20:
            self.marker_index = None  # its proposer lost leadership (or was removed): retry
        if self.marker_index is not None or self.now % 5:
            return
        leader = self._leader()
        if leader is None:
            return
        self.marker_seq += 1
        data = encode_command({"op": "put", "key": "_marker", "value": str(self.marker_seq)})
        try:
            index = leader.raw.propose(data)
        except (NotLeaderError, ProposalDroppedError):
            return
        self.marker_index = (leader.id, index)
        self.marker_proposed_at = self.now

        def applied(entry: Any, result: Any) -> None:
            """The marker applied on its proposer (or another entry won its index)."""
            if entry is not None and entry.data == data:
                self.marker_index = (leader.id, index)
                self.marker_applied_at = self.now
            elif self.marker_index == (leader.id, index):
                self.marker_index = None  # lost: propose again

        leader.apply_waiters[index] = applied

    def _final_checks(self) -> None:
        if self.marker_applied_at is None or self.marker_index is None:
            if self.steps > self.heal_at + LIVENESS_STEPS:
                raise SafetyViolation("liveness: the marker proposal never committed")
            return
        leader = self._leader()
        if leader is None:
            raise SafetyViolation("liveness: no leader at the end of the run")
        _, index = self.marker_index
        members = leader.conf.voters + leader.conf.learners
        behind = [m for m in members if self.nodes[m].applied < index]
        if behind:
            raise SafetyViolation(
                f"convergence: members {behind} never applied index {index} after healing"
            )


def _fields(config: Config) -> dict[str, Any]:
    return {name: getattr(config, name) for name in Config.__dataclass_fields__}


def run_simulation(
    seed: int,
    nodes: int = 3,
    steps: int = 300,
    faults: str | Iterable[str] = "mixed",
    *,
    lease: bool = False,
    drift: float | None = None,
) -> SimResult:
    """Run one seeded simulation and return how it went (see the module docstring)."""
    return Simulation(seed, nodes, steps, faults, lease=lease, drift=drift).run()


def main(argv: list[str] | None = None) -> int:
    """Command line: replay one seed (or a range) and print the outcome."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, default=1, help="run seeds seed..seed+count-1")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--faults", default="mixed")
    parser.add_argument("--history", action="store_true", help="print the client history")
    parser.add_argument("--lease", action="store_true", help="lease reads, drifting clocks")
    parser.add_argument("--drift", type=float, default=None, help="clock drift (with --lease)")
    args = parser.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.count):
        result = run_simulation(
            seed, args.nodes, args.steps, args.faults, lease=args.lease, drift=args.drift
        )
        print(result.summary())
        print(f"  stats: {result.stats}")
        if args.history:
            for record in result.history:
                print(f"  {record}")
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
