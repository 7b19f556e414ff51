"""Forge tests: in-process nodes serve git on a free port, never on 8300."""

from __future__ import annotations

import pytest


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
