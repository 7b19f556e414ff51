"""Forge tests: in-process nodes serve git on a free port, never on 8300."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _forge_http_on_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASPEN_FORGE_HTTP_LISTEN", "127.0.0.1:0")
