"""The simulated network: seeded drops, delays (hence reordering), duplicates and
partitions, in logical steps. Snapshot data travels beside its SNAPSHOT message."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aspen.raft import Message

__all__ = ["Delivery", "SimNetwork"]


@dataclass(order=True, slots=True)
class Delivery:
    """A message on its way: due at step ``due``; ``lost`` ones only report the loss."""

    due: int
    tiebreak: float
    seq: int
    msg: Message = field(compare=False)
    data: Any = field(compare=False, default=None)
    lost: bool = field(compare=False, default=False)


class SimNetwork:
    """Messages between node ids, under the faults currently configured."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.max_delay = 1
        self.cut: set[tuple[str, str]] = set()  # directed links that are down
        self._queue: list[Delivery] = []
        self._seq = 0
        self.sent = self.delivered = self.dropped = self.duplicated = 0

    def heal(self) -> None:
        """No more faults: every link up, nothing dropped, delayed or duplicated."""
        self.drop_rate = self.duplicate_rate = 0.0
        self.max_delay = 1
        self.cut.clear()

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link between different groups (both ways)."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in sorted(a):
                    for y in sorted(b):
                        self.cut.add((x, y))
                        self.cut.add((y, x))

    def linked(self, frm: str, to: str) -> bool:
        """Whether ``frm`` can reach ``to`` right now."""
        return (frm, to) not in self.cut

    def send(self, msg: Message, data: Any, now: int) -> None:
        """Put a message on the wire (it may be dropped, duplicated and delayed)."""
        self.sent += 1
        rng = self.rng
        lost = rng.random() < self.drop_rate
        copies = 2 if not lost and rng.random() < self.duplicate_rate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            due = now + rng.randint(1, self.max_delay)
            self._seq += 1
            heapq.heappush(self._queue, Delivery(due, rng.random(), self._seq, msg, data, lost))

    def due(self, now: int) -> list[Delivery]:
        """Everything due by ``now``, in (randomised) delivery order."""
        out = []
        queue = self._queue
        while queue and queue[0].due <= now:
            out.append(heapq.heappop(queue))
        return out

    def pending(self) -> int:
        """Messages still on the wire."""
        return len(self._queue)
