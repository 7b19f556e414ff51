"""Simulated clients: put, compare-and-swap (through the log) and get (through ReadIndex),
recorded as a history for :func:`aspen.testing.linearizability.check_kv_history`.

Each client has at most one operation outstanding. Outcomes:

* ``ok`` True: the proposer applied our entry at its index (or served the read).
* ``ok`` False: definitely not applied: the proposal was refused, or another entry was
  applied at its index on the proposing node (ours can then never commit).
* ``ok`` None: unknown: the proposing node crashed, or the client gave up waiting.

Times are a global event counter, so real-time order between operations is exact.
"""

from __future__ import annotations

import random
from typing import Any

from aspen.raft import Entry, NotLeaderError, ProposalDroppedError
from aspen.testing.raftsim_node import SimNode, encode_command

__all__ = ["SimClients"]

_Record = dict[str, Any]


class SimClients:
    """A few clients issuing KV operations against whichever node they pick."""

    def __init__(
        self,
        rng: random.Random,
        nodes: dict[str, SimNode],
        *,
        clients: int = 3,
        keys: tuple[str, ...] = ("x", "y"),
        op_rate: float = 0.3,
        timeout: int = 60,
    ) -> None:
        self.rng = rng
        self.nodes = nodes
        self.keys = keys
        self.op_rate = op_rate
        self.timeout = timeout
        self.history: list[_Record] = []
        self._clock = 0
        self._busy: dict[int, tuple[_Record, int]] = {}  # client -> (record, deadline)
        self._hint: dict[int, str | None] = dict.fromkeys(range(1, clients + 1))
        self._counter = 0
        self.completed = 0

    def _tick_clock(self) -> float:
        self._clock += 1
        return float(self._clock)

    def _finish(self, client: int, record: _Record, ok: bool | None, result: Any = None) -> None:
        if self._busy.get(client, (None,))[0] is not record:
            return  # already timed out (or finished)
        del self._busy[client]
        record["ok"] = ok
        if ok is not None:
            record["return"] = self._tick_clock()
            record["result"] = result
            self.completed += ok is True

    def step(self, now: int) -> None:
        """Time out stale operations and let idle clients start new ones."""
        for client, (record, deadline) in list(self._busy.items()):
            if now >= deadline:
                self._finish(client, record, None)
        for client in self._hint:
            if client not in self._busy and self.rng.random() < self.op_rate:
                self._start(client, now)

    def finish_all(self) -> None:
        """The run is over: whatever is still outstanding has an unknown outcome."""
        for client, (record, _) in list(self._busy.items()):
            self._finish(client, record, None)

    # ------------------------------------------------------------------ operations
    def _pick_node(self, client: int) -> SimNode | None:
        hint = self._hint[client]
        if hint is not None and hint in self.nodes and self.rng.random() < 0.8:
            node = self.nodes[hint]
        else:
            node = self.nodes[self.rng.choice(sorted(self.nodes))]
        return node if node.alive else None

    def _start(self, client: int, now: int) -> None:
        node = self._pick_node(client)
        if node is None:
            return
        self._counter += 1
        key = self.rng.choice(self.keys)
        roll = self.rng.random()
        record: _Record = {"client": client, "key": key, "return": None, "ok": None, "result": None}
        self.history.append(record)
        self._busy[client] = (record, now + self.timeout)
        if roll < 0.35:
            record.update(op="get", call=self._tick_clock())
            self._read(client, node, record)
            return
        value = f"c{client}.{self._counter}"
        if roll < 0.7:
            record.update(op="put", value=value, call=self._tick_clock())
            command = {"op": "put", "key": key, "value": value}
        else:
            expected = self._guess(key)
            record.update(op="cas", expected=expected, new=value, call=self._tick_clock())
            command = {"op": "cas", "key": key, "expected": expected, "new": value}  # type: ignore[dict-item]
        self._write(client, node, record, encode_command(command))

    def _guess(self, key: str) -> str | None:
        """A plausible current value: the last one read or written on ``key``, or absent."""
        for record in reversed(self.history[-20:]):
            if record["key"] == key and record["ok"]:
                if record["op"] == "get":
                    return record["result"]
                return record.get("value") or record.get("new")
        return None

    def _write(self, client: int, node: SimNode, record: _Record, data: bytes) -> None:
        try:
            index = node.raw.propose(data)
        except NotLeaderError as exc:
            self._hint[client] = exc.leader_hint
            self._finish(client, record, False)
            return
        except ProposalDroppedError:
            self._finish(client, record, False)
            return

        def applied(entry: Entry | None, result: Any) -> None:
            """The outcome of our proposal, as seen by the node that proposed it."""
            if entry is None:
                self._finish(client, record, None)  # the proposer crashed
            elif entry.data == data:
                self._finish(client, record, True, result)
            else:
                self._finish(client, record, False)  # another entry won the index

        previous = node.apply_waiters.get(index)
        if previous is not None:
            previous(None, None)  # its entry was replaced in this node's log: unknown
        node.apply_waiters[index] = applied

    def _read(self, client: int, node: SimNode, record: _Record) -> None:
        context = f"{client}:{self._counter}".encode()
        if not node.raw.read_index(context):
            self._hint[client] = None
            self._finish(client, record, False)
            return
        key = record["key"]

        def serve() -> None:
            """Applied up to the read index: read locally."""
            self._finish(client, record, True, node.kv.get(key))

        def answered(index: int) -> None:
            """The leader confirmed the read at ``index``."""
            node.when_applied(index, serve)

        node.read_waiters[context] = answered
        self._hint[client] = node.raw.leader
