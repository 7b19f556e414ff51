"""The stored layout of a competing group's pending deliveries (runs), checked on its own:
random fetches, acks, naks and redeliveries, each change's ops applied to a sorted map of
keys the way ``kv.txn`` applies them (refusing, as the core does, a txn that puts a key
it also deletes); after every change the records read back to exactly the deliveries the
leader holds, and no record holds more than PUBSUB_PENDING_RUN_MAX."""

from __future__ import annotations

import random
from typing import Any

from aspen_pubsub import keys, limits
from aspen_pubsub import pending as runs
from aspen_pubsub.model import pack

TOPIC, GROUP = "t", "g"


def _apply(stored: dict[bytes, bytes], ops: list[dict[str, Any]]) -> None:
    """Apply txn ``ops`` to ``stored``, refusing a put inside a delete of the same txn."""
    puts = [op["put"]["key"] for op in ops if "put" in op]
    spans = [
        (op["delete"]["key"], op["delete"].get("end") or op["delete"]["key"] + b"\0")
        for op in ops
        if "delete" in op
    ]
    for key in puts:
        assert not any(a <= key < b for a, b in spans), f"{key!r} put and deleted"
    for a, b in spans:
        for key in [k for k in stored if a <= k < b]:
            del stored[key]
    for op in ops:
        if "put" in op:
            value = op["put"]["value"]
            stored[op["put"]["key"]] = value if isinstance(value, bytes) else pack(value)


def test_runs_read_back_to_the_deliveries_after_every_change() -> None:
    rng = random.Random(7)
    stored: dict[bytes, bytes] = {}
    entries: runs.Entries = {}
    state: runs.Runs = {}
    cursor = {0: 0, 1: 0}
    for step in range(250):
        changed: set[tuple[int, int]] = set()
        action = rng.random()
        if action < 0.35:  # a fetch: consecutive new deliveries of one partition
            partition = rng.randrange(2)
            for _ in range(rng.randrange(1, 400)):
                position = (partition, cursor[partition])
                entries[position] = {"c": "w", "n": 1, "dl": step}
                changed.add(position)
                cursor[partition] += 1
        elif entries:
            held = sorted(entries)
            start = rng.randrange(len(held))
            chosen = held[start : start + rng.randrange(1, 300)]
            for position in chosen:
                if action < 0.75:  # acked
                    del entries[position]
                else:  # nak'd or redelivered: a new entry
                    entry = entries[position]
                    entries[position] = {"c": "v", "n": entry["n"] + 1, "dl": step}
                changed.add(position)
        ops, state = runs.writes(TOPIC, GROUP, entries, state, changed)
        _apply(stored, ops)
        prefix = keys.pending_prefix(TOPIC, GROUP)
        kvs = [{"key": k, "value": v} for k, v in sorted(stored.items()) if k.startswith(prefix)]
        loaded, loaded_runs = runs.load(kvs)
        assert loaded == entries, f"step {step}"
        assert loaded_runs == state
        longest = max((last - first + 1 for (_, first), last in state.items()), default=0)
        assert longest <= limits.PUBSUB_PENDING_RUN_MAX
    assert len(stored) < len(entries) or not entries  # runs: fewer records than deliveries
