"""The docs hold: every hookspec is documented in docs/hooks.md (like datasette's
tests/test_docs.py), docs/plugins.md lists exactly the members of ``aspen.NodeAPI`` and only
importable stable modules, and its runnable examples run against a real node."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import aspen
from aspen import hookspecs
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLUGIN_GUIDE = (DOCS / "plugins.md").read_text()
#: Guides whose runnable blocks run against a real node (plugins of one name are shared).
RUNNABLE_GUIDES = ("plugins.md", "events.md")


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


def test_plugin_guide_links_the_hook_reference_and_the_protocol():
    assert "(hooks.md)" in PLUGIN_GUIDE and "(protocol.md)" in PLUGIN_GUIDE


def _section(text: str, heading: str) -> str:
    """The text of the ``## …`` section whose heading contains ``heading``."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    (found,) = [part for part in parts if heading in part.splitlines()[0]]
    return found


def test_the_node_api_table_lists_exactly_the_protocol_members():
    table = _section(PLUGIN_GUIDE, "The node API")
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {name for cell in rows for name in re.findall(r"node\.(\w+)", cell)}
    members = {name for name in vars(aspen.NodeAPI) if not name.startswith("_")}
    assert documented == members


def test_the_stable_public_modules_exist():
    listed = re.findall(
        r"^\* `(aspen[\w.]*)`", _section(PLUGIN_GUIDE, "Stable public modules"), flags=re.MULTILINE
    )
    assert "aspen" in listed and "aspen.testing" in listed
    for name in listed:
        importlib.import_module(name)


# ----------------------------------------------------------------------------- runnable docs
@dataclass(frozen=True)
class DocBlock:
    """A runnable python block of a guide: ``plugin <name>`` or ``test``."""

    kind: str
    plugin: str
    line: int
    code: str
    guide: str = "plugins.md"

    def compile(self) -> types.CodeType:
        """The block's code, with tracebacks pointing into the guide."""
        padded = "\n" * self.line + self.code
        return compile(padded, str(DOCS / self.guide), "exec")


def _runnable_blocks(text: str, guide: str = "plugins.md") -> list[DocBlock]:
    """Blocks announced by ``<!-- doctest: plugin NAME -->`` or ``<!-- doctest: test -->``."""
    pattern = re.compile(
        r"^<!-- doctest: (plugin (?P<plugin>[\w-]+)|test) -->\n```python\n(?P<code>.*?)^```$",
        flags=re.MULTILINE | re.DOTALL,
    )
    return [
        DocBlock(
            "plugin" if m["plugin"] else "test",
            m["plugin"] or "",
            text.count("\n", 0, m.start("code")),
            m["code"],
            guide,
        )
        for m in pattern.finditer(text)
    ]


BLOCKS = [
    block
    for guide in RUNNABLE_GUIDES
    for block in _runnable_blocks((DOCS / guide).read_text(), guide)
]
TESTS = [
    (block, node.name)
    for block in BLOCKS
    if block.kind == "test"
    for node in ast.parse(block.code).body
    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
]


def _doc_plugins() -> dict[str, types.ModuleType]:
    """Each plugin of the guide: its blocks, in order, run in one module."""
    modules: dict[str, types.ModuleType] = {}
    for block in BLOCKS:
        if block.kind == "plugin":
            module = modules.setdefault(block.plugin, types.ModuleType(f"doc_{block.plugin}"))
            exec(block.compile(), module.__dict__)
    return modules


def test_the_guide_has_runnable_plugins_and_tests():
    assert {b.plugin for b in BLOCKS if b.kind == "plugin"} >= {"hello", "counter"}
    assert len(TESTS) >= 3
    markers = sum((DOCS / guide).read_text().count("<!-- doctest:") for guide in RUNNABLE_GUIDES)
    assert markers == len(BLOCKS), "a marker not before ```python"


@pytest.mark.parametrize(("block", "name"), TESTS, ids=[name for _, name in TESTS])
def test_guide_example_runs_against_a_real_node(block: DocBlock, name: str, tmp_path) -> None:
    plugins = _doc_plugins()
    pm = make_plugin_manager(load=[], disable=(), plugins=plugins)
    failed = {i.name: i.error for i in pm.infos() if i.name in plugins and i.status != "loaded"}
    assert failed == {}
    namespace: dict = {}
    exec(block.compile(), namespace)
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config, pm) as node:
        fixtures = {
            "node": node,
            "cli": CliInvoker(pm, {"ASPEN_ENDPOINT": node.endpoint, "ASPEN_TOKEN": node.token}),
        }
        test = namespace[name]
        test(**{arg: fixtures[arg] for arg in inspect.signature(test).parameters})
