"""Every hookspec is documented in docs/hooks.md (like datasette's tests/test_docs.py)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from aspen import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _hookspec_names() -> list[str]:
    return sorted(
        name
        for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(func, f"{hookspecs.PROJECT_NAME}_spec")
    )


def _sections(text: str) -> dict[str, str]:
    """Map each ``### `aspen_x` `` heading to the text under it."""
    parts = re.split(r"^### `(aspen_\w+)`\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


SECTIONS = _sections((DOCS / "hooks.md").read_text())


def test_there_are_hookspecs():
    assert "aspen_on_kv_event" in _hookspec_names()


@pytest.mark.parametrize("hook", _hookspec_names())
def test_hookspec_is_documented_with_its_signature(hook):
    assert hook in SECTIONS, f"docs/hooks.md has no '### `{hook}`' section"
    section = SECTIONS[hook]
    assert f"def {hook}(" in section, f"the {hook} section does not show its signature"
    for arg in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert re.search(rf"\b{arg}\b", section), f"{hook}: argument {arg!r} not documented"
    assert "@aspen.hookimpl" in section, f"the {hook} section has no example"


def test_no_documented_hook_is_missing_from_hookspecs():
    assert sorted(SECTIONS) == _hookspec_names()


def test_plugin_guide_links_the_hook_reference():
    assert "hooks.md" in (DOCS / "plugins.md").read_text()
