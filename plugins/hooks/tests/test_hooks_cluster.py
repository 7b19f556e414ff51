"""aspen-hooks on a real 3-node cluster of `aspen node start` processes: one runner per
cluster, no event lost when the runner's node is killed with SIGKILL, and a stuck handler
that does not hold up the others."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from aspen.errors import AspenError
from aspen.testing import LocalCluster, wait_for

# `cluster` (the aspen.testing fixture): three node processes, the core and aspen-hooks only.
pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("hooks")]


def _runner_index(c: LocalCluster, client: Any) -> int:
    """The index (1..3) of the node that runs the handlers now."""

    def found() -> int | None:
        runner = client.call("hooks.status")["runner"]
        if runner is None:
            return None
        for i in (1, 2, 3):
            if runner["endpoint"] == c.client_endpoint(i):
                return i
        return None

    return wait_for(found, timeout=20)


def _seen(path: Path) -> dict[str, list[str]]:
    """Key → the idempotency keys of every run recorded for it."""
    runs: dict[str, list[str]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            idem, _, key = line.partition(" ")
            runs[key].append(idem)
    return runs


def _put_all(client: Any, keys: list[str], acked: list[str]) -> None:
    for key in keys:
        try:
            client.kv.put(key.encode(), b"order")
            acked.append(key)
        except AspenError:
            pass  # outcome unknown while the leader died; only acked puts are checked


def test_every_put_reaches_the_hook_across_a_runner_kill(cluster, tmp_path) -> None:
    out = tmp_path / "orders.log"
    leaders = tmp_path / "leaders.log"
    command = f'printf "%s %s\\n" "$ASPEN_HOOK_IDEMPOTENCY_KEY" "$ASPEN_HOOK_KEY" >> {out}'
    with cluster.client() as client:
        client.call(
            "hooks.add",
            {"name": "leaders", "on": "raft.leader_changed", "kind": "shell",
             "target": {"command": f'printf "%s\\n" "$ASPEN_HOOK_EVENT" >> {leaders}'}},
        )  # fmt: skip
        client.call(
            "hooks.add",
            {"name": "orders", "on": "kv.put:/orders/*", "kind": "shell",
             "target": {"command": command}, "timeout": 10},
        )  # fmt: skip

        # Without failures: exactly once.
        calm = [f"/orders/a{i:03d}" for i in range(200)]
        acked: list[str] = []
        _put_all(client, calm, acked)
        assert acked == calm
        wait_for(lambda: len(_seen(out)) >= 200, timeout=60)
        runs = _seen(out)
        assert all(len(runs[k]) == 1 for k in calm), "a run was repeated without a failure"

        # Kill the runner's node in the middle of 300 more puts, then bring it back.
        victim = _runner_index(cluster, client)
        stormy = [f"/orders/b{i:03d}" for i in range(300)]
        writer = threading.Thread(target=_put_all, args=(client, stormy, acked))
        writer.start()
        wait_for(lambda: len(acked) >= 260, timeout=60)
        cluster.kill(victim)
        writer.join(120)
        assert not writer.is_alive()
        cluster.restart(victim)
        new_runner = _runner_index(cluster, client)

        wait_for(lambda: set(acked) <= set(_seen(out)), timeout=90)
        runs = _seen(out)
        # Every acknowledged put ran at least once; a repeat carries the same idempotency
        # key (so a handler can drop it), and repeats are few: only around the failover.
        for key in acked:
            assert len(set(runs[key])) == 1, f"{key} ran with different idempotency keys"
        repeated = [k for k in acked if len(runs[k]) > 1]
        assert len(repeated) < 100, repeated
        assert all(k.startswith("/orders/b") for k in repeated)
        metrics = client.call("hooks.metrics", {"name": "orders"})
        assert metrics["dead_lettered"] == 0
        assert new_runner in (1, 2, 3)

        # The leader change reached the raft.leader_changed handler, from the journal.
        old_id = cluster.node_id(victim)

        def changed_away() -> list[dict]:
            if not leaders.exists():
                return []
            events = [json.loads(line) for line in leaders.read_text().splitlines()]
            return [e for e in events if e["previous"] == old_id and e["leader"] != old_id]

        event = wait_for(changed_away, timeout=30)[0]
        assert event["name"] == "raft.leader_changed" and event["term"] > 1


def test_a_stuck_handler_does_not_hold_up_others_or_writes(cluster, tmp_path) -> None:
    out = tmp_path / "fast.log"
    with cluster.client() as client:
        client.call(
            "hooks.add",
            {"name": "stuck", "on": "kv.put:/s/*", "kind": "shell",
             "target": {"command": "sleep 600"}, "timeout": 600},
        )  # fmt: skip
        client.call(
            "hooks.add",
            {"name": "fast", "on": "kv.put:/s/*", "kind": "shell",
             "target": {"command": f'echo "$ASPEN_HOOK_KEY" >> {out}'}},
        )  # fmt: skip
        for i in range(50):
            client.kv.put(f"/s/{i}".encode(), b"x")
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 50, timeout=30)
        stuck = client.call("hooks.metrics", {"name": "stuck"})
        assert stuck["in_flight"] in (0, 1) and stuck["succeeded"] == 0
        # (bench/hooks.py measures put latency with and without a stuck handler)
