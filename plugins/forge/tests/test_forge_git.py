"""The real ``git`` CLI against a real 3-node cluster: clone, push, fetch, tags, branch
delete, shallow clones, ``--atomic``, protection, concurrent pushes, and bad input — each
answered the way git shows it, with nothing half-written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from forge_git import (
    CLICK_MAIN,
    CLICK_STABLE,
    GARBAGE_PACK,
    TEST_MAX_PUSH_BYTES,
    ForgeCluster,
    Git,
    bare_click,
    pkt_line,
    receive_pack,
)

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("forge")]


@pytest.fixture(scope="module")
def click(git: Git, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bare_click(git, tmp_path_factory.mktemp("click") / "click.git")


@pytest.fixture(scope="module")
def pushed(forge: ForgeCluster, git: Git, click: Path) -> str:
    """acme/click with the click history pushed through node 1."""
    forge.call("forge.repo_create", {"repo": "acme/click"})
    git("push", forge.url(1, "acme/click"), "main", "stable", cwd=click, token=forge.token)
    return "acme/click"


def _commit(git: Git, work: Path, message: str, path: str = "file.txt") -> str:
    (work / path).write_text(message + "\n")
    git("add", path, cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def _work_clone(forge: ForgeCluster, git: Git, repo: str, where: Path, node: int = 1) -> Path:
    git("clone", "-q", forge.url(node, repo), str(where), token=forge.token)
    return where


def test_empty_repository_clones(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    forge.call("forge.repo_create", {"repo": "acme/empty"})
    result = git("clone", forge.url(2, "acme/empty"), str(tmp_path / "e"))
    assert "empty repository" in result.stderr
    work = tmp_path / "e"
    sha = _commit(git, work, "first")
    git("push", "origin", "HEAD:main", cwd=work, token=forge.token)
    assert git.refs(forge.url(3, "acme/empty")) == {"HEAD": sha, "refs/heads/main": sha}


def test_click_history_clones_from_every_node_fsck_clean(
    forge: ForgeCluster, git: Git, pushed: str, tmp_path: Path
) -> None:
    for node in (1, 2, 3):
        refs = git.refs(forge.url(node, pushed))
        assert refs["refs/heads/main"] == CLICK_MAIN and refs["refs/heads/stable"] == CLICK_STABLE
    clone = tmp_path / "c"
    git("clone", "-q", "--mirror", forge.url(3, pushed), str(clone))
    git("fsck", "--full", "--strict", cwd=clone)
    assert git("rev-list", "--count", "main", cwd=clone).stdout.strip() == "3329"
    shown = forge.call("forge.repo_show", {"repo": pushed})
    assert shown["refs"]["refs/heads/main"] == CLICK_MAIN


def test_fetch_sees_a_push_through_another_node(
    forge: ForgeCluster, git: Git, tmp_path: Path
) -> None:
    forge.call("forge.repo_create", {"repo": "acme/fetch"})
    a = _work_clone(forge, git, "acme/fetch", tmp_path / "a", node=1)
    first = _commit(git, a, "one")
    git("push", "-q", "origin", "HEAD:main", cwd=a, token=forge.token)
    b = _work_clone(forge, git, "acme/fetch", tmp_path / "b", node=2)
    second = _commit(git, a, "two")
    git("push", "-q", "origin", "HEAD:main", cwd=a, token=forge.token)
    git("fetch", "-q", "origin", cwd=b)
    assert git("rev-parse", "origin/main", cwd=b).stdout.strip() == second
    git("pull", "-q", "--ff-only", cwd=b)
    assert git("rev-list", "--count", "HEAD", cwd=b).stdout.strip() == "2"
    assert first != second
    # each push published forge.push in its own ref-update commit (docs/events.md)
    read = forge.call("events.read", {"match": "forge.push:acme/fetch"})
    updates = [e["payload"]["updates"] for e in read["events"]]
    assert updates == [
        [{"ref": "refs/heads/main", "old": "0" * 40, "new": first}],
        [{"ref": "refs/heads/main", "old": first, "new": second}],
    ]


def test_tags_and_branch_delete(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    forge.call("forge.repo_create", {"repo": "acme/tags"})
    work = _work_clone(forge, git, "acme/tags", tmp_path / "w")
    sha = _commit(git, work, "tagged")
    git("tag", "-a", "v1.0", "-m", "release", cwd=work)
    git("tag", "light", cwd=work)
    git(
        "push",
        "-q",
        "origin",
        "HEAD:main",
        "HEAD:refs/heads/topic",
        "--tags",
        cwd=work,
        token=forge.token,
    )
    refs = git.refs(forge.url(2, "acme/tags"))
    assert refs["refs/tags/light"] == sha and refs["refs/tags/v1.0^{}"] == sha
    git("push", "-q", "origin", ":topic", ":refs/tags/light", cwd=work, token=forge.token)
    refs = git.refs(forge.url(3, "acme/tags"))
    assert "refs/heads/topic" not in refs and "refs/tags/light" not in refs
    assert "refs/tags/v1.0" in refs


def test_shallow_clone(forge: ForgeCluster, git: Git, pushed: str, tmp_path: Path) -> None:
    clone = tmp_path / "s"
    git("clone", "-q", "--depth", "1", "--branch", "main", forge.url(2, pushed), str(clone))
    assert git("rev-list", "--count", "HEAD", cwd=clone).stdout.strip() == "1"
    assert (clone / ".git" / "shallow").read_text().strip() == CLICK_MAIN
    git("fsck", cwd=clone)


def test_force_push_is_rejected_on_a_protected_branch(
    forge: ForgeCluster, git: Git, tmp_path: Path
) -> None:
    forge.call("forge.repo_create", {"repo": "acme/protected"})
    work = _work_clone(forge, git, "acme/protected", tmp_path / "w")
    _commit(git, work, "one")
    tip = _commit(git, work, "two")
    git("push", "-q", "origin", "HEAD:main", "HEAD:refs/heads/free", cwd=work, token=forge.token)
    forge.call("forge.protect", {"repo": "acme/protected", "pattern": "main", "no_delete": True})
    git("reset", "-q", "--hard", "HEAD~1", cwd=work)
    rewritten = _commit(git, work, "rewritten")
    refused = git("push", "-f", "origin", "HEAD:main", cwd=work, token=forge.token, check=False)
    assert refused.returncode != 0
    assert (
        "! [remote rejected] HEAD -> main (protected branch main: force push is not allowed)"
        in refused.stderr
    )
    deleted = git("push", "origin", ":main", cwd=work, token=forge.token, check=False)
    assert "(protected branch main: deletion is not allowed)" in deleted.stderr
    git("push", "-q", "-f", "origin", "HEAD:free", cwd=work, token=forge.token)  # unprotected
    refs = git.refs(forge.url(2, "acme/protected"))
    assert refs["refs/heads/main"] == tip and refs["refs/heads/free"] == rewritten


def test_atomic_push_lands_all_or_nothing(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    forge.call("forge.repo_create", {"repo": "acme/atomic"})
    work = _work_clone(forge, git, "acme/atomic", tmp_path / "w")
    base = _commit(git, work, "base")
    git("push", "-q", "origin", "HEAD:main", cwd=work, token=forge.token)
    forge.call("forge.protect", {"repo": "acme/atomic", "pattern": "main"})
    git("reset", "-q", "--hard", "HEAD", cwd=work)
    git("checkout", "-q", "--orphan", "other", cwd=work)
    other = _commit(git, work, "unrelated")
    refused = git(
        "push", "--atomic", "-f", "origin", "HEAD:main", "HEAD:refs/heads/side",
        cwd=work, token=forge.token, check=False,
    )  # fmt: skip
    assert "(atomic push failed)" in refused.stderr
    refs = git.refs(forge.url(3, "acme/atomic"))
    assert refs["refs/heads/main"] == base and "refs/heads/side" not in refs
    git(
        "push",
        "-q",
        "--atomic",
        "origin",
        "HEAD:refs/heads/a",
        "HEAD:refs/heads/b",
        cwd=work,
        token=forge.token,
    )
    refs = git.refs(forge.url(2, "acme/atomic"))
    assert refs["refs/heads/a"] == refs["refs/heads/b"] == other


def test_two_concurrent_pushes_to_one_branch(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    forge.call("forge.repo_create", {"repo": "acme/race"})
    seed = _work_clone(forge, git, "acme/race", tmp_path / "seed")
    _commit(git, seed, "seed")
    git("push", "-q", "origin", "HEAD:main", cwd=seed, token=forge.token)
    works = [_work_clone(forge, git, "acme/race", tmp_path / f"w{i}", node=i + 1) for i in range(2)]
    tips = [_commit(git, w, f"racer {i}", f"racer{i}.txt") for i, w in enumerate(works)]
    results: list[object] = [None, None]

    def push(i: int) -> None:
        results[i] = git(
            "push", "origin", "HEAD:main", cwd=works[i], token=forge.token, check=False
        )

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    codes = [r.returncode for r in results]  # type: ignore[attr-defined]
    assert sorted(codes) == [0, 1], results
    winner = codes.index(0)
    loser = results[1 - winner]
    assert "rejected" in loser.stderr, loser.stderr  # type: ignore[attr-defined]
    assert git.refs(forge.url(3, "acme/race"))["refs/heads/main"] == tips[winner]
    # the loser's commit is not lost: it fetches, rebases and pushes
    w = works[1 - winner]
    git("pull", "-q", "--rebase", "origin", "main", cwd=w)
    git("push", "-q", "origin", "HEAD:main", cwd=w, token=forge.token)
    log = git("log", "--format=%s", cwd=w).stdout.split("\n")
    assert f"racer {winner}" in log and f"racer {1 - winner}" in log


def test_tokens_over_http(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    forge.call("forge.repo_create", {"repo": "acme/secret", "private": True})
    work = tmp_path / "w"
    anonymous = git("clone", forge.url(1, "acme/secret"), str(work), check=False)
    assert anonymous.returncode != 0 and "terminal prompts disabled" in anonymous.stderr
    wrong = git("clone", forge.url(1, "acme/secret"), str(work), token="aspen1c.bogus", check=False)
    assert wrong.returncode != 0 and not work.exists()
    with forge.cluster.client() as c:
        reader = c.call("token.create", {"capabilities": ["forge:read:acme/secret"]})["token"]
        pusher = c.call("token.create", {"capabilities": ["forge:push:acme/*"]})["token"]
    git("clone", "-q", forge.url(2, "acme/secret"), str(work), token=reader)
    _commit(git, work, "by token")
    denied = git("push", "origin", "HEAD:main", cwd=work, token=reader, check=False)
    assert "does not hold forge:push:acme/secret" in denied.stderr
    # the token as the basic-auth password works too
    url = forge.url(3, "acme/secret").replace("http://", f"http://git:{pusher}@")
    git("push", "-q", url, "HEAD:main", cwd=work)
    assert "refs/heads/main" in git.refs(forge.url(1, "acme/secret"), token=reader)


def test_bad_repository_names(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    from aspen.errors import InvalidArgumentError

    for bad in (
        "acme/..",
        "acme/a..b",
        "acme/a/b",
        "acme/" + "x" * 101,
        "acme/cl\u0456ck",  # a Cyrillic i
        "acme/a\x01",
    ):
        with pytest.raises(InvalidArgumentError):
            forge.call("forge.repo_create", {"repo": bad})
    shown = git("clone", forge.url(1, "acme/a..b"), str(tmp_path / "x"), check=False)
    assert "remote: repository name 'a..b' may not contain '..'" in shown.stderr
    missing = git("clone", forge.url(1, "acme/nothing"), str(tmp_path / "y"), check=False)
    assert "remote: repository acme/nothing not found" in missing.stderr
    assert [r["name"] for r in forge.call("forge.repo_list", {"owner": "acme"})["repos"]].count(
        ".."
    ) == 0


def test_unknown_ref_fetch_fails_cleanly(
    forge: ForgeCluster, git: Git, pushed: str, tmp_path: Path
) -> None:
    git("init", "-q", str(tmp_path / "w"))
    result = git(
        "fetch", forge.url(2, pushed), "refs/heads/no-such-branch", cwd=tmp_path / "w", check=False
    )
    assert result.returncode != 0 and "no-such-branch" in result.stderr


def test_oversized_push_is_refused_whole(forge: ForgeCluster, git: Git, tmp_path: Path) -> None:
    import os

    forge.call("forge.repo_create", {"repo": "acme/big"})
    work = _work_clone(forge, git, "acme/big", tmp_path / "w")
    (work / "big.bin").write_bytes(os.urandom(TEST_MAX_PUSH_BYTES + 1024 * 1024))
    git("add", "big.bin", cwd=work)
    git("commit", "-q", "-m", "big", cwd=work)
    refused = git("push", "origin", "HEAD:main", cwd=work, token=forge.token, check=False)
    assert refused.returncode != 0
    assert "MAX_PUSH_BYTES" in refused.stderr, refused.stderr
    assert git.refs(forge.url(2, "acme/big")) == {}


def test_malformed_pack_and_missing_objects_write_nothing(forge: ForgeCluster, git: Git) -> None:
    forge.call("forge.repo_create", {"repo": "acme/garbage"})
    zero, sha = b"0" * 40, CLICK_MAIN.encode()
    command = pkt_line(zero + b" " + sha + b" refs/heads/main\0report-status\n") + b"0000"
    answer = receive_pack(forge, 2, "acme/garbage", command + GARBAGE_PACK)
    assert answer.status_code == 200
    assert b"unpack malformed pack" in answer.content and b"ng refs/heads/main" in answer.content
    empty_pack = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00"
    import hashlib

    empty_pack += hashlib.sha1(empty_pack).digest()
    answer = receive_pack(forge, 3, "acme/garbage", command + empty_pack)
    assert b"unpack ok" in answer.content
    assert b"ng refs/heads/main missing object " + sha in answer.content
    assert git.refs(forge.url(1, "acme/garbage")) == {}


def test_fork_shares_objects_and_takes_its_own_pushes(
    forge: ForgeCluster, git: Git, pushed: str, tmp_path: Path
) -> None:
    fork = forge.call("forge.repo_fork", {"repo": pushed, "new_name": "me/click"})
    assert fork["alternates"] and fork["store"] != fork["alternates"][0]
    work = tmp_path / "w"
    git("clone", "-q", "-b", "main", forge.url(2, "me/click"), str(work))
    mine = _commit(git, work, "only in the fork")
    git("push", "-q", "origin", "HEAD:main", cwd=work, token=forge.token)
    assert git.refs(forge.url(3, "me/click"))["refs/heads/main"] == mine
    assert git.refs(forge.url(3, pushed))["refs/heads/main"] == CLICK_MAIN
    mirror = tmp_path / "m"
    git("clone", "-q", "--mirror", forge.url(1, "me/click"), str(mirror))
    git("fsck", "--full", cwd=mirror)
    origin = tmp_path / "o"
    git("clone", "-q", "--mirror", forge.url(1, pushed), str(origin))
    assert git("cat-file", "-t", mine, cwd=origin, check=False).returncode != 0


def test_full_clone_after_thin_pushes_sends_each_object_once(
    forge: ForgeCluster, git: Git, click: Path, tmp_path: Path
) -> None:
    """A thin push is completed with copies of its delta bases; a full clone streams the
    packs as one and must not repeat those objects (git refuses duplicates)."""
    forge.call("forge.repo_create", {"repo": "acme/thin"})
    git("push", "-q", forge.url(1, "acme/thin"), "main", cwd=click, token=forge.token)
    work = tmp_path / "w"
    git("clone", "-q", forge.url(2, "acme/thin"), str(work))
    for n in range(2):
        readme = work / "README.md"
        readme.write_text(readme.read_text() + f"\nedit {n}\n")  # a delta against the old blob
        git("commit", "-q", "-am", f"edit {n}", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work, token=forge.token)
    mirror = tmp_path / "m"
    git("clone", "-q", "--mirror", forge.url(3, "acme/thin"), str(mirror))
    git("fsck", "--full", cwd=mirror)
    assert git("rev-list", "--count", "main", cwd=mirror).stdout.strip() == "3331"


def test_default_branch_is_what_a_clone_checks_out(
    forge: ForgeCluster, git: Git, tmp_path: Path
) -> None:
    forge.call("forge.repo_create", {"repo": "acme/default", "default_branch": "dev"})
    work = _work_clone(forge, git, "acme/default", tmp_path / "w")
    main = _commit(git, work, "on main")
    git("push", "-q", "origin", "HEAD:main", cwd=work, token=forge.token)
    assert git.refs(forge.url(2, "acme/default"))["HEAD"] == main  # dev absent: main
    dev = _commit(git, work, "on dev")
    git("push", "-q", "origin", "HEAD:dev", cwd=work, token=forge.token)
    clone = tmp_path / "c"
    git("clone", "-q", forge.url(3, "acme/default"), str(clone))
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone).stdout.strip() == "dev"
    assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == dev
