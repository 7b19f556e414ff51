"""Forge tests: in-process nodes serve git on a free port, never on 8300."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forge_git import ForgeCluster, Git, forge_cluster


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Git:
    """The real git CLI, isolated from the user's configuration (one home per module)."""
    return Git(tmp_path_factory.mktemp("git-home"))


@pytest.fixture(scope="module")
def forge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ForgeCluster]:
    """A fresh 3-node forge cluster for the module (modules that seed one define their own)."""
    name = request.module.__name__.removeprefix("test_").replace("_", "-")
    with forge_cluster(tmp_path_factory.mktemp(name)) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _forge_http_on_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASPEN_FORGE_HTTP_LISTEN", "127.0.0.1:0")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the item (``item.rep_call``…), so that a fixture can
    tell after the test whether it failed (the browser fixture saves a screenshot then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium per test module (skips without one)."""
    from forge_browser import missing, start_chromium

    reason = missing()
    if reason:
        pytest.skip(f"browser tests need headless Chromium: {reason}")
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The module's browser, logged out; a screenshot lands in tmp_path if the test fails."""
    from forge_browser import screenshot_on_failure

    chromium.delete_all_cookies()
    yield chromium
    screenshot_on_failure(request, chromium, tmp_path / "screenshots")
