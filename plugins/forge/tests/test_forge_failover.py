"""kill -9 of the leader while pushes are in flight: every push git reported as done is in
the repository afterwards, on every node (the restarted one too), and ``git fsck`` is
clean; a push cut off by the kill either landed whole or not at all; while the node is
down a large push (a blob) still lands. The nodes index pushes with dulwich here (the
other modules use ``git index-pack``), so both paths take real pushes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from forge_git import (
    CLICK_MAIN,
    GARBAGE_PACK,
    Git,
    bare_click,
    forge_cluster,
    pkt_line,
    receive_pack,
)

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("forge")]


def test_kill_leader_during_pushes(tmp_path: Path) -> None:
    git = Git(tmp_path / "home")
    click = bare_click(git, tmp_path / "click.git")
    with forge_cluster(tmp_path / "cluster", index_pack="dulwich") as forge:
        cluster = forge.cluster
        assert forge.call("forge.status", {})["index_pack"] == "dulwich"
        forge.call("forge.repo_create", {"repo": "acme/small"})
        forge.call("forge.repo_create", {"repo": "acme/large"})
        leader = cluster.leader_index()
        follower = next(i for i in (1, 2, 3) if i != leader)
        work = tmp_path / "w"
        git("clone", "-q", forge.url(follower, "acme/small"), str(work))
        acknowledged: list[str] = []
        stop = threading.Event()

        def small_pushes() -> None:
            """Commit and push through a follower until told to stop; remember what git
            reported as pushed."""
            n = 0
            while not stop.is_set():
                n += 1
                (work / f"f{n}.txt").write_text(f"{n}\n")
                git("add", ".", cwd=work)
                git("commit", "-q", "-m", f"c{n}", cwd=work)
                sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
                pushed = git(
                    "push", "origin", "HEAD:main", cwd=work, token=forge.token, check=False
                )
                if pushed.returncode == 0:
                    acknowledged.append(sha)
                else:  # retry the same commit after the fail-over
                    time.sleep(0.2)

        large: dict[str, object] = {}

        def large_push() -> None:
            large["result"] = git(
                "push", forge.url(leader, "acme/large"), "main", cwd=click,
                token=forge.token, check=False,
            )  # fmt: skip

        pusher = threading.Thread(target=small_pushes)
        big = threading.Thread(target=large_push)
        pusher.start()
        big.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.kill(leader)
        survivors = [i for i in (1, 2, 3) if i != leader]
        cluster.leader_index(among=survivors)
        before = len(acknowledged)
        deadline = time.monotonic() + 60
        while len(acknowledged) < before + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        pusher.join(120)
        big.join(240)
        assert len(acknowledged) >= before + 3, "pushes did not resume after the fail-over"
        # with a node still down, a large push (its pack a blob) lands on the others
        forge.call("forge.repo_create", {"repo": "acme/degraded"})
        git(
            "push", "-q", forge.url(follower, "acme/degraded"), "main", cwd=click, token=forge.token
        )
        cluster.restart(leader)
        for node in (1, 2, 3):
            main = git.refs(forge.url(node, "acme/small"))["refs/heads/main"]
            clone = tmp_path / f"check{node}"
            git("clone", "-q", "--mirror", forge.url(node, "acme/small"), str(clone))
            git("fsck", "--full", cwd=clone)
            history = set(git("rev-list", main, cwd=clone).stdout.split())
            assert set(acknowledged) <= history, f"node {node} lost an acknowledged push"
            large_refs = git.refs(forge.url(node, "acme/large"))
            if large["result"].returncode == 0:  # type: ignore[attr-defined]
                assert large_refs["refs/heads/main"] == CLICK_MAIN
            assert git.refs(forge.url(node, "acme/degraded"))["refs/heads/main"] == CLICK_MAIN
            if large_refs:  # landed: whole
                big_clone = tmp_path / f"big{node}"
                git("clone", "-q", "--mirror", forge.url(node, "acme/large"), str(big_clone))
                git("fsck", "--full", cwd=big_clone)
        # dulwich's indexer refuses malformed data as git index-pack does
        command = pkt_line(
            b"0" * 40 + b" " + CLICK_MAIN.encode() + b" refs/heads/x\0report-status\n"
        )
        answer = receive_pack(forge, 1, "acme/small", command + b"0000" + GARBAGE_PACK)
        assert b"unpack malformed pack" in answer.content, answer.content
        assert "refs/heads/x" not in git.refs(forge.url(2, "acme/small"))
