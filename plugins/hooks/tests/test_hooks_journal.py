"""aspen-hooks on the core's event journal, on a real 3-node cluster of node processes: a
handler on ``forge.push:acme/*`` runs once per published event, from its durable journal
position, also across a SIGKILL of the node running it (the leader) and the failover that
follows; failures are dead-lettered and announced as ``hooks.dead_letter`` events.

Events are published the way a plugin publishes them: a ``publish`` op inside ``kv.txn``,
in the same transaction as the KV change it reports (``node.events.op`` builds that op).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aspen.errors import AspenError
from aspen.testing import LocalCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("hooks")]


def _push(client: Any, repo: str, n: int) -> int:
    """What a forge does at a push: move the ref and publish ``forge.push``, atomically;
    returns the event's journal position."""
    result = client.call(
        "kv.txn",
        {
            "success": [
                {"put": {"key": f"/_aspen/forge/refs/{repo}/main", "value": f"c{n}".encode()}},
                {"publish": {"name": "forge.push", "subject": repo, "payload": {"n": n}}},
            ]
        },
    )
    return int(result["responses"][1]["publish"]["position"])


def _runs(path: Path) -> list[tuple[str, str, str]]:
    """(position, subject, idempotency key) of every run recorded."""
    if not path.exists():
        return []
    return [tuple(line.split(" ", 2)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def _runner_index(c: LocalCluster, client: Any) -> int:
    def found() -> int | None:
        runner = client.call("hooks.status")["runner"]
        for i in (1, 2, 3):
            if runner is not None and runner["endpoint"] == c.client_endpoint(i):
                return i
        return None

    return wait_for(found, timeout=30)


def _saved_position(client: Any, name: str) -> int:
    import msgpack

    found = client.kv.get(f"/_aspen/hooks/state/{name}")
    return 0 if found is None else int(msgpack.unpackb(found.value).get("position", 0))


def test_a_journal_hook_runs_once_per_event_across_a_runner_kill(cluster, tmp_path) -> None:
    out = tmp_path / "ci.log"
    record = (
        f'printf "%s %s %s\\n" "$ASPEN_HOOK_POSITION" "$ASPEN_HOOK_SUBJECT" '
        f'"$ASPEN_HOOK_IDEMPOTENCY_KEY" >> {out}'
    )
    with cluster.client() as client:
        client.call(
            "hooks.add",
            {"name": "ci", "on": "forge.push:acme/*", "kind": "shell",
             "target": {"command": record}},
        )  # fmt: skip
        before = [_push(client, "acme/widgets", 0), _push(client, "other/thing", 1)]
        wait_for(lambda: len(_runs(out)) >= 1, timeout=30)
        runner = _runner_index(cluster, client)
        # the run is recorded and its position saved: a kill now must not run it again
        wait_for(lambda: _saved_position(client, "ci") > before[0], timeout=30)
        cluster.kill(runner)
        positions = []
        for n in range(2, 7):  # through the failover: retried until a new leader takes them
            positions.append(wait_for(lambda n=n: _try_push(client, f"acme/r{n}", n), timeout=30))
        cluster.restart(runner)
        wait_for(lambda: len(_runs(out)) >= 6, timeout=60)
        runs = _runs(out)
        assert [r[0] for r in runs] == [str(p) for p in (before[0], *positions)]
        assert [r[1] for r in runs] == ["acme/widgets", *(f"acme/r{n}" for n in range(2, 7))]
        assert len({r[2] for r in runs}) == len(runs)  # one idempotency key per event
        assert _runner_index(cluster, client) in (1, 2, 3)  # a runner runs again
        # positions are unique and rise across the leader change, gap-free in the journal
        page = client.events.read(0)
        kept = [e["position"] for e in page["events"]]
        assert kept == list(range(kept[0], kept[0] + len(kept)))
        revisions = [e["revision"] for e in page["events"]]
        assert revisions == sorted(set(revisions))


def _try_push(client: Any, repo: str, n: int) -> int | None:
    try:
        return _push(client, repo, n)
    except AspenError:
        return None  # no leader yet (or the outcome is unknown: the ref was not moved)


def test_a_failing_journal_hook_is_dead_lettered_and_announced(cluster, tmp_path) -> None:
    with cluster.client() as client:
        client.call(
            "hooks.add",
            {"name": "broken", "on": "deploy.requested", "kind": "shell",
             "target": {"command": "exit 3"}, "retries": 0},
        )  # fmt: skip
        client.events.publish("deploy.requested", "web", {"version": "1.2"})
        page = wait_for(
            lambda: client.events.read(0, match="hooks.dead_letter:broken")["events"] or None,
            timeout=30,
        )
        announced = page[0]["payload"]
        assert announced["handler"] == "broken" and announced["event"] == "deploy.requested"
        assert "exit status 3" in announced["error"]
        entries = client.call("hooks.dlq", {"name": "broken"})["entries"]
        assert [e["id"] for e in entries] == [announced["id"]]
