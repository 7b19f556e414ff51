"""The layers stay as DESIGN.md §2-3 draws them: a static check over the AST of every module.

Each rule names a layer (a package of ``aspen``) and the modules it must not import; every
``import`` and ``from … import`` counts, also inside functions and under ``TYPE_CHECKING``
(a typing-only import still couples the layers). Plugins may import only the stable public
modules that docs/plugins.md lists ("Stable public modules"). A failure names the file, the
line and the offending import.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import aspen

SRC = Path(aspen.__file__).resolve().parent.parent
ROOT = SRC.parent.parent
PLUGIN_GUIDE = ROOT / "docs" / "plugins.md"


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported."""

    module: str  # dotted name of the importing module
    path: Path
    line: int
    name: str  # dotted name of the imported module

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.module}) imports {self.name}"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(root: Path, path: Path) -> list[Import]:
    """Every module ``path`` imports; ``from pkg import sub`` counts as ``pkg.sub`` (and
    not as ``pkg`` when every imported name is a module)."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            submodules = [
                f"{base}.{alias.name}"
                for alias in node.names
                if base.startswith("aspen") and _is_module(f"{base}.{alias.name}")
            ]
            # ``from pkg import sub`` uses ``sub`` alone (when every name is a module)
            names = submodules if len(submodules) == len(node.names) else [base, *submodules]
        found += [Import(module, path, node.lineno, name) for name in names]
    return found


@functools.cache
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # the parent is a module, not a package
        return False


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _core_imports(layer: str) -> list[Import]:
    """Every import made by the layer ``layer`` (a package of ``aspen``, or one module)."""
    package = SRC / layer.replace(".", "/")
    paths = sorted(package.rglob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
    return [imp for path in paths for imp in _imports(SRC, path)]


def _aspen(*names: str) -> tuple[str, ...]:
    return tuple(f"aspen.{name}" for name in names)


#: What the core's top (the node, the CLI, the test kit) builds from; no layer below imports it.
TOP = _aspen("node", "cli", "testing")

#: layer -> (modules it must not import, why). Bottom-up, as DESIGN.md §2-3 draws them:
#: the shared vocabulary (errors, limits, events, lazy); raft, storage, transport and http
#: side by side; kv on storage; rpc, plugins, api and hookspecs; the client; the node; the CLI
#: and aspen.testing on top. Every module of the tree belongs to a layer (test below).
FORBIDDEN: dict[str, tuple[tuple[str, ...], str]] = {
    **{
        base: (
            (
                *TOP,
                *_aspen("raft", "storage", "kv", "transport", "http", "rpc", "plugins"),
                *_aspen("client", "api", "hookspecs"),
            ),
            "the shared vocabulary imports no layer",
        )
        for base in _aspen("errors", "limits", "events", "lazy")
    },
    "aspen.raft": (
        (
            *("anyio", "asyncio", "lmdb", "socket", "ssl", "threading", "time", "os"),
            *TOP,
            *_aspen("transport", "storage", "kv", "rpc", "http", "plugins", "client"),
        ),
        "Raft is a sans-IO state machine: no I/O, no clock, no other layer of aspen",
    ),
    "aspen.storage": (
        (*TOP, *_aspen("raft", "kv", "transport", "http", "rpc", "plugins", "client")),
        "storage is LMDB alone: below the state machine, the node and the RPC layer",
    ),
    "aspen.transport": (
        (*TOP, *_aspen("raft", "storage", "kv", "http", "rpc", "plugins", "client")),
        "links carry frames; they know no node, KV or storage",
    ),
    "aspen.http": (
        (*TOP, *_aspen("raft", "storage", "kv", "transport", "rpc", "plugins", "client")),
        "the HTTP helper serves a plugin's ASGI app; it knows no node or KV",
    ),
    "aspen.kv": (
        (*TOP, *_aspen("raft", "transport", "http", "rpc", "plugins", "client")),
        "the state machine is applied the same way everywhere: no node, RPC or network",
    ),
    "aspen.auth": (
        (
            *TOP,
            *_aspen("raft", "storage", "http", "plugins", "client", "api", "hookspecs"),
            *_aspen("rpc.server", "rpc.session", "rpc.registry", "rpc.context", "rpc.flow"),
            *_aspen("kv.state_machine", "kv.reads"),
        ),
        "capabilities and tokens are checked below the RPC layer; they know no node or server",
    ),
    "aspen.rpc": (
        (*TOP, *_aspen("raft", "storage", "kv", "client")),
        "the RPC layer serves handlers; it does not know the node or its state",
    ),
    "aspen.plugins": (
        (*TOP, *_aspen("raft", "storage", "kv", "transport", "client")),
        "the plugin manager loads plugins; it does not know the node",
    ),
    "aspen.api": (
        (*TOP, *_aspen("raft", "storage", "kv", "transport", "rpc", "plugins", "client")),
        "NodeAPI is the typed surface plugins get, not its implementation",
    ),
    "aspen.hookspecs": (
        (*TOP, *_aspen("raft", "storage", "kv", "transport", "client")),
        "the hook signatures name the API and the events, not the node",
    ),
    "aspen.client": (
        (
            *TOP,
            *_aspen("storage", "raft", "http", "rpc.server", "rpc.registry", "plugins.manager"),
            *_aspen("kv.state_machine", "kv.reads", "kv.commands", "kv.leases"),
        ),
        "the client installs without the server (it may share aspen.kv.keys and aspen.transport)",
    ),
    "aspen.blobs": (
        # members' blob instructions and bytes use the peer links; the service's own KV
        # writes (blob metadata) use a cluster client (aspen.client) with a token of its own
        _aspen("cli", "testing"),
        "the blob store is a service of the node, served by the CLI and the test kit",
    ),
    "aspen.journal": (
        (*TOP, *_aspen("raft", "transport", "http", "plugins", "client")),
        "the event journal is part of the state machine and its service: no node or network",
    ),
    "aspen.node": (
        _aspen("cli", "testing", "client"),
        "the node is served by the CLI and the test kit, and never calls itself as a client",
    ),
}

#: Modules on top of every layer: they may import anything of the core.
UNLAYERED = {"aspen", "aspen.__main__", "aspen.cli", "aspen.testing"}


def test_every_module_of_the_tree_has_a_layer():
    tops = {
        _module_name(SRC, path if path.suffix else path / "__init__.py")
        for path in (SRC / "aspen").iterdir()
        if (path.suffix == ".py") or (path / "__init__.py").exists()
    }
    tops.add("aspen")
    missing = sorted(tops - set(FORBIDDEN) - UNLAYERED)
    assert not missing, f"give these a layer in FORBIDDEN (or list them as UNLAYERED): {missing}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    forbidden, why = FORBIDDEN[layer]
    bad = [str(imp) for imp in _core_imports(layer) if _within(imp.name, forbidden)]
    assert not bad, f"{layer} must not import {', '.join(forbidden)} ({why}):\n" + "\n".join(bad)


def test_the_raft_core_uses_no_global_randomness():
    for path in (SRC / "aspen" / "raft").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
            ):
                assert node.attr == "Random", f"{path.name}:{node.lineno} uses random.{node.attr}"


def _stable_public_modules() -> tuple[str, ...]:
    text = PLUGIN_GUIDE.read_text()
    section = text[text.index("## 11. Stable public modules") :]
    section = section[: section.index("\n## ", 1)]
    return tuple(re.findall(r"^\* `(aspen[\w.]*)`", section, flags=re.MULTILINE))


#: Private imports plugins made before this test existed, each to be replaced by a public
#: name (or the module listed in docs/plugins.md). Do not add to this list.
KNOWN_PRIVATE_IMPORTS = {
    ("aspen_hooks.executors.forward", "aspen.transport.tokens"),  # parse_cluster_token
    ("aspen_secrets.keyring", "aspen.transport.tokens"),  # token_secret
}


def _is_public(name: str, public: tuple[str, ...]) -> bool:
    """``aspen`` itself is public (by its names); a listed module also by its submodules."""
    return name == "aspen" or _within(name, tuple(p for p in public if p != "aspen"))


def test_plugins_import_only_the_stable_public_modules():
    public = _stable_public_modules()
    assert "aspen.plugins.types" in public, "docs/plugins.md lost its stable module list"
    bad, used_exceptions = [], set()
    for src in sorted((ROOT / "plugins").glob("*/src")):
        for path in sorted(src.rglob("*.py")):
            for imp in _imports(src, path):
                if not _within(imp.name, ("aspen",)) or _is_public(imp.name, public):
                    continue
                if (imp.module, imp.name) in KNOWN_PRIVATE_IMPORTS:
                    used_exceptions.add((imp.module, imp.name))
                    continue
                bad.append(str(imp))
    assert not bad, (
        "plugins may import only the stable public modules of docs/plugins.md "
        f"({', '.join(public)}):\n" + "\n".join(bad)
    )
    assert used_exceptions == KNOWN_PRIVATE_IMPORTS, "drop the fixed ones from the list"


def test_the_rules_see_real_imports():
    """The checker itself: it finds a known import of each kind."""
    node_imports = {imp.name for imp in _core_imports("aspen.node")}
    assert {"aspen.raft", "aspen.storage", "aspen.kv.state_machine", "anyio"} <= node_imports
    assert "aspen.kv.keys" in {imp.name for imp in _core_imports("aspen.client")}
