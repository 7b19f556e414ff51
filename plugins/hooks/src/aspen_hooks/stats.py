"""A handler's progress and counters: kept by the runner in memory, saved with its cursor
in ``/_aspen/hooks/state/<name>``, shown by ``aspen hooks metrics``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aspen_hooks import limits

__all__ = ["HandlerState", "percentile"]


def percentile(samples: list[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (nearest rank) of ``samples``; ``None`` when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class HandlerState:
    """Cursor (last revision fully handled), counters, recent durations, lag reason.

    * ``succeeded``: events whose handler run succeeded;
    * ``failed``: failed runs (every attempt that failed);
    * ``retries``: runs after the first for an event;
    * ``dead_lettered``: events given up after the last retry;
    * ``lagged``: why the handler stopped (history compacted past its cursor), or ``""``.
    """

    cursor: int = 0
    #: Journal handlers: the next event journal position to read (0: not started, read
    #: from the first event after ``cursor``).
    position: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    lagged: str = ""
    durations: deque[float] = field(
        default_factory=lambda: deque(maxlen=limits.HOOKS_DURATION_SAMPLES)
    )

    def record(self, seconds: float) -> None:
        """Remember one run's duration."""
        self.durations.append(round(seconds, 6))

    def to_record(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "cursor": self.cursor,
            "position": self.position,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retries": self.retries,
            "dead_lettered": self.dead_lettered,
            "in_flight": self.in_flight,
            "lagged": self.lagged,
            "durations": list(self.durations),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> HandlerState:
        """Read the stored form (unknown fields ignored)."""
        state = cls(
            cursor=int(record.get("cursor", 0)),
            position=int(record.get("position", 0)),
            succeeded=int(record.get("succeeded", 0)),
            failed=int(record.get("failed", 0)),
            retries=int(record.get("retries", 0)),
            dead_lettered=int(record.get("dead_lettered", 0)),
            lagged=str(record.get("lagged", "")),
        )
        state.durations.extend(record.get("durations", ()))
        return state

    def metrics(self, name: str, store_revision: int) -> dict[str, Any]:
        """What ``hooks.metrics`` answers for this handler."""
        samples = list(self.durations)
        return {
            "name": name,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retries": self.retries,
            "dead_lettered": self.dead_lettered,
            "in_flight": self.in_flight,
            "p50_seconds": percentile(samples, 0.50),
            "p99_seconds": percentile(samples, 0.99),
            "cursor": self.cursor,
            "position": self.position,
            "lag": max(0, store_revision - self.cursor),
            "lagged": self.lagged,
        }
