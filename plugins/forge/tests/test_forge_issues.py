"""Issues and commit statuses through ``aspen forge issue|status …`` (``--json``) and
``forge.issue_*`` on a real node: the lifecycle, per-repo numbers, the op log, events in
the journal, and bad input answered with typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from forge_git import forge_json

import aspen
from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthorizedError,
)
from aspen_forge import limits

pytestmark = pytest.mark.aspen_plugins("forge")


def test_issue_lifecycle(node: Any, cli: Any) -> None:
    forge_json(cli, "repo", "create", "acme/web")
    created = forge_json(
        cli, "issue", "create", "acme/web", "--title", "Crash on start", "--body", "it crashes"
    )
    assert created["number"] == 1 and created["state"] == "open"
    assert forge_json(cli, "issue", "create", "acme/web", "--title", "Second")["number"] == 2
    forge_json(cli, "issue", "comment", "acme/web", "1", "--body", "same here")
    forge_json(cli, "issue", "edit", "acme/web", "1", "--title", "Crash on start-up")
    forge_json(cli, "issue", "label", "acme/web", "1", "--add", "bug", "--add", "p1")
    forge_json(cli, "issue", "label", "acme/web", "1", "--remove", "p1")
    forge_json(cli, "issue", "assign", "acme/web", "1", "--add", "ann")
    closed = forge_json(cli, "issue", "close", "acme/web", "1", "--reason", "duplicate")
    assert closed["state"] == "closed" and closed["close_reason"] == "duplicate"
    again = cli("forge", "issue", "close", "acme/web", "1")
    assert again.exit_code != 0 and "closed already" in again.output
    forge_json(cli, "issue", "reopen", "acme/web", "1")
    shown = forge_json(cli, "issue", "show", "acme/web", "1")
    assert shown["number"] == 1 and shown["title"] == "Crash on start-up"
    assert shown["state"] == "open" and shown["labels"] == ["bug"]
    assert shown["assignees"] == ["ann"] and shown["author"] == "root"
    assert [c["body"] for c in shown["comments"]] == ["same here"]
    assert [i["number"] for i in forge_json(cli, "issue", "list", "acme/web")] == [1, 2]
    assert forge_json(cli, "issue", "list", "acme/web", "--state", "closed") == []
    with node.client() as c:
        log = c.call("forge.issue_show", {"repo": "acme/web", "number": 1, "ops": True})["log"]
        assert next(op["type"] for op in sorted(log, key=lambda o: o["time"])) == "create"
        assert len(log) == 8 and all(op["actor"] == "root" for op in log)
        events = c.events.read(0, match="forge.issue:acme/web")["events"]
        ops = [e["payload"]["op"] for e in events]
        assert ops[:2] == ["create", "create"] and ops[-1] == "reopen" and len(ops) == 9
    text = cli("forge", "issue", "show", "acme/web", "1")
    assert text.exit_code == 0 and "same here" in text.output


def test_numbers_are_per_repository(node: Any) -> None:
    with node.client() as c:
        for repo in ("a/one", "a/two"):
            c.call("forge.repo_create", {"repo": repo})
        assert c.call("forge.issue_create", {"repo": "a/one", "title": "x"})["number"] == 1
        assert c.call("forge.issue_create", {"repo": "a/one", "title": "y"})["number"] == 2
        assert c.call("forge.issue_create", {"repo": "a/two", "title": "z"})["number"] == 1


def test_bad_issue_input_is_refused(node: Any) -> None:
    with node.client() as c:
        c.call("forge.repo_create", {"repo": "acme/bad"})
        with pytest.raises(NotFoundError):
            c.call("forge.issue_show", {"repo": "acme/bad", "number": 7})
        with pytest.raises(NotFoundError):
            c.call("forge.issue_create", {"repo": "acme/none", "title": "x"})
        with pytest.raises(InvalidArgumentError, match="title"):
            c.call("forge.issue_create", {"repo": "acme/bad", "title": "  "})
        big = "x" * (limits.MAX_BODY_BYTES + 1)
        with pytest.raises(InvalidArgumentError, match="MAX_BODY_BYTES"):
            c.call("forge.issue_create", {"repo": "acme/bad", "title": "t", "body": big})
        c.call("forge.issue_create", {"repo": "acme/bad", "title": "t"})
        with pytest.raises(InvalidArgumentError, match="MAX_BODY_BYTES"):
            c.call("forge.issue_comment", {"repo": "acme/bad", "number": 1, "body": big})
        with pytest.raises(InvalidArgumentError, match="MAX_LABELS"):
            labels = [f"l{i}" for i in range(limits.MAX_LABELS + 1)]
            c.call("forge.issue_label", {"repo": "acme/bad", "number": 1, "add": labels})
        with pytest.raises(InvalidArgumentError, match="reason"):
            c.call("forge.issue_close", {"repo": "acme/bad", "number": 1, "reason": "bored"})
        with pytest.raises(CompareFailedError, match="not closed"):
            c.call("forge.issue_reopen", {"repo": "acme/bad", "number": 1})
        assert c.call("forge.issue_show", {"repo": "acme/bad", "number": 1})["comments"] == []


def test_tokens_scope_issues(node: Any) -> None:
    with node.client() as c:
        c.call("forge.repo_create", {"repo": "acme/t"})
        c.call("forge.repo_create", {"repo": "acme/secret", "private": True})
        c.call("forge.issue_create", {"repo": "acme/t", "title": "root's"})
        reader = c.call("token.create", {"capabilities": ["forge:read:acme/t"]})["token"]
    with aspen.connect(node.endpoint, token=reader) as c:
        opened = c.call("forge.issue_create", {"repo": "acme/t", "title": "from a reader"})
        assert opened["author"] != "root"
        assert opened["number"] == 2
        c.call("forge.issue_comment", {"repo": "acme/t", "number": 1, "body": "hi"})
        with pytest.raises(UnauthorizedError, match="forge:push:acme/t"):
            c.call("forge.issue_label", {"repo": "acme/t", "number": 2, "add": ["x"]})
        assert c.call("forge.issue_close", {"repo": "acme/t", "number": 2})["state"] == "closed"
        with pytest.raises(UnauthorizedError, match="forge:push:acme/t"):
            c.call("forge.issue_edit", {"repo": "acme/t", "number": 1, "title": "mine now"})
        with pytest.raises(NotFoundError):
            c.call("forge.issue_create", {"repo": "acme/secret", "title": "x"})
    with node.client() as c:
        outsider = c.call("token.create", {"capabilities": ["kv:read:/x/"]})["token"]
    with (
        aspen.connect(node.endpoint, token=outsider) as c,
        pytest.raises(UnauthorizedError, match="forge:read"),
    ):
        c.call("forge.issue_create", {"repo": "acme/t", "title": "no forge capability"})
    with (
        pytest.raises(Exception, match="token"),  # no token: the node takes none
        aspen.connect(node.endpoint, token=None) as c,
    ):
        c.call("forge.issue_create", {"repo": "acme/t", "title": "anonymous"})


def test_commit_statuses(node: Any, cli: Any) -> None:
    assert "http_address" in forge_json(cli, "status")  # the node's git URL, as before
    forge_json(cli, "repo", "create", "acme/ci")
    sha = "ab" * 20
    forge_json(cli, "status", "set", "acme/ci", sha, "ci/build", "pending")
    forge_json(cli, "status", "set", "acme/ci", sha, "ci/build", "success", "--description", "ok")
    forge_json(cli, "status", "set", "acme/ci", sha, "ci/lint", "failure")
    listed = forge_json(cli, "status", "list", "acme/ci", sha)
    assert [(s["context"], s["state"]) for s in listed] == [
        ("ci/build", "success"),
        ("ci/lint", "failure"),
    ]
    with node.client() as c:
        with pytest.raises(InvalidArgumentError, match="state"):
            c.call(
                "forge.status_set",
                {"repo": "acme/ci", "commit": sha, "context": "x", "state": "done"},
            )
        with pytest.raises(InvalidArgumentError, match="commit"):
            c.call(
                "forge.status_set",
                {"repo": "acme/ci", "commit": "HEAD", "context": "x", "state": "success"},
            )
        names = [e["name"] for e in c.events.read(0, match="forge.status:acme/ci")["events"]]
        assert names == ["forge.status"] * 3


def test_ops_per_object_are_bounded(node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_OPS_PER_OBJECT", 3)
    with node.client() as c:
        c.call("forge.repo_create", {"repo": "acme/full"})
        c.call("forge.issue_create", {"repo": "acme/full", "title": "t"})
        for body in ("one", "two"):
            c.call("forge.issue_comment", {"repo": "acme/full", "number": 1, "body": body})
        with pytest.raises(ResourceExhaustedError, match="MAX_OPS_PER_OBJECT"):
            c.call("forge.issue_comment", {"repo": "acme/full", "number": 1, "body": "three"})
        shown = c.call("forge.issue_show", {"repo": "acme/full", "number": 1})
        assert [x["body"] for x in shown["comments"]] == ["one", "two"]


def test_concurrent_ops_all_land_and_numbers_stay_unique(node: Any) -> None:
    import threading

    with node.client() as c:
        c.call("forge.repo_create", {"repo": "acme/busy"})
        c.call("forge.issue_create", {"repo": "acme/busy", "title": "shared"})
    numbers: list[int] = []

    def work(i: int) -> None:
        with node.client() as c:
            numbers.append(
                c.call("forge.issue_create", {"repo": "acme/busy", "title": f"n{i}"})["number"]
            )
            for j in range(3):
                c.call(
                    "forge.issue_comment", {"repo": "acme/busy", "number": 1, "body": f"{i}.{j}"}
                )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(numbers) == [2, 3, 4, 5]
    with node.client() as c:
        shown = c.call("forge.issue_show", {"repo": "acme/busy", "number": 1, "ops": True})
    assert sorted(x["body"] for x in shown["comments"]) == sorted(
        f"{i}.{j}" for i in range(4) for j in range(3)
    )
    # one chain: every op but the first names exactly the op before it
    assert sum(1 for op in shown["log"] if not op["parents"]) == 1


def test_an_oversized_op_is_refused(node: Any) -> None:
    with node.client() as c:
        c.call("forge.repo_create", {"repo": "acme/big"})
        c.call("forge.issue_create", {"repo": "acme/big", "title": "t", "body": "b" * 60_000})
        body = "x" * (limits.MAX_BODY_BYTES - 10)
        with pytest.raises(InvalidArgumentError, match="MAX_BODY_BYTES"):
            c.call("forge.issue_edit", {"repo": "acme/big", "number": 1, "body": body + "y" * 20})
        c.call("forge.issue_edit", {"repo": "acme/big", "number": 1, "body": body})
