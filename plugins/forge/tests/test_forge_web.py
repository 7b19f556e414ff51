"""The forge's web UI in a real browser (headless Debian Chromium via Selenium) against a
real node that the real ``git`` CLI pushed the click history to; plus the HTTP details a
browser does not show (status codes, cookie flags, headers), and a follower of a 3-node
cluster serving the pages."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from forge_browser import css as _css
from forge_browser import find_all as _all
from forge_browser import form_csrf
from forge_browser import go as _go
from forge_browser import link as _link
from forge_git import CLICK_MAIN, ForgeCluster, Git, bare_click, forge_cluster

from aspen_forge import limits

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("forge")]

#: A README and a file name that try to run script in the reader's browser.
XSS_README = """# Odd

<script>window.pwned = 'script'</script>

<img src=x onerror="window.pwned = 'img'">

[click me](javascript:window.pwned='link')

See [the inner file](sub/inner.txt) in [its directory](sub). ![a dot](dot.png)
"""
XSS_FILE = "<img src=x onerror=window.pwned=1>.py"
#: A 1x1 PNG, for an image a README shows from the repository.
DOT_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a45d0000000049454e44ae426082"
)


def _commit_tree(git: Git, work: Path, files: dict[str, bytes], message: str) -> None:
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory, git: Git) -> Iterator[ForgeCluster]:
    """One node holding acme/click (main, stable, tag v-web), private acme/secret and
    acme/odd (an XSS README and file name, a binary file, a file over MAX_WEB_FILE_BYTES)."""
    root = tmp_path_factory.mktemp("forge-web")
    with forge_cluster(root / "cluster", nodes=1) as forge:
        click = bare_click(git, root / "click.git")
        git("tag", "v-web", CLICK_MAIN, cwd=click)
        forge.call("forge.repo_create", {"repo": "acme/click", "description": "Click, pushed"})
        url = forge.url(1, "acme/click")
        git("push", url, "main", "stable", "v-web", cwd=click, token=forge.token)

        for name, private, files in (
            ("acme/secret", True, {"README.md": b"# Top secret\n"}),
            (
                "acme/odd",
                False,
                {
                    "README.md": XSS_README.encode(),
                    XSS_FILE: b"print('hi')\n",
                    "logo.bin": bytes(range(256)) * 4,
                    "big.txt": (b"x" * 79 + b"\n") * (limits.MAX_WEB_FILE_BYTES // 80 + 10),
                    "sub/inner.txt": b"inner\n",
                    "dot.png": DOT_PNG,
                },
            ),
        ):
            forge.call("forge.repo_create", {"repo": name, "private": private})
            work = root / name.replace("/", "-")
            git("init", "-q", "-b", "main", str(work))
            _commit_tree(git, work, files, f"first commit of {name}")
            git("push", forge.url(1, name), "main", cwd=work, token=forge.token)
        yield forge


def test_browse_click_history(browser: Any, forge: ForgeCluster) -> None:
    base = forge.http(1)
    browser.get(base + "/")
    names = [a.text for a in _all(browser, "#repos a.repo-link")]
    assert "acme/click" in names and "acme/odd" in names and "acme/secret" not in names
    _go(browser, _link(browser, "acme/click"))

    # repo home: README rendered, clone URL, the tree of main
    assert browser.current_url == base + "/acme/click"
    assert _css(browser, "#readme h1").text == "Click"
    assert _css(browser, "#readme pre code").text.startswith("import click")
    assert _css(browser, "#clone-url").get_attribute("value") == forge.url(1, "acme/click")
    assert _all(browser, "script") == []  # nothing here needs JavaScript

    _go(browser, _link(browser, "src/"))
    _go(browser, _link(browser, "click/"))
    _go(browser, _link(browser, "core.py"))
    assert browser.current_url == base + "/acme/click/blob/main/src/click/core.py"
    keywords = [k.text for k in _all(browser, "#code .hl span.k")[:50]]
    assert "def" in keywords or "class" in keywords  # highlighted by Pygments
    assert _all(browser, "#code .hl span.nc")  # class names too

    _go(browser, _css(browser, "#nav-commits"))
    commits = _all(browser, "#commits > li")
    assert len(commits) == limits.WEB_LOG_PAGE_COMMITS
    assert commits[0].find_element("css selector", "a.sha").text == CLICK_MAIN[:10]
    _go(browser, _css(browser, "#older"))
    assert browser.current_url.endswith("?page=1")
    second = [a.text for a in _all(browser, "#commits a.sha")]
    assert len(second) == limits.WEB_LOG_PAGE_COMMITS and CLICK_MAIN[:10] not in second
    _go(browser, _css(browser, "#newer"))

    _go(browser, _all(browser, "#commits a.sha")[0])
    assert _css(browser, "#sha").text == CLICK_MAIN
    assert _all(browser, "table.udiff tr.add") or _all(browser, "table.udiff tr.del")
    _go(browser, _css(browser, "a.parent"))
    assert "/acme/click/commit/" in browser.current_url

    _go(browser, _css(browser, "#nav-branches"))
    assert [a.text for a in _all(browser, "#refs a.refname")] == ["main", "stable"]
    _go(browser, _css(browser, "#nav-tags"))
    assert [a.text for a in _all(browser, "#refs a.refname")] == ["v-web"]
    _go(browser, _link(browser, "v-web"))
    assert _css(browser, ".pathbar .ref").text == "v-web"


def test_login_shows_private_repo_and_logout_hides_it(browser: Any, forge: ForgeCluster) -> None:
    base = forge.http(1)
    browser.get(base + "/acme/secret")
    hidden = _css(browser, "#error").text
    browser.get(base + "/acme/no-such-repo")
    assert _css(browser, "#error").text == hidden.replace("secret", "no-such-repo")

    browser.get(base + "/acme/secret")
    _go(browser, _css(browser, "#login"))
    _css(browser, "#token").send_keys("not-a-token")
    _go(browser, _css(browser, "#submit"))
    assert "not one of this cluster's" in _css(browser, "#login-error").text

    _css(browser, "#token").send_keys(forge.token)
    _go(browser, _css(browser, "#submit"))
    assert browser.current_url == base + "/acme/secret"  # back where the reader was
    assert _css(browser, "#readme h1").text == "Top secret"
    assert _css(browser, "#who").text == "root"
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert set(cookies) == {"aspen_forge_token", "aspen_forge_csrf"}
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies.values())
    browser.get(base + "/")
    assert "acme/secret" in [a.text for a in _all(browser, "#repos a.repo-link")]

    _go(browser, _css(browser, "#logout"))
    assert "acme/secret" not in [a.text for a in _all(browser, "#repos a.repo-link")]
    browser.get(base + "/acme/secret")
    assert _css(browser, "#error").text == hidden


def test_scoped_token_reads_only_its_repository(browser: Any, forge: ForgeCluster) -> None:
    made = forge.call(
        "token.create", {"capabilities": ["forge:read:acme/secret"], "name": "web-reader"}
    )
    base = forge.http(1)
    browser.get(base + "/-/login")
    _css(browser, "#token").send_keys(made["token"])
    _go(browser, _css(browser, "#submit"))
    assert _css(browser, "#who").text.startswith("token ")
    assert "acme/secret" in [a.text for a in _all(browser, "#repos a.repo-link")]
    browser.get(base + "/acme/secret")
    assert _css(browser, "#readme h1").text == "Top secret"


def test_xss_in_readme_and_file_name_is_escaped(browser: Any, forge: ForgeCluster) -> None:
    base = forge.http(1)
    browser.get(base + "/acme/odd")
    readme = _css(browser, "#readme")
    assert "<script>window.pwned = 'script'</script>" in readme.text  # shown, as text
    assert _all(browser, "#readme script") == []
    assert [img.get_attribute("alt") for img in _all(browser, "#readme img")] == ["a dot"]
    assert all(
        not (a.get_attribute("href") or "").startswith("javascript:")
        for a in _all(browser, "#readme a")
    )
    _go(browser, _link(browser, XSS_FILE))  # the name is text, and its link works
    assert browser.current_url.startswith(base + "/acme/odd/blob/main/%3Cimg")
    assert "print" in _css(browser, "#code").text
    assert _css(browser, ".pathbar b").text == XSS_FILE
    assert browser.execute_script("return window.pwned === undefined")


def test_readme_links_and_images_resolve_in_the_repository(
    browser: Any, forge: ForgeCluster
) -> None:
    base = forge.http(1)
    browser.get(base + "/acme/odd")
    dot = _css(browser, "#readme img")
    assert dot.get_attribute("src") == base + "/acme/odd/raw/main/dot.png"
    assert browser.execute_script("return arguments[0].naturalWidth", dot) == 1  # loaded
    _go(browser, _link(browser, "the inner file"))
    assert browser.current_url == base + "/acme/odd/blob/main/sub/inner.txt"
    assert _css(browser, "#code").text.strip().endswith("inner")
    browser.back()
    _go(browser, _link(browser, "its directory"))
    assert [a.text for a in _all(browser, "#tree a")] == ["inner.txt"]


def test_binary_and_large_files_get_a_notice(browser: Any, forge: ForgeCluster) -> None:
    base = forge.http(1)
    browser.get(base + "/acme/odd/blob/main/logo.bin")
    assert "Binary file" in _css(browser, "#binary").text
    browser.get(base + "/acme/odd/blob/main/big.txt")
    assert "MAX_WEB_FILE_BYTES" in _css(browser, "#too-large").text
    _go(browser, _css(browser, "#raw"))
    assert browser.current_url == base + "/acme/odd/raw/main/big.txt"
    browser.get(base + "/acme/odd/commits")
    _go(browser, _css(browser, "#commits a.sha"))  # the commit that added them
    files = {f.text: f for f in _all(browser, ".diff .file")}
    assert set(files) >= {"big.txt", "logo.bin", "README.md"}
    notes = [n.text for n in _all(browser, ".diff-note")]
    assert notes == ["Diff not shown: a side is over MAX_WEB_FILE_BYTES."]
    assert "Binary files" in browser.page_source


# --- over plain HTTP: what a browser does not show ----------------------------------------


def test_pages_answer_with_statuses_and_headers(forge: ForgeCluster) -> None:
    base = forge.http(1)
    home = httpx.get(base + "/acme/click")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert "script-src" not in home.headers["content-security-policy"]  # no script at all
    assert "default-src 'none'" in home.headers["content-security-policy"]
    assert home.headers["x-content-type-options"] == "nosniff"
    for path in (
        "/acme/secret",
        "/acme/secret/commits",
        "/acme/secret/tree/main",
        "/acme/secret/raw/main/README.md",
        "/acme/no-such-repo",
        "/acme/click/tree/no-such-branch",
        "/acme/click/blob/main/no-such-file",
        "/acme/click/commit/" + "0" * 40,
        "/acme/click/tree/main/../../secret",
        "/-/nothing-here",
    ):
        assert httpx.get(base + path).status_code == 404, path
    forge.call("forge.repo_create", {"repo": "acme/void"})
    void = httpx.get(base + "/acme/void")
    assert void.status_code == 200 and "This repository is empty" in void.text
    assert "acme/void is empty" in httpx.get(base + "/acme/void/commits").text
    assert httpx.get(base + "/acme/click/commits?page=x").status_code == 400
    deep = limits.MAX_WEB_LOG_DEPTH // limits.WEB_LOG_PAGE_COMMITS + 1
    assert "MAX_WEB_LOG_DEPTH" in httpx.get(f"{base}/acme/click/commits?page={deep}").text
    redirect = httpx.get(base + "/acme/click.git", follow_redirects=False)
    assert redirect.status_code == 301 and redirect.headers["location"] == "/acme/click"


def test_raw_files_are_never_html(forge: ForgeCluster) -> None:
    base = forge.http(1)
    readme = httpx.get(base + "/acme/odd/raw/main/README.md")
    assert readme.headers["content-type"] == "text/plain; charset=utf-8"
    assert "sandbox" in readme.headers["content-security-policy"]
    assert readme.content == XSS_README.encode()
    binary = httpx.get(base + "/acme/odd/raw/main/logo.bin")
    assert binary.headers["content-type"] == "application/octet-stream"


def test_login_cookie_flags_and_bounds(forge: ForgeCluster) -> None:
    base = forge.http(1)
    with httpx.Client(base_url=base) as client:
        csrf = form_csrf(client, "/-/login")
        forged = client.post("/-/login", data={"token": forge.token})  # no CSRF field
        assert forged.status_code == 403 and "CSRF" in forged.text
        ok = client.post(
            "/-/login", data={"token": forge.token, "next": "//evil.example/", "csrf": csrf}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        bad = client.post("/-/login", data={"token": "nope", "csrf": csrf})
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        huge = client.post("/-/login", content=b"token=" + b"x" * limits.MAX_WEB_FORM_BYTES)
        assert huge.status_code == 413 and "MAX_WEB_FORM_BYTES" in huge.text
        assert client.post("/-/logout").status_code == 403
        out = client.post("/-/logout", data={"csrf": csrf})
        assert out.status_code == 303 and "max-age=0" in out.headers["set-cookie"].lower()


def test_git_still_served_on_the_same_port(forge: ForgeCluster, git: Git) -> None:
    refs = git.refs(forge.url(1, "acme/click"))
    assert refs["refs/heads/main"] == CLICK_MAIN
    assert git("ls-remote", forge.url(1, "acme/secret"), check=False).returncode != 0


# --- a follower of a 3-node cluster -------------------------------------------------------


def test_a_follower_serves_the_pages(
    tmp_path_factory: pytest.TempPathFactory, git: Git, chromium: Any
) -> None:
    root = tmp_path_factory.mktemp("forge-web-3")
    with forge_cluster(root / "cluster", nodes=3) as forge:
        leader = forge.cluster.leader_index()
        follower = next(i for i in (1, 2, 3) if i != leader)
        forge.call("forge.repo_create", {"repo": "acme/small"})
        work = root / "small"
        git("init", "-q", "-b", "main", str(work))
        _commit_tree(git, work, {"README.md": b"# Small\n", "a.py": b"x = 1\n"}, "one")
        git("push", forge.url(leader, "acme/small"), "main", cwd=work, token=forge.token)
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
        ).stdout.strip()
        chromium.delete_all_cookies()
        try:
            chromium.get(forge.http(follower) + "/acme/small")
            assert _css(chromium, "#readme h1").text == "Small"
            _go(chromium, _link(chromium, "a.py"))
            assert _all(chromium, "#code .hl")
            _go(chromium, _css(chromium, "#nav-commits"))
            assert _css(chromium, "#commits a.sha").text == sha[:10]
        except BaseException:
            chromium.save_screenshot(str(root / "follower.png"))
            print(f"\nbrowser screenshot: {root / 'follower.png'}")
            raise
