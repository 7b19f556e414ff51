"""Real multi-process clusters: failover under kill -9, a paused (partitioned) leader,
membership changes under load, every acknowledged write on every node, linearizable
histories."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import aspen
from aspen import limits
from aspen.client.txn import Op
from aspen.errors import AspenError, NotLeaderError, UnavailableError
from aspen.node.devcluster import PEER_PORT_OFFSET, node_command
from aspen.testing import LocalCluster, free_base_port, free_port, local_cluster, wait_for
from aspen.testing.faultproxy import FaultProxy
from aspen.testing.linearizability import HistoryRecorder, check_kv_history

pytestmark = pytest.mark.slow

#: Keys the workload writes and reads (few, so operations contend).
KEYS = [f"lin/{i}" for i in range(6)]


class Workload:
    """Concurrent clients doing put / get / cas on a few keys, recording a history."""

    def __init__(self, c: LocalCluster, clients: int = 4, seed: int = 7) -> None:
        self.cluster = c
        self.recorder = HistoryRecorder()
        self.acked: dict[str, bytes] = {}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n, random.Random(seed + n)), daemon=True)
            for n in range(clients)
        ]
        self.counter = 0
        self.lock = threading.Lock()

    def __enter__(self) -> Workload:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _next_value(self, n: int) -> bytes:
        with self.lock:
            self.counter += 1
            return f"c{n}-{self.counter}".encode()

    def _run(self, n: int, rng: random.Random) -> None:
        with self.cluster.client(timeout=5) as c:
            while not self.stop.is_set():
                key = rng.choice(KEYS)
                kind = rng.choice(("put", "put", "get", "cas"))
                if kind == "put":
                    value = self._next_value(n)
                    op = self.recorder.invoke(n, "put", key=key, value=value)
                    self._do(op, functools.partial(c.kv.put, key, value))
                elif kind == "get":
                    op = self.recorder.invoke(n, "get", key=key)
                    self._do(op, functools.partial(_get_value, c, key))
                else:
                    try:
                        current = c.kv.get(key, serializable=True)
                    except (AspenError, OSError):
                        continue  # the node we asked is gone or paused: pick again
                    expected = current.value if current else None
                    new = self._next_value(n)
                    op = self.recorder.invoke(n, "cas", key=key, expected=expected, new=new)
                    self._do(op, functools.partial(_cas, c, key, expected, new))

    @staticmethod
    def _do(op, action) -> None:
        try:
            result = action()
        except NotLeaderError:
            op.fail()  # refused before it was proposed
        except AspenError:
            op.unknown()
        except OSError:
            op.unknown()
        else:
            op.ok(result)


def _get_value(c, key: str) -> bytes | None:
    kv = c.kv.get(key)
    return kv.value if kv else None


def _cas(c, key: str, expected: bytes | None, new: bytes) -> bool:
    from aspen.client.txn import Compare, Op

    compare = Compare.version(key) == 0 if expected is None else Compare.value(key) == expected
    return c.kv.txn(compare=[compare], success=[Op.put(key, new)], failure=[]).succeeded


def _assert_linearizable(history: list[dict]) -> None:
    result = check_kv_history(history, timeout=60)
    assert result.ok is not False, result.explanation


def _assert_same_state_everywhere(c: LocalCluster) -> None:
    """Every live node converges to the same applied state (serializable reads per node)."""
    live = [i for i in range(1, c.nodes + 1) if c.procs[i - 1].poll() is None]

    def snapshot(i: int) -> dict[bytes, bytes]:
        with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as cl:
            return {kv.key: kv.value for kv in cl.kv.range(b"", serializable=True, limit=10_000)}

    def converged() -> bool:
        states = [snapshot(i) for i in live]
        return all(s == states[0] for s in states)

    wait_for(converged, timeout=30, interval=0.2)


@pytest.mark.with_installed_plugins
def test_dev_up_command_writes_env_and_stops_on_sigterm(tmp_path) -> None:
    data = tmp_path / "dev"
    base = free_base_port(3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aspen",
            "dev",
            "up",
            "--nodes",
            "3",
            "--data-dir",
            str(data),
            "--base-port",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        env_file = data / "env"
        wait_for(env_file.exists, timeout=90)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["ASPEN_ENDPOINT"] == ",".join(f"127.0.0.1:{base + i}" for i in (1, 2, 3))
        cli = subprocess.run(
            [sys.executable, "-m", "aspen", "--json", "cluster", "status"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        import json

        status = json.loads(cli.stdout)
        roles = sorted(m["role"] for m in status["members"])
        assert roles == ["follower", "follower", "leader"]
        assert status["leader"] in {m["id"] for m in status["members"]}
        put = subprocess.run(
            [sys.executable, "-m", "aspen", "kv", "put", "hello", "cluster"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert put.returncode == 0, put.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


@pytest.mark.parametrize("cluster", [3, 5], ids=["3-nodes", "5-nodes"], indirect=True)
def test_kill9_leader_during_writes_keeps_every_ack_and_history_linearizable(cluster) -> None:
    c = cluster
    with Workload(c) as work:
        wait_for(lambda: len(work.recorder) > 200, timeout=30)
        leader = c.leader_index()
        c.procs[leader - 1].send_signal(signal.SIGKILL)
        c.procs[leader - 1].wait(10)
        killed_at = time.monotonic()
        wait_for(
            lambda: any(
                e["ok"] and e["op"] == "put" and e["call"] > killed_at
                for e in work.recorder.history()
            ),
            timeout=30,
        )
        # restart the killed node from its data dir: it rejoins and catches up
        c.restart(leader)
        done = len(work.recorder)
        wait_for(lambda: len(work.recorder) > done + 200, timeout=30)
    _assert_linearizable(work.recorder.history())
    _assert_same_state_everywhere(c)


def test_paused_leader_is_replaced_and_rejoins_as_follower(cluster) -> None:
    c = cluster
    leader = c.leader_index()
    pid = c.procs[leader - 1].pid
    with Workload(c) as work:
        wait_for(lambda: len(work.recorder) > 100, timeout=30)
        os.kill(pid, signal.SIGSTOP)  # the old leader is cut off from everyone
        try:
            paused_at = time.monotonic()
            wait_for(
                lambda: any(e["ok"] and e["call"] > paused_at for e in work.recorder.history()),
                timeout=30,
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: len(work.recorder) > 400, timeout=60)
    roles = [m["role"] for m in _cluster_view(c)["members"]]
    assert roles.count("leader") == 1 and roles.count("follower") == 2
    _assert_linearizable(work.recorder.history())
    _assert_same_state_everywhere(c)


def test_membership_changes_under_load(cluster, tmp_path) -> None:
    c = cluster
    join_token = (c.node_dir(1) / "join-token").read_text().strip()
    with Workload(c) as work, c.client() as admin:
        wait_for(lambda: len(work.recorder) > 100, timeout=30)
        c.nodes = 4
        c._spawn(4, f"{join_token}@{c.peer_endpoint(1)}")
        c._wait_serving(4)

        def promoted() -> bool:
            status = admin.call("cluster.status")
            if status["conf"]["learners"]:
                try:
                    admin.call("cluster.promote", {"id": status["conf"]["learners"][0]})
                except AspenError:
                    return False
            return len(admin.call("cluster.status")["conf"]["voters"]) == 4

        wait_for(promoted, timeout=60, interval=0.3)
        victim = next(
            node_id
            for node_id in admin.call("cluster.status")["conf"]["voters"]
            if node_id != admin.call("cluster.status")["leader"]
        )
        wait_for(lambda: _try(lambda: admin.call("cluster.remove", {"id": victim})), timeout=30)
        wait_for(lambda: len(work.recorder) > 500, timeout=60)
    assert victim not in admin_status(c)["conf"]["voters"]
    _assert_linearizable(work.recorder.history())


def _cluster_view(c: LocalCluster) -> dict:
    """``aspen cluster status --json`` of the cluster, once it has settled."""
    import json

    env = {**os.environ, "ASPEN_ENDPOINT": c.client_endpoint(1), "ASPEN_TOKEN": c.token}

    def settled() -> dict | None:
        out = subprocess.run(
            [sys.executable, "-m", "aspen", "--json", "cluster", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        view = json.loads(out.stdout) if out.returncode == 0 else None
        roles = [m["role"] for m in view["members"]] if view else []
        return view if roles.count("leader") == 1 else None

    return wait_for(settled, timeout=30, interval=0.3)


def admin_status(c: LocalCluster) -> dict:
    with c.client() as admin:
        return admin.call("cluster.status")


def _try(action) -> bool:
    try:
        action()
        return True
    except (AspenError, UnavailableError):
        return False


def test_wrong_join_token_is_refused(cluster, tmp_path) -> None:
    bad = (c := cluster).node_dir(1).joinpath("join-token").read_text().strip()[:-4] + "AAAA"
    port = free_port()
    proc = subprocess.run(
        node_command(
            tmp_path / "intruder",
            f"127.0.0.1:{port}",
            peer_listen=f"127.0.0.1:{free_port()}",
            join=f"{bad}@{c.peer_endpoint(1)}",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "join" in (proc.stdout + proc.stderr).lower()
    assert len(admin_status(c)["members"]) == 3


def test_membership_change_that_would_lose_quorum_is_refused(cluster) -> None:
    c = cluster
    leader = c.leader_index()
    down, alive = [i for i in range(1, 4) if i != leader]
    c.procs[down - 1].send_signal(signal.SIGKILL)
    c.procs[down - 1].wait(10)
    with c.client() as admin:
        ids = {m["client"]: i for i, m in admin.call("cluster.status")["members"].items()}
        down_id, alive_id = ids[c.client_endpoint(down)], ids[c.client_endpoint(alive)]

        def leader_saw_it_go() -> bool:
            with aspen.connect(c.client_endpoint(leader), token=c.token) as lc:
                progress = lc.call("cluster.status")["raft"]["progress"]
            return not progress[down_id]["recent_active"]

        wait_for(leader_saw_it_go, timeout=20)
        with pytest.raises(UnavailableError, match="quorum"):
            admin.call("cluster.remove", {"id": alive_id})
        assert alive_id in admin.call("cluster.status")["conf"]["voters"]
        admin.kv.put("still", "writable")


def test_leader_cut_off_by_a_network_partition_steps_down_and_rejoins(tmp_path) -> None:
    """Every node's peer address is a fault-injecting proxy; cutting the leader's proxy
    leaves it unable to hear anyone: check-quorum makes it step down, the others elect a
    new leader, pre-vote keeps the cut-off node from disrupting them, and after the heal it
    rejoins. The client history stays linearizable and every node converges."""
    base = free_base_port(3)
    proxies = {i: FaultProxy(("127.0.0.1", base + PEER_PORT_OFFSET + i)) for i in (1, 2, 3)}
    advertise = {i: p.address for i, p in proxies.items()}
    try:
        with local_cluster(tmp_path / "c", 3, base_port=base, advertise=advertise) as c:
            with Workload(c) as work:
                wait_for(lambda: len(work.recorder) > 100, timeout=30)
                leader = c.leader_index()
                proxies[leader].partition()
                cut_at = time.monotonic()

                def new_leader() -> int | None:
                    i = c.leader_index()
                    return i if i != leader else None

                wait_for(new_leader, timeout=30)
                wait_for(
                    lambda: any(e["ok"] and e["call"] > cut_at for e in work.recorder.history()),
                    timeout=30,
                )
                proxies[leader].heal()
                done = len(work.recorder)
                wait_for(lambda: len(work.recorder) > done + 200, timeout=60)
            _assert_linearizable(work.recorder.history())
            _assert_same_state_everywhere(c)
            roles = [m["role"] for m in _cluster_view(c)["members"]]
            assert roles.count("leader") == 1 and roles.count("follower") == 2
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_follower_behind_a_compacted_log_catches_up_from_a_snapshot(cluster) -> None:
    c = cluster
    leader = c.leader_index()
    lagging = next(i for i in range(1, 4) if i != leader)
    c.procs[lagging - 1].send_signal(signal.SIGKILL)
    c.procs[lagging - 1].wait(10)
    big = b"x" * limits.MAX_VALUE_BYTES
    with c.client() as cl:
        # more than the leader's queue for the dead peer holds (PEER_QUEUE_BYTES), so that
        # the queued appends are dropped and the follower really needs the compacted log
        for _ in range(limits.PEER_QUEUE_BYTES // limits.MAX_VALUE_BYTES + 8):
            cl.kv.put("snap/big", big)
        for n in range(50):
            cl.kv.put(f"snap/{n:03d}", f"v{n}")
        compacted = 0
        for i in range(1, 4):  # every live node drops the log the lagging one would need
            if i != lagging:
                with aspen.connect(c.client_endpoint(i), token=c.token) as nc:
                    compacted = max(compacted, nc.call("cluster.snapshot")["index"])
        for n in range(50, 60):
            cl.kv.put(f"snap/{n:03d}", f"v{n}")
    log_file = c.data_dir / f"n{lagging}.log"
    installs_before = log_file.read_text().count("installed snapshot")
    c.restart(lagging)
    _assert_same_state_everywhere(c)
    with aspen.connect(c.client_endpoint(lagging), token=c.token) as fc:
        keys = fc.kv.range("snap/", serializable=True)
        assert len(keys) == 61
        assert fc.call("cluster.status")["applied_index"] > compacted
    assert log_file.read_text().count("installed snapshot") == installs_before + 1


# ---------------------------------------------------------------------------- watch load
# A live watch catching up through a huge transaction: the leader keeps its term and keeps
# committing writes while the watch reads the history (issue 9).

#: Keys one delete-range removes under the live watch (the issue's reproduction).
WATCHED_KEYS = 100_000
#: Longest election timeout, in seconds (randomized in [election, 2 * election) ticks).
ELECTION_SECONDS = 2 * limits.RAFT_ELECTION_TICKS * limits.RAFT_TICK_SECONDS
#: A put slower than this means the cluster stopped serving: a liveness bound, not a
#: performance figure. Applying the 100k-key delete itself holds writes behind it for
#: 1.5-4 s on a busy shared 2-core machine (with no watch at all); the unfixed watch froze
#: the leader for ~20 s and cost it its term.
LIVENESS_SECONDS = 10 * ELECTION_SECONDS


def _leadership(c: LocalCluster) -> set[tuple[str, int]]:
    """The (leader id, term) pairs the nodes report (one pair when they agree)."""
    views = set()
    for i in range(1, c.nodes + 1):
        with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as cl:
            status = cl.call("cluster.status")
        views.add((status["leader"], int(status["raft"]["term"])))
    return views


class _Writer(threading.Thread):
    """Puts one key in a loop; records each put's latency and any failure."""

    def __init__(self, endpoints: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client = aspen.connect(endpoints, token=token, timeout=2 * LIVENESS_SECONDS)
        self.latencies: list[float] = []
        self.errors: list[AspenError] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.client as c:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    c.kv.put("p/x", "v")
                except AspenError as exc:
                    self.errors.append(exc)
                self.latencies.append(time.monotonic() - started)


def test_delete_of_100k_keys_under_a_live_watch_keeps_leader_and_writes(cluster) -> None:
    c = cluster
    everyone = c.endpoints
    with c.client(timeout=60) as cl:
        for start in range(0, WATCHED_KEYS, limits.MAX_TXN_OPS):
            cl.kv.txn(
                success=[
                    Op.put(f"e/{i:06d}", "v") for i in range(start, start + limits.MAX_TXN_OPS)
                ]
            )
    before = wait_for(lambda: len(v := _leadership(c)) == 1 and v, timeout=30)
    leader = c.leader_index()

    writer = _Writer(everyone, c.token)
    writer.start()
    seen: list[bytes] = []
    puts_mid_catch_up = 0
    try:
        wait_for(lambda: len(writer.latencies) >= 3, timeout=LIVENESS_SECONDS)
        with aspen.connect(c.client_endpoint(leader), token=c.token, timeout=60) as cl:
            watch = cl.watch("e/", prefix=True)
            assert cl.kv.delete("e/", prefix=True).deleted == WATCHED_KEYS
            for resp in watch:
                seen.extend(ev.kv.key for ev in resp.events if ev.type == "delete")
                if resp.more and not puts_mid_catch_up:
                    # the watch is mid-way through the delete's history: writes go on
                    done = len(writer.latencies)
                    wait_for(lambda d=done: len(writer.latencies) >= d + 3, LIVENESS_SECONDS)
                    puts_mid_catch_up = len(writer.latencies) - done
                if len(seen) >= WATCHED_KEYS:
                    break
            watch.cancel()
    finally:
        writer.stop.set()
        writer.join(2 * LIVENESS_SECONDS)
    assert puts_mid_catch_up >= 3
    assert seen == [f"e/{i:06d}".encode() for i in range(WATCHED_KEYS)]
    assert writer.errors == []
    assert max(writer.latencies) < LIVENESS_SECONDS
    assert _leadership(c) == before  # same leader, same term, on every node
    # not by luck (the followers applying the same delete meanwhile): the leader kept
    # heartbeating while its own apply held the Raft node in the write cycle
    with c.client(leader) as cl:
        assert cl.call("cluster.status")["raft"]["bridged_heartbeats"] > 0


@pytest.mark.aspen_cluster(env={"ASPEN_LEASE_READS": "true"})
def test_lease_reads_stay_linearizable_when_the_leader_is_paused_or_killed(cluster) -> None:
    """``--lease-reads``: the paused leader's lease runs out by its clock while it sleeps,
    so once resumed it never answers a read from it after the others moved on."""
    c = cluster

    def put_after(moment: float) -> bool:
        return any(
            e["ok"] and e["op"] == "put" and e["call"] > moment for e in work.recorder.history()
        )

    def leader_has_lease() -> bool:
        with aspen.connect(c.client_endpoint(c.leader_index()), token=c.token, timeout=5) as cl:
            return bool(cl.call("cluster.status")["raft"]["lease"])

    def a_read_skipped_raft() -> bool:
        """A linearizable get on the leader answered from its lease, without a cycle."""
        with aspen.connect(c.client_endpoint(c.leader_index()), token=c.token, timeout=5) as cl:
            before = cl.call("node.status")["reads"]["lease"]
            cl.kv.get("lease-probe")
            return bool(cl.call("node.status")["reads"]["lease"] > before)

    with Workload(c) as work:
        wait_for(lambda: len(work.recorder) > 100, timeout=30)
        # formed by joins, the cluster has a lease (reads are served from it, no round)
        wait_for(leader_has_lease, timeout=30, ignore=(AspenError, OSError))
        wait_for(a_read_skipped_raft, timeout=30, ignore=(AspenError, OSError))
        pid = c.procs[c.leader_index() - 1].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            paused_at = time.monotonic()
            wait_for(lambda: put_after(paused_at), timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)
        done = len(work.recorder)
        wait_for(lambda: len(work.recorder) > done + 200, timeout=60)
        c.kill(c.leader_index())
        killed_at = time.monotonic()
        wait_for(lambda: put_after(killed_at), timeout=30)
        done = len(work.recorder)
        wait_for(lambda: len(work.recorder) > done + 100, timeout=60)
    _assert_linearizable(work.recorder.history())


def test_node_status_counts_what_each_peer_link_carried(cluster) -> None:
    """``node.status`` ``peers``: per peer the Raft messages sent, the socket writes they
    went out in (several frames may share one) and their bytes; what a follower received
    from the leader is what the leader sent it (bench/peer_messages.py reads these)."""
    c = cluster
    leader = c.leader_index()
    with c.client() as cl:
        for n in range(20):
            cl.kv.put(f"peers/{n}", b"v" * 100)
    with aspen.connect(c.client_endpoint(leader), token=c.token) as lc:
        status = lc.call("node.status")
    leader_id, links = status["node_id"], status["peers"]["peers"]
    assert len(links) == 2
    for link in links.values():
        assert link["connected"] and link["sent"] >= 20
        assert 1 <= link["writes"] <= link["sent"]
        assert link["sent_bytes"] >= 20 * 100
    for i in range(1, 4):
        if i != leader:
            with aspen.connect(c.client_endpoint(i), token=c.token) as fc:
                sent = links[fc.call("node.status")["node_id"]]["sent"]

                def received(fc=fc) -> int:
                    return fc.call("node.status")["peers"]["peers"][leader_id]["received"]

                wait_for(lambda received=received, sent=sent: received() >= sent, timeout=10)
