"""Repositories and protection rules through ``aspen forge …`` (``--json``) and ``forge.*``
on a real node: create (unique, case-insensitively), list, show, edit, rename, fork,
delete, invalid names, and capability tokens."""

from __future__ import annotations

from typing import Any

import pytest
from forge_git import forge_json

import aspen
from aspen.errors import CompareFailedError, InvalidArgumentError, NotFoundError, UnauthorizedError
from aspen_forge.names import parse_full_name

pytestmark = pytest.mark.aspen_plugins("forge")


def test_repository_lifecycle(node: Any, cli: Any) -> None:
    created = forge_json(cli, "repo", "create", "acme/web", "--description", "the site")
    assert created["owner"] == "acme" and created["name"] == "web"
    assert created["default_branch"] == "main" and created["private"] is False
    again = cli("forge", "repo", "create", "ACME/Web")
    assert again.exit_code != 0 and "already exists" in again.output
    forge_json(cli, "repo", "create", "acme/internal", "--private")
    listed = forge_json(cli, "repo", "list")
    assert [(r["owner"], r["name"], r["default_branch"]) for r in listed] == [
        ("acme", "internal", "main"),
        ("acme", "web", "main"),
    ]
    shown = forge_json(cli, "repo", "show", "acme/web")
    assert shown["description"] == "the site" and shown["refs"] == {}
    assert shown["clone_url"].endswith("/acme/web.git")
    edited = forge_json(cli, "repo", "edit", "acme/web", "--default-branch", "trunk", "--private")
    assert edited["default_branch"] == "trunk" and edited["private"] is True
    renamed = forge_json(cli, "repo", "rename", "acme/web", "other/site")
    assert renamed["full_name"] == "other/site" and renamed["id"] == created["id"]
    assert cli("forge", "repo", "show", "acme/web").exit_code != 0
    fork = forge_json(cli, "repo", "fork", "other/site", "me/site")
    assert fork["alternates"] == [created["store"]] and fork["forked_from"] == "other/site"
    assert forge_json(cli, "repo", "delete", "other/site") == {"deleted": "other/site"}
    assert forge_json(cli, "repo", "show", "me/site")["alternates"] == [created["store"]]
    with node.client() as c, pytest.raises(NotFoundError):
        c.call("forge.repo_show", {"repo": "other/site"})


def test_protection_rules(node: Any, cli: Any) -> None:
    forge_json(cli, "repo", "create", "acme/p")
    rules = forge_json(cli, "protect", "acme/p", "release/*", "--no-delete", "--push-allow", "root")
    assert rules["rules"] == [
        {
            "pattern": "release/*",
            "no_force_push": True,
            "no_delete": True,
            "push_allow": ["root"],
            "required_approvals": 0,
            "required_status": [],
            "dismiss_stale": False,
            "extra": {},
        }
    ]
    forge_json(cli, "protect", "acme/p", "main", "--no-force-push")
    assert [r["pattern"] for r in forge_json(cli, "protections", "acme/p")["rules"]] == [
        "release/*",
        "main",
    ]
    assert forge_json(cli, "unprotect", "acme/p", "release/*")["rules"][0]["pattern"] == "main"
    with node.client() as c, pytest.raises(InvalidArgumentError):
        c.call("forge.protect", {"repo": "acme/p", "pattern": "refs/heads/main"})


@pytest.mark.parametrize(
    "bad",
    [
        "acme/..",
        "acme/.hidden",
        "acme/a..b",
        "acme/a/b",
        "acme",
        "acme/x.git.git",
        "acme/" + "x" * 101,
        "acme/caf\u00e9",
        "acme/\u0430pple",  # Cyrillic a
        "acme/tab\tname",
        "acme/info",
        "../etc/passwd",
    ],
)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_full_name(bad)


def test_invalid_names_over_rpc_write_nothing(node: Any) -> None:
    with node.client() as c:
        for bad in ("acme/..", "acme/a b", "acme/\u0430pple"):
            with pytest.raises(InvalidArgumentError):
                c.call("forge.repo_create", {"repo": bad})
        assert c.call("forge.repo_list", {})["repos"] == []


def test_capability_tokens_scope_repositories(node: Any) -> None:
    with node.client() as c:
        c.call("forge.repo_create", {"repo": "acme/open"})
        c.call("forge.repo_create", {"repo": "acme/closed", "private": True})
        c.call("forge.repo_create", {"repo": "other/closed", "private": True})
        admin = c.call("token.create", {"capabilities": ["forge:admin:acme/*"]})["token"]
        reader = c.call("token.create", {"capabilities": ["forge:read:other/closed"]})["token"]
    with aspen.connect(node.endpoint, token=admin) as c:
        c.call("forge.repo_create", {"repo": "acme/new"})
        with pytest.raises(UnauthorizedError, match="forge:admin:other/new"):
            c.call("forge.repo_create", {"repo": "other/new"})
        names = {r["full_name"] for r in c.call("forge.repo_list", {})["repos"]}
        assert names == {"acme/open", "acme/closed", "acme/new"}
    with aspen.connect(node.endpoint, token=reader) as c:
        names = {r["full_name"] for r in c.call("forge.repo_list", {})["repos"]}
        assert names == {"acme/open", "acme/new", "other/closed"}
        with pytest.raises(NotFoundError):
            c.call("forge.repo_show", {"repo": "acme/closed"})
        with pytest.raises(UnauthorizedError):
            c.call("forge.repo_delete", {"repo": "other/closed"})


def test_concurrent_creates_of_one_name_one_wins(node: Any) -> None:
    import threading

    outcomes: list[str] = []

    def create() -> None:
        with node.client() as c:
            try:
                c.call("forge.repo_create", {"repo": "race/one"})
                outcomes.append("created")
            except CompareFailedError:
                outcomes.append("exists")

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
