"""The event journal on a real 3-node cluster of node processes: positions are unique,
dense and rising across leader changes (two leaders killed with SIGKILL while events are
published), every acknowledged event is in the journal exactly once, and every node holds
the same journal."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import aspen
from aspen.errors import AspenError
from aspen.testing import wait_for


def _publish_all(client: Any, n: int, acked: dict[str, int], stop: threading.Event) -> None:
    for i in range(n):
        if stop.is_set():
            return
        # no leader, or the outcome is unknown: only acknowledged events count
        with contextlib.suppress(AspenError):
            acked[f"e{i}"] = client.events.publish("test.tick", f"e{i}")["position"]


def test_positions_stay_unique_and_dense_across_leader_changes(cluster) -> None:
    acked: dict[str, int] = {}
    stop = threading.Event()
    with cluster.client() as client:
        writer = threading.Thread(target=_publish_all, args=(client, 600, acked, stop))
        writer.start()
        try:
            for round_ in (1, 2):
                wait_for(lambda r=round_: len(acked) >= 150 * r, timeout=60)
                victim = cluster.leader_index()
                cluster.kill(victim)
                wait_for(lambda r=round_: len(acked) >= 150 * r + 50, timeout=60)
                cluster.restart(victim)
        finally:
            writer.join(180)
            stop.set()
        assert not writer.is_alive()
        events = []
        page = client.events.read(0)
        while True:
            events += page["events"]
            if not page["more"]:
                break
            page = client.events.read(page["next"])
    positions = [e["position"] for e in events]
    assert positions == list(range(1, len(events) + 1))
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(set(revisions))  # one publish, one revision, rising
    by_subject = {}
    for e in events:
        assert e["subject"] not in by_subject, f"{e['subject']} is in the journal twice"
        by_subject[e["subject"]] = e["position"]
    for subject, position in acked.items():
        assert by_subject[subject] == position
    for i in (1, 2, 3):  # every node holds the same journal
        with aspen.connect(cluster.client_endpoint(i), token=cluster.token) as c:
            mine = c.events.read(0, limit=1000)
            assert mine["events"] == events and mine["end"] == len(events) + 1
