"""Patches end to end with the real ``git`` CLI against a real 3-node cluster: a branch is
pushed, a patch opened, a second push adds a revision, a review approves, the server
merges by each strategy; a direct push landing the head marks a patch merged; conflicts
are named by path; branch protection blocks merges with the reason and refuses direct
pushes; bad input gets typed errors. ``aspen forge patch …`` is run as the acceptance
checks run it (``--json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from forge_git import ForgeCluster, Git, forge_json

import aspen
from aspen.errors import CompareFailedError, InvalidArgumentError, NotFoundError
from aspen.testing.cli import CliInvoker

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("forge")]


@pytest.fixture(scope="module")
def cli(forge: ForgeCluster) -> CliInvoker:
    return CliInvoker(env={"ASPEN_ENDPOINT": forge.cluster.endpoints, "ASPEN_TOKEN": forge.token})


class Work:
    """A working clone of one repository, pushing through node 1 with the root token."""

    def __init__(self, forge: ForgeCluster, git: Git, repo: str, where: Path) -> None:
        self.forge, self.git, self.repo, self.dir = forge, git, repo, where
        forge.call("forge.repo_create", {"repo": repo})
        git("clone", "-q", forge.url(1, repo), str(where), token=forge.token)

    def commit(self, message: str, path: str = "file.txt", text: str | None = None) -> str:
        (self.dir / path).write_text((text if text is not None else message) + "\n")
        self.git("add", path, cwd=self.dir)
        self.git("commit", "-q", "-m", message, cwd=self.dir)
        return self.rev("HEAD")

    def rev(self, what: str) -> str:
        return self.git("rev-parse", what, cwd=self.dir).stdout.strip()

    def checkout(self, branch: str, start: str | None = None) -> None:
        args = ["checkout", "-q", "-B", branch] + ([start] if start else [])
        self.git(*args, cwd=self.dir)

    def push(self, *refspecs: str, check: bool = True) -> Any:
        return self.git(
            "push", "origin", *refspecs, cwd=self.dir, token=self.forge.token, check=check
        )

    def remote(self, branch: str) -> str:
        return self.git.refs(self.forge.url(2, self.repo))[f"refs/heads/{branch}"]

    def fetch(self) -> None:
        self.git("fetch", "-q", "origin", cwd=self.dir, token=self.forge.token)


def _reviewer(forge: ForgeCluster, repo: str) -> Any:
    """A connection with a token that may read (and so review) ``repo``, not the author's."""
    token = forge.call("token.create", {"capabilities": [f"forge:read:{repo}"]})["token"]
    return aspen.connect(forge.cluster.endpoints, token=token)


def _show(forge: ForgeCluster, repo: str, number: int) -> dict[str, Any]:
    return forge.call("forge.patch_show", {"repo": repo, "number": number})  # type: ignore[no-any-return]


def _patch(forge: ForgeCluster, repo: str, source: str, title: str = "p") -> int:
    params = {"repo": repo, "source": source, "target": "main", "title": title}
    return int(forge.call("forge.patch_create", params)["number"])


def test_patch_flow_each_strategy(
    forge: ForgeCluster, git: Git, cli: CliInvoker, tmp_path: Path
) -> None:
    w = Work(forge, git, "acme/flow", tmp_path / "w")
    base = w.commit("base", "a.txt")
    w.push("HEAD:main")
    # merge commit: branch, push, patch, second push = revision 2, approve, merge
    w.checkout("feature")
    first = w.commit("feature one", "f.txt")
    w.push("feature")
    created = forge_json(
        cli,
        "patch",
        "create",
        "acme/flow",
        "--source",
        "feature",
        "--target",
        "main",
        "--title",
        "Add f",
    )
    number = created["number"]
    assert created["state"] == "open" and created["revisions"][0]["head"] == first
    second = w.commit("feature two", "f.txt")
    w.push("feature")
    # the revision commits in the push's own transaction: there once git returns
    shown = forge_json(cli, "patch", "show", "acme/flow", str(number))
    assert shown["state"] == "open" and [r["head"] for r in shown["revisions"]] == [first, second]
    assert shown["merge"]["mergeable"] and shown["merge"]["fast_forward"]
    forge_json(cli, "patch", "review", "acme/flow", str(number), "--approve")
    assert _show(forge, "acme/flow", number)["approvals"] == []  # the author's own
    with _reviewer(forge, "acme/flow") as reviewer:
        reviewer.call(
            "forge.patch_review", {"repo": "acme/flow", "number": number, "verdict": "approve"}
        )
        actor = reviewer.call("forge.patch_show", {"repo": "acme/flow", "number": number})[
            "approvals"
        ]
    assert actor and actor != ["root"]
    merged = forge_json(cli, "patch", "merge", "acme/flow", str(number), "--strategy", "merge")
    assert merged["state"] == "merged" and merged["merged"]["strategy"] == "merge"
    tip = w.remote("main")
    assert tip == merged["merged"]["commit"]
    w.fetch()
    parents = w.git("rev-list", "--parents", "-n1", "origin/main", cwd=w.dir).stdout.split()
    assert parents == [tip, base, second]
    w.git("fsck", "--full", cwd=w.dir)
    # fast-forward
    w.checkout("quick", "origin/main")
    quick = w.commit("quick fix", "q.txt")
    w.push("quick")
    n_ff = _patch(forge, "acme/flow", "quick")
    assert (
        forge_json(cli, "patch", "merge", "acme/flow", str(n_ff), "--strategy", "ff")["state"]
        == "merged"
    )
    assert w.remote("main") == quick
    # squash, with main moved on meanwhile (not a fast-forward)
    w.checkout("squashme", "origin/main")
    w.fetch()
    w.checkout("squashme", quick)
    w.commit("s1", "s.txt", "one")
    w.commit("s2", "s.txt", "two")
    w.push("squashme")
    n_sq = _patch(forge, "acme/flow", "squashme", "Squash me")
    w.checkout("main", quick)
    other = w.commit("elsewhere", "other.txt")
    w.push("main")
    refused = forge.call("forge.patch_show", {"repo": "acme/flow", "number": n_sq})["merge"]
    assert refused["mergeable"] and not refused["fast_forward"]
    with pytest.raises(CompareFailedError, match="fast-forward"):
        forge.call("forge.patch_merge", {"repo": "acme/flow", "number": n_sq, "strategy": "ff"})
    squashed = forge_json(cli, "patch", "merge", "acme/flow", str(n_sq), "--strategy", "squash")
    w.fetch()
    head = squashed["merged"]["commit"]
    assert w.rev("origin/main") == head
    assert w.git("rev-list", "--parents", "-n1", head, cwd=w.dir).stdout.split() == [head, other]
    assert w.git("show", f"{head}:s.txt", cwd=w.dir).stdout == "two\n"
    assert w.git("show", f"{head}:other.txt", cwd=w.dir).stdout == "elsewhere\n"
    assert "Squash me (#" in w.git("log", "-1", "--format=%s", head, cwd=w.dir).stdout
    w.git("fsck", "--full", cwd=w.dir)
    # a merged patch merged again, a closed one merged: typed errors
    with pytest.raises(CompareFailedError, match="merged"):
        forge.call("forge.patch_merge", {"repo": "acme/flow", "number": n_sq})
    events = forge.call("events.read", {"match": "forge.patch:acme/flow"})["events"]
    assert {e["payload"]["op"] for e in events} >= {"create", "revision", "review", "merged"}


def test_a_push_landing_the_head_marks_the_patch_merged(
    forge: ForgeCluster, git: Git, tmp_path: Path
) -> None:
    w = Work(forge, git, "acme/auto", tmp_path / "w")
    w.commit("base")
    w.push("HEAD:main")
    w.checkout("topic")
    head = w.commit("topic work", "t.txt")
    w.push("topic")
    number = _patch(forge, "acme/auto", "topic")
    w.push("topic:main")  # a direct fast-forward push of the patch's head
    merged = _show(forge, "acme/auto", number)["merged"]
    assert merged["via"] == "push" and merged["commit"] == head


def test_conflicts_are_named_by_path(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    w = Work(forge, git, "acme/clash", tmp_path / "w")
    start = w.commit("base", "shared.txt", "one\ntwo\nthree")
    main = w.commit("other", "keep.txt")
    w.push("HEAD:main")
    w.checkout("left", start)
    w.commit("left", "shared.txt", "one\nLEFT\nthree")
    w.push("left")
    number = _patch(forge, "acme/clash", "left")
    w.checkout("main", main)
    w.commit("right", "shared.txt", "one\nRIGHT\nthree")
    w.push("main")
    merge = _show(forge, "acme/clash", number)["merge"]
    assert not merge["mergeable"] and merge["conflicts"] == ["shared.txt"]
    assert any("conflicts in 1 path" in b for b in merge["blockers"])
    for strategy in ("merge", "squash"):
        with pytest.raises(CompareFailedError, match=r"shared\.txt"):
            forge.call(
                "forge.patch_merge", {"repo": "acme/clash", "number": number, "strategy": strategy}
            )
    assert _show(forge, "acme/clash", number)["state"] == "open"


def test_protection_blocks_merges_and_direct_pushes(
    forge: ForgeCluster, git: Git, cli: CliInvoker, tmp_path: Path
) -> None:
    repo = "acme/guarded"
    w = Work(forge, git, repo, tmp_path / "w")
    w.commit("base")
    w.push("HEAD:main")
    forge_json(
        cli,
        "protect",
        repo,
        "main",
        "--no-force-push",
        "--required-approvals",
        "1",
        "--required-status",
        "ci/build",
        "--dismiss-stale",
    )
    w.checkout("change")
    first = w.commit("change", "c.txt")
    w.push("change")
    number = _patch(forge, repo, "change")
    with pytest.raises(CompareFailedError) as info:
        forge.call("forge.patch_merge", {"repo": repo, "number": number})
    assert "0 of 1 required approval(s)" in info.value.message
    assert "required status ci/build is missing" in info.value.message
    refused = w.push("change:main", check=False)
    assert refused.returncode != 0
    assert (
        "! [remote rejected] change -> main "
        "(protected branch main: changes go through a merged patch" in refused.stderr
    )
    reviewer = _reviewer(forge, repo)
    forge.call("forge.patch_review", {"repo": repo, "number": number, "verdict": "approve"})
    assert "0 of 1 required approval(s)" in str(_show(forge, repo, number)["merge"]["blockers"])
    reviewer.call("forge.patch_review", {"repo": repo, "number": number, "verdict": "approve"})
    forge_json(cli, "status", "set", repo, first, "ci/build", "success")
    assert _show(forge, repo, number)["merge"]["blockers"] == []
    # a new revision dismisses the approval (dismiss_stale) and lacks the status
    second = w.commit("change 2", "c.txt")
    w.push("change")
    assert len(_show(forge, repo, number)["revisions"]) == 2
    blockers = _show(forge, repo, number)["merge"]["blockers"]
    assert any("0 of 1 required approval(s) on the latest revision" in b for b in blockers)
    assert any("ci/build is missing" in b for b in blockers)
    reviewer.call(
        "forge.patch_review",
        {"repo": repo, "number": number, "verdict": "request_changes", "body": "hmm"},
    )
    blockers = _show(forge, repo, number)["merge"]["blockers"]
    assert any(b.startswith("changes requested by ") for b in blockers)
    reviewer.call(
        "forge.patch_review",
        {
            "repo": repo,
            "number": number,
            "verdict": "approve",
            "comments": [{"path": "c.txt", "line": 1, "body": "fine now"}],
        },
    )
    forge.call(
        "forge.status_set",
        {"repo": repo, "commit": second, "context": "ci/build", "state": "success"},
    )
    merged = forge.call("forge.patch_merge", {"repo": repo, "number": number, "strategy": "ff"})
    assert merged["state"] == "merged" and w.remote("main") == second
    reviews = merged["revisions"][1]["reviews"]
    assert reviews[-1]["comments"] == [{"path": "c.txt", "line": 1, "body": "fine now"}]
    reviewer.close()


def test_patch_states_and_bad_input(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    repo = "acme/states"
    w = Work(forge, git, repo, tmp_path / "w")
    w.commit("base")
    w.push("HEAD:main")
    w.checkout("wip")
    w.commit("wip", "w.txt")
    w.push("wip")
    params = {"repo": repo, "source": "wip", "target": "main", "title": "WIP", "draft": True}
    number = forge.call("forge.patch_create", params)["number"]
    with pytest.raises(CompareFailedError, match="draft"):
        forge.call("forge.patch_merge", {"repo": repo, "number": number})
    assert forge.call("forge.patch_ready", {"repo": repo, "number": number})["state"] == "open"
    assert forge.call("forge.patch_close", {"repo": repo, "number": number})["state"] == "closed"
    with pytest.raises(CompareFailedError, match="closed"):
        forge.call("forge.patch_merge", {"repo": repo, "number": number})
    with pytest.raises(CompareFailedError, match="closed"):
        forge.call("forge.patch_review", {"repo": repo, "number": number, "verdict": "approve"})
    assert forge.call("forge.patch_reopen", {"repo": repo, "number": number})["state"] == "open"
    with pytest.raises(NotFoundError):
        forge.call("forge.patch_show", {"repo": repo, "number": 99})
    with pytest.raises(NotFoundError):
        forge.call("forge.patch_merge", {"repo": repo, "number": 99})
    with pytest.raises(InvalidArgumentError, match="no branch nope"):
        forge.call("forge.patch_create", {**params, "source": "nope"})
    with pytest.raises(InvalidArgumentError, match="same branch"):
        forge.call("forge.patch_create", {**params, "source": "main"})
    with pytest.raises(InvalidArgumentError, match="MAX_TITLE_BYTES"):
        forge.call("forge.patch_create", {**params, "title": "t" * 5000})
    with pytest.raises(InvalidArgumentError, match="strategy"):
        forge.call("forge.patch_merge", {"repo": repo, "number": number, "strategy": "rebase"})
    with pytest.raises(InvalidArgumentError, match=r"revisions 1\.\.1"):
        forge.call("forge.patch_review", {"repo": repo, "number": number, "revision": 5})
    with pytest.raises(InvalidArgumentError, match="MAX_LINE_COMMENTS"):
        many = [{"path": "w.txt", "line": 1, "body": "x"}] * 201
        forge.call("forge.patch_review", {"repo": repo, "number": number, "comments": many})
    with pytest.raises(InvalidArgumentError, match="MAX_OP_BYTES"):
        wide = [{"path": "w.txt", "line": i + 1, "body": "x" * 60_000} for i in range(10)]
        forge.call("forge.patch_review", {"repo": repo, "number": number, "comments": wide})
    assert _show(forge, repo, number)["revisions"][0]["reviews"] == []


def test_a_server_merge_marks_patches_it_lands_merged(
    forge: ForgeCluster, git: Git, tmp_path: Path
) -> None:
    w = Work(forge, git, "acme/stack", tmp_path / "w")
    w.commit("base")
    w.push("HEAD:main")
    w.checkout("lower")
    lower = w.commit("lower", "l.txt")
    w.push("lower")
    w.checkout("upper")
    upper = w.commit("upper", "u.txt")
    w.push("upper")
    n_lower, n_upper = _patch(forge, "acme/stack", "lower"), _patch(forge, "acme/stack", "upper")
    merged = forge.call(
        "forge.patch_merge", {"repo": "acme/stack", "number": n_upper, "strategy": "ff"}
    )
    assert merged["merged"]["commit"] == upper and w.remote("main") == upper
    below = _show(forge, "acme/stack", n_lower)
    assert below["state"] == "merged" and below["merged"]["via"] == "push"
    assert below["revisions"][-1]["head"] == lower


def test_pushes_racing_with_comments_all_land(
    forge: ForgeCluster, git: Git, tmp_path: Path
) -> None:
    import threading

    repo = "acme/race"
    w = Work(forge, git, repo, tmp_path / "w")
    w.commit("base")
    w.push("HEAD:main")
    w.checkout("busy")
    w.commit("busy 0", "b.txt")
    w.push("busy")
    number = _patch(forge, repo, "busy")
    done = threading.Event()
    comments: list[str] = []

    def comment() -> None:
        with forge.cluster.client() as c:
            while not done.is_set() or len(comments) < 5:
                body = f"c{len(comments)}"
                c.call("forge.patch_comment", {"repo": repo, "number": number, "body": body})
                comments.append(body)

    thread = threading.Thread(target=comment)
    thread.start()
    heads = []
    for i in range(1, 4):
        heads.append(w.commit(f"busy {i}", "b.txt"))
        w.push("busy")
    done.set()
    thread.join(60)
    shown = _show(forge, repo, number)
    assert [r["head"] for r in shown["revisions"]][1:] == heads
    assert [c["body"] for c in shown["comments"]] == comments
