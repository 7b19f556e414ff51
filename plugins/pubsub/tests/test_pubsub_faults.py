"""aspen-pubsub under faults on a real 3-node cluster: publishers, competing consumers and
partitioned-group members run while the leader is killed with SIGKILL and restarted, a
consumer dies holding un-acked messages and a member process is killed with SIGKILL (no
leave) and comes back with its static instance id. Every acknowledged publish reaches both
groups at least once, no offset is given twice, each partition keeps its order, and the
ownership log (the member processes' own logs, on one monotonic clock) never shows two
owners of a partition at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen.errors import AspenError
from aspen.testing import LocalCluster, local_cluster, wait_for

pytestmark = [pytest.mark.slow]

TOPIC, GROUP, KAFKA = "faults", "g", "kg"
#: The partitioned group's member, run as a process of its own (killed with SIGKILL).
MEMBER = Path(__file__).parent / "member_support" / "pubsub_member.py"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster with aspen-pubsub, for this module's fault test."""
    with local_cluster(tmp_path_factory.mktemp("pubsub-faults"), 3, plugins=["pubsub"]) as c:
        c.leader_index()
        yield c


class _Run:
    """What the publishers and consumers saw (shared between threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stop_publishing = threading.Event()
        self.stop_consuming = threading.Event()
        #: publisher → [(sequence, partition, offset)] of acknowledged publishes, in order
        self.acked: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        #: (partition, offset) → the payloads delivered there
        self.delivered: dict[tuple[int, int], set[bytes]] = defaultdict(set)
        #: what the partitioned group's members read: (partition, offset) → payloads
        self.read: dict[tuple[int, int], set[bytes]] = defaultdict(set)
        #: the ownership log: (monotonic time, partition, incarnation, "acquire" | "release");
        #: an incarnation is a member at one epoch (``m1@4``): each join is a new one
        self.ownership: list[tuple[float, int, str, str]] = []
        #: incarnations the group told they are fenced (a stale epoch, or removed)
        self.fenced: set[str] = set()
        #: (monotonic time it was sent, incarnation) of every commit the group accepted
        self.commits: list[tuple[float, str]] = []


def _publisher(cluster: LocalCluster, run: _Run, n: int) -> None:
    with cluster.client() as c:
        seq = 0
        while not run.stop_publishing.is_set():
            try:
                got = c.pubsub.publish(TOPIC, b"p%d-%d" % (n, seq), key=b"publisher-%d" % n)
            except (AspenError, OSError):
                seq += 1  # outcome unknown: not acknowledged, not checked
                continue
            with run.lock:
                run.acked[n].append((seq, got["partition"], got["offset"]))
            seq += 1


def _consumer(cluster: LocalCluster, run: _Run, name: str, dies: bool = False) -> None:
    with cluster.client() as c:
        while not run.stop_consuming.is_set():
            try:
                got = c.pubsub.fetch(TOPIC, GROUP, name, max=20, wait=0.5)
                with run.lock:
                    for m in got:
                        run.delivered[(m["partition"], m["offset"])].add(m["data"])
                if dies and got:
                    return  # gone with its messages un-acked: they come back after ack_wait
                if got:
                    c.pubsub.ack(TOPIC, GROUP, name, got)
            except (AspenError, OSError):
                continue  # leader gone or stale ack: the message comes back after ack_wait


class _Member:
    """A partitioned group member as its own process (``member_support/pubsub_member.py``),
    logging what it owns, reads and commits to ``log``."""

    def __init__(self, cluster: LocalCluster, instance: str, log: Path) -> None:
        self.log = log
        args = [cluster.endpoints, cluster.token, TOPIC, KAFKA, instance, str(log)]
        self.proc = subprocess.Popen([sys.executable, str(MEMBER), *args])

    def kill(self) -> None:
        """SIGKILL: it stops dead, no leave, no release."""
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM: it stops after its current step."""
        self.proc.terminate()
        self.proc.wait(30)


def _load_members(run: _Run, logs: list[Path]) -> None:
    """Fill ``run``'s ownership log, reads, commits and fenced incarnations from the member
    processes' logs (a line a SIGKILL cut short is not a step it took)."""
    with run.lock:
        run.read.clear()
        run.ownership.clear()
        run.commits.clear()
        run.fenced.clear()
        for path in logs:
            for text in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if line["kind"] == "own":
                    step = (line["at"], line["partition"], line["incarnation"], line["what"])
                    run.ownership.append(step)
                elif line["kind"] == "read":
                    position = (line["partition"], line["offset"])
                    run.read[position].add(line["data"].encode("latin-1"))
                elif line["kind"] == "commit":
                    run.commits.append((line["at"], line["incarnation"]))
                else:
                    run.fenced.add(line["incarnation"])


def _never_two_owners(run: _Run) -> None:
    """Per partition, the ownership log alternates acquire / release of one incarnation,
    except for a takeover: an incarnation the group fenced (told so, or superseded by a
    later epoch of its static instance id, as the rejoin of a killed member is) may still
    believe it owns a partition its successor acquired. The fencing is what makes that
    safe, so check it: the old owner made no commit the group accepted once the new one
    had acquired the partition."""
    superseded = set()
    epochs: dict[str, set[int]] = defaultdict(set)
    for _, _, incarnation, _ in run.ownership:
        member, epoch = incarnation.split("@")
        epochs[member].add(int(epoch))
    for member, seen in epochs.items():
        superseded |= {f"{member}@{e}" for e in seen if e < max(seen)}
    holder: dict[int, str | None] = defaultdict(lambda: None)
    taken: dict[str, float] = {}  # displaced incarnation → when it was first displaced
    for at, partition, incarnation, what in sorted(run.ownership):
        owner = holder[partition]
        if what == "acquire":
            if owner is not None:
                assert owner in run.fenced | superseded, (
                    f"p{partition}: {incarnation} while {owner} (never fenced)"
                )
                taken.setdefault(owner, at)
            holder[partition] = incarnation
        elif owner == incarnation:
            holder[partition] = None
        else:  # the late release of a displaced incarnation
            assert incarnation in taken, f"p{partition}: {incarnation} released it, {owner} held"
    for sent, incarnation in run.commits:
        assert sent < taken.get(incarnation, sent + 1), f"{incarnation} committed once fenced"


def test_acknowledged_publishes_survive_a_leader_kill(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    with cluster.client() as c:
        c.pubsub.create_topic(TOPIC, partitions=3)
        c.pubsub.create_group(TOPIC, GROUP, ack_wait=2.0, max_deliver=1000)
        c.pubsub.create_group(TOPIC, KAFKA, mode="partitioned", session_timeout=3.0)
    run = _Run()
    logs = [tmp_path / "m0.log", tmp_path / "m1.log"]
    threads = [threading.Thread(target=_publisher, args=(cluster, run, n)) for n in range(3)]
    threads += [threading.Thread(target=_consumer, args=(cluster, run, f"c{i}")) for i in range(2)]
    threads.append(threading.Thread(target=_consumer, args=(cluster, run, "doomed", True)))
    for t in threads:
        t.start()
    members = [_Member(cluster, "m0", logs[0]), _Member(cluster, "m1", logs[1])]
    try:
        wait_for(lambda: sum(map(len, run.acked.values())) >= 100, timeout=60)
        leader = cluster.leader_index()
        cluster.kill(leader)
        wait_for(
            lambda: cluster.leader_index(among=[i for i in (1, 2, 3) if i != leader]),
            timeout=30,
        )
        count = sum(map(len, run.acked.values()))
        wait_for(lambda: sum(map(len, run.acked.values())) >= count + 100, timeout=60)
        cluster.restart(leader)
        members[1].kill()  # member m1 is killed (no leave) and comes back with its instance id
        members.append(_Member(cluster, "m1", logs[1]))
        count = sum(map(len, run.acked.values()))
        wait_for(lambda: sum(map(len, run.acked.values())) >= count + 50, timeout=60)
    finally:
        run.stop_publishing.set()
    acked = {(p, o): b"p%d-%d" % (n, s) for n, rows in run.acked.items() for s, p, o in rows}

    def all_delivered() -> bool:
        _load_members(run, logs)
        with run.lock:
            return all(pos in run.delivered and pos in run.read for pos in acked)

    try:
        wait_for(all_delivered, timeout=60, message="every acknowledged publish is delivered")
    finally:
        run.stop_consuming.set()
        for t in threads:
            t.join(30)
        for member in members:
            if member.proc.poll() is None:
                member.stop()
    _load_members(run, logs)
    for pos, data in acked.items():
        assert run.delivered[pos] == {data}, f"{pos}: offset given to two messages"
        assert run.read[pos] == {data}
    _never_two_owners(run)
    assert {i.split("@")[0] for _, _, i, _ in run.ownership} == {"m0", "m1"}
    for rows in run.acked.values():  # one key per publisher: its offsets rise in its order
        offsets = [o for _, _, o in rows]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    with cluster.client() as c:
        stats = c.pubsub.stats(TOPIC, GROUP)
        for part in stats["partition_offsets"]:  # the log itself: dense, in order, as acked
            log, offset = [], part["first_offset"]
            while offset < part["end_offset"]:
                page = c.pubsub.read(TOPIC, part["partition"], offset, limit=500)
                log += page["messages"]
                offset = page["next"]
            assert [m["offset"] for m in log] == list(range(part["first_offset"], offset))
            for m in log:
                wanted = acked.get((m["partition"], m["offset"]))
                assert wanted is None or m["data"] == wanted
        assert stats["group"]["redeliveries"] > 0  # the doomed consumer's came back
