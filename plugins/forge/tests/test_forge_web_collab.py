"""The forge's issue and patch pages in a real browser (headless Debian Chromium via
Selenium) against a real node the real ``git`` CLI pushes to: an issue opened, commented
on and closed through the forms; a patch with two revisions reviewed by a second token and
merged with the button; a conflicting patch's disabled button naming the path; what an
anonymous reader sees; forms without a CSRF token refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from forge_browser import css, find_all, form_csrf, go, link, log_in
from forge_git import ForgeCluster, Git, forge_cluster

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("forge")]

#: An issue title and a comment that try to run script in the reader's browser.
XSS_TITLE = "<img src=x onerror=window.pwned=1> broken"
XSS_COMMENT = "<script>window.pwned = 2</script> seen *here* too"


def _commit(git: Git, work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


class Forge:
    """The module's node, its repositories' work trees and a reviewer's token."""

    def __init__(self, cluster: ForgeCluster, git: Git, root: Path) -> None:
        self.cluster, self.git, self.root = cluster, git, root
        self.base = cluster.http(1)
        reviewer = cluster.call(
            "token.create", {"capabilities": ["forge:push:acme/*"], "name": "reviewer"}
        )
        self.reviewer = reviewer["token"]

    def repo(self, name: str, files: dict[str, str]) -> Path:
        """A new repository ``acme/<name>`` whose main holds ``files``; its work tree."""
        self.cluster.call("forge.repo_create", {"repo": f"acme/{name}"})
        work = self.root / name
        self.git("init", "-q", "-b", "main", str(work))
        _commit(self.git, work, files, "first")
        self.push(name, "main")
        return work

    def push(self, name: str, *refs: str) -> None:
        """``git push`` from ``acme/<name>``'s work tree as root."""
        url = self.cluster.url(1, f"acme/{name}")
        self.git("push", "-q", url, *refs, cwd=self.root / name, token=self.cluster.token)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """An RPC as root."""
        return self.cluster.call(method, params)


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    root = tmp_path_factory.mktemp("forge-web-collab")
    git = Git(root / "home")
    with forge_cluster(root / "cluster", nodes=1) as cluster:
        yield Forge(cluster, git, root)


def test_issue_opened_commented_and_closed_in_the_browser(browser: Any, forge: Forge) -> None:
    forge.repo("tracker", {"README.md": "# Tracker\n"})
    log_in(browser, forge.base, forge.cluster.token)
    browser.get(forge.base + "/acme/tracker")
    go(browser, css(browser, "#nav-issues"))
    assert "No open issues" in css(browser, "#none").text
    go(browser, css(browser, "#new-issue"))
    css(browser, "#title").send_keys(XSS_TITLE)
    css(browser, "#body").send_keys("It is **bold**.")
    go(browser, css(browser, "#submit"))

    assert browser.current_url == forge.base + "/acme/tracker/issues/1"
    assert css(browser, "#title").text == XSS_TITLE  # shown as text
    assert css(browser, "#state").text == "open"
    assert css(browser, "#issue-body strong").text == "bold"  # Markdown rendered

    css(browser, "#comment").send_keys(XSS_COMMENT)
    go(browser, css(browser, "#comment-submit"))
    comment = css(browser, "#comments .comment")
    assert comment.find_element("css selector", ".actor").text == "root"
    assert "<script>window.pwned = 2</script>" in comment.text
    assert comment.find_element("css selector", "em").text == "here"
    assert find_all(browser, "script") == []

    go(browser, css(browser, "#close"))
    assert css(browser, "#state").text == "closed"
    assert css(browser, "#close-reason").text == "(completed)"
    assert find_all(browser, "#reopen")
    assert browser.execute_script("return window.pwned === undefined")

    shown = forge.call("forge.issue_show", {"repo": "acme/tracker", "number": 1})
    assert shown["state"] == "closed" and shown["title"] == XSS_TITLE
    assert [c["body"] for c in shown["comments"]] == [XSS_COMMENT]

    go(browser, css(browser, "#nav-issues"))
    assert find_all(browser, "#issues li") == []
    go(browser, css(browser, "#filter-closed"))
    titles = [a.text for a in find_all(browser, "#issues a.title")]
    assert titles == [XSS_TITLE]


def test_patch_reviewed_and_merged_with_the_button(browser: Any, forge: Forge) -> None:
    git = forge.git
    work = forge.repo("app", {"a.txt": "a\n", "b.txt": "b\n"})
    forge.call(
        "forge.protect",
        {
            "repo": "acme/app",
            "pattern": "main",
            "required_approvals": 1,
            "required_status": ["ci/build"],
        },
    )
    git("checkout", "-q", "-b", "feature", cwd=work)
    first = _commit(git, work, {"c.txt": "new file\n"}, "add c")
    forge.push("app", "feature")
    made = forge.call(
        "forge.patch_create",
        {"repo": "acme/app", "source": "feature", "target": "main", "title": "Add c"},
    )
    second = _commit(git, work, {"b.txt": "b, changed\n"}, "change b")
    forge.push("app", "feature")  # revision 2
    page = f"{forge.base}/acme/app/patches/{made['number']}"

    log_in(browser, forge.base, forge.cluster.token)  # root: the patch's author
    browser.get(forge.base + "/acme/app")
    go(browser, css(browser, "#nav-patches"))
    go(browser, link(browser, "Add c"))
    assert browser.current_url == page
    assert css(browser, "#state").text == "open"
    assert (css(browser, "#source").text, css(browser, "#target").text) == ("feature", "main")
    heads = [a.text for a in find_all(browser, "#revisions a.head")]
    assert heads == [first[:10], second[:10]]
    go(browser, find_all(browser, "#revisions a.diff-link")[0])  # revision 1 against main
    assert [f.text for f in find_all(browser, ".diff .file")] == ["c.txt"]
    go(browser, css(browser, "#back"))
    go(browser, find_all(browser, "#revisions a.diff-link")[1])
    assert sorted(f.text for f in find_all(browser, ".diff .file")) == ["b.txt", "c.txt"]
    go(browser, css(browser, "#back"))

    # the author's own approval does not count; the status is missing
    css(browser, "#verdict-approve").click()
    go(browser, css(browser, "#review-submit"))
    blockers = css(browser, "#blockers").text
    assert "0 of 1 required approval(s)" in blockers
    assert "required status ci/build is missing" in blockers
    assert not css(browser, "#merge").is_enabled()

    forge.call(
        "forge.status_set",
        {"repo": "acme/app", "commit": second, "context": "ci/build", "state": "success"},
    )
    browser.delete_all_cookies()
    log_in(browser, forge.base, forge.reviewer)
    browser.get(page)
    assert css(browser, "#statuses .context").text == "ci/build"
    css(browser, "#review-body").send_keys("Looks good.")
    css(browser, "#verdict-approve").click()
    go(browser, css(browser, "#review-submit"))
    assert find_all(browser, "#blockers") == []
    assert "Ready to merge" in css(browser, "#mergeable").text
    reviews = [r.text for r in find_all(browser, ".review")]
    assert len(reviews) == 2 and "Looks good." in reviews[1]

    css(browser, "#strategy option[value=squash]").click()
    go(browser, css(browser, "#merge"))
    assert css(browser, "#state").text == "merged"
    assert "(squash)" in css(browser, "#merged").text
    merged = forge.call("forge.patch_show", {"repo": "acme/app", "number": made["number"]})
    tip = git.refs(forge.cluster.url(1, "acme/app"))["refs/heads/main"]
    assert tip == merged["merged"]["commit"]
    assert css(browser, "#merged a.sha").text == tip[:10]
    assert find_all(browser, "#mergebox") == []


def test_conflicting_patch_names_the_path(browser: Any, forge: Forge) -> None:
    git = forge.git
    work = forge.repo("clash", {"a.txt": "one\n", "b.txt": "b\n"})
    git("checkout", "-q", "-b", "topic", cwd=work)
    _commit(git, work, {"a.txt": "two\n"}, "a says two")
    forge.push("clash", "topic")
    git("checkout", "-q", "main", cwd=work)
    _commit(git, work, {"a.txt": "three\n"}, "a says three")
    forge.push("clash", "main")
    made = forge.call(
        "forge.patch_create",
        {"repo": "acme/clash", "source": "topic", "target": "main", "title": "Two"},
    )
    log_in(browser, forge.base, forge.cluster.token)
    browser.get(f"{forge.base}/acme/clash/patches/{made['number']}")
    assert "conflicts in 1 path(s)" in css(browser, "#blockers").text
    assert css(browser, "#conflicts").text == "a.txt"
    assert not css(browser, "#merge").is_enabled()

    go(browser, css(browser, "#patch-close"))  # a closed patch says so
    assert css(browser, "#state").text == "closed"
    assert css(browser, "#blockers").text == "patch is closed"
    assert not css(browser, "#merge").is_enabled()
    go(browser, css(browser, "#patch-reopen"))
    go(browser, css(browser, "#patch-draft"))
    assert "patch is a draft" in css(browser, "#blockers").text
    go(browser, css(browser, "#patch-ready"))
    assert css(browser, "#state").text == "open"


def test_anonymous_reader_sees_no_forms(browser: Any, forge: Forge) -> None:
    forge.repo("open", {"x.txt": "x\n"})
    git, work = forge.git, forge.root / "open"
    git("checkout", "-q", "-b", "idea", cwd=work)
    _commit(git, work, {"y.txt": "y\n"}, "y")
    forge.push("open", "idea")
    patch = forge.call(
        "forge.patch_create",
        {"repo": "acme/open", "source": "idea", "target": "main", "title": "Idea"},
    )
    issue = forge.call("forge.issue_create", {"repo": "acme/open", "title": "Q"})
    browser.get(f"{forge.base}/acme/open/issues/{issue['number']}")
    assert css(browser, "#title").text == "Q"
    assert find_all(browser, "form.post") == [] and find_all(browser, "#close") == []
    go(browser, css(browser, "#login-to-comment"))
    assert "/-/login?next=" in browser.current_url
    browser.get(f"{forge.base}/acme/open/patches/{patch['number']}")
    assert css(browser, "#state").text == "open"
    assert find_all(browser, "form") == []  # no review, comment or merge form
    browser.get(forge.base + "/acme/open/issues")
    assert find_all(browser, "#new-issue") == [] and find_all(browser, "#login-to-open")


def test_posts_need_the_csrf_token_and_a_login(forge: Forge) -> None:
    forge.repo("guarded", {"x.txt": "x\n"})
    issue = forge.call("forge.issue_create", {"repo": "acme/guarded", "title": "T"})
    thread = f"/acme/guarded/issues/{issue['number']}"
    with httpx.Client(base_url=forge.base) as anonymous:
        csrf = form_csrf(anonymous, "/-/login")
        refused = anonymous.post(thread + "/comment", data={"body": "hi", "csrf": csrf})
        assert refused.status_code == 403 and "log in" in refused.text
    with httpx.Client(base_url=forge.base) as client:
        csrf = form_csrf(client, "/-/login")
        client.post("/-/login", data={"token": forge.cluster.token, "csrf": csrf})
        assert client.post(thread + "/comment", data={"body": "forged"}).status_code == 403
        wrong = client.post(thread + "/comment", data={"body": "forged", "csrf": "0" * 32})
        assert wrong.status_code == 403 and "CSRF" in wrong.text
        ok = client.post(thread + "/comment", data={"body": "real", "csrf": csrf})
        assert ok.status_code == 303 and ok.headers["location"] == thread
        empty = client.post(thread + "/comment", data={"body": "", "csrf": csrf})
        assert empty.status_code == 400
        assert client.get("/acme/guarded/issues/99").status_code == 404
        assert client.get("/acme/guarded/issues?state=bogus").status_code == 400
    shown = forge.call("forge.issue_show", {"repo": "acme/guarded", "number": issue["number"]})
    assert [c["body"] for c in shown["comments"]] == ["real"]
