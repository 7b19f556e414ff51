"""aspen-pijul on a real 3-node cluster: push from one working copy, clone through another
node, kill -9 the leader during a push, push and pull again: identical channel state."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from aspen.errors import AspenError, CompareFailedError
from aspen.testing import wait_for
from aspen_pijul import limits
from aspen_pijul.errors import CorruptChangeError
from aspen_pijul.model.record import Meta, record
from aspen_pijul.repo import Repo
from aspen_pijul.sync import pull, push, remote_log

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("pijul")]


def _record(repo: Repo, files: dict[str, bytes], n: int) -> str:
    ch = repo.channel()
    repo.save_tracked(files, {})
    for p, data in files.items():
        (repo.root / p).write_bytes(data)
    change = record(ch, files, Meta(f"change {n}", ("alice",), n))
    assert change is not None
    repo.store.put(change)
    ch.apply(change.hash)
    repo.save_channel(ch)
    return change.hash


def _history(root: Path, n: int) -> Repo:
    repo = Repo.init(root)
    lines: list[bytes] = []
    for i in range(n):
        lines.insert((i * 7) % (len(lines) + 1), b"line %d\n" % i)
        _record(repo, {"poem.txt": b"".join(lines)}, i)
    return repo


def _push_until_done(repo: Repo, client: Any) -> None:
    def attempt() -> bool:
        try:
            push(repo, client, "poems", "main", "main")
            return True
        except (AspenError, OSError):
            return False  # leader changing: run the push again

    wait_for(attempt, timeout=60, interval=0.5, message="push completes")


def test_push_clone_kill_leader_pull(cluster: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(limits, "MAX_APPEND_HASHES", 3)
    alice = _history(tmp_path / "alice", 40)
    leader = cluster.leader_index()
    with cluster.client() as client:
        push(alice, client, "poems", "main", "main")
        assert remote_log(client, "poems", "main") == alice.log("main")
        # Pushing again sends nothing; a stale expected length is refused by the CAS.
        assert push(alice, client, "poems", "main", "main") == 0
        with pytest.raises(CompareFailedError):
            client.call(
                "pijul.append", {"repo": "poems", "channel": "main", "expected": 1, "hashes": []}
            )
        # Corrupt bytes are refused on receipt.
        bad = bytearray(alice.store.get(alice.log("main")[0]).to_bytes())
        bad[-3] ^= 1
        with pytest.raises(AspenError, match=r"match|malformed"):
            client.call("pijul.put_changes", {"repo": "poems", "changes": [bytes(bad)]})
    assert CorruptChangeError.code == "invalid_argument"

    # Clone through a follower.
    follower = next(i for i in (1, 2, 3) if i != leader)
    bob = Repo.init(tmp_path / "bob")
    with cluster.client(follower) as client:
        ch = pull(bob, client, "poems", "main", "main")
    assert ch.output() == alice.channel().output()
    assert set(ch.order) == set(alice.log("main"))

    # More history, pushed while the leader is killed with SIGKILL.
    for i in range(40, 70):
        files = alice.channel().output()
        files["poem.txt"] = files["poem.txt"] + b"more %d\n" % i
        _record(alice, files, i)
    monkeypatch.setattr(limits, "MAX_APPEND_HASHES", 1)  # 30 appends: the kill lands mid-push
    with cluster.client() as client:
        done = threading.Event()

        def run() -> None:
            _push_until_done(alice, client)
            done.set()

        t = threading.Thread(target=run)
        t.start()
        with cluster.client(follower) as watcher:
            wait_for(
                lambda: len(remote_log(watcher, "poems", "main")) > 40,
                timeout=30,
                message="the push has started",
            )
        cluster.kill(cluster.leader_index())
        t.join(90)
        assert done.is_set()
        assert remote_log(client, "poems", "main") == alice.log("main")

    # Pull again through any surviving node: identical channel state.
    survivor = next(i for i in (1, 2, 3) if cluster.alive(i))
    with cluster.client(survivor) as client:
        ch = pull(bob, client, "poems", "main", "main")
    assert set(ch.order) == set(alice.log("main"))
    assert ch.output() == alice.channel().output()
    assert ch.graph.canonical() == alice.channel().graph.canonical()

    # With that member still down, changes stored as blobs are pushed too: a 300 KiB one
    # (a blob the node puts) and a 2 MiB one (a blob the client puts), each on a majority
    # when the cluster's replica count (3) cannot be met, then cloned back whole.
    for n, (name, size) in enumerate([("medium.txt", 300 * 1024), ("big.txt", 2 * 1024 * 1024)]):
        files = alice.channel().output()
        files[name] = b"".join(
            b"%s line %08d %s\n" % (name.encode(), i, b"x" * 60) for i in range(size // 80)
        )
        _record(alice, files, 100 + n)
    with cluster.client(survivor) as client:
        assert push(alice, client, "poems", "main", "main") == 2
        carol = Repo.init(tmp_path / "carol")
        ch = pull(carol, client, "poems", "main", "main")
    assert ch.output() == alice.channel().output()
