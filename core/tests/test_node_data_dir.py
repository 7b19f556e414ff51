"""A node's data directory is private: 0700 directories, 0600 files (keys, certificates,
tokens, join token, LMDB), also when it was created with looser modes before."""

from __future__ import annotations

import stat
from pathlib import Path

from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by relative path."""
    paths = [root, *root.rglob("*")]
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in paths}


def _loose(modes: dict[str, int], root: Path) -> dict[str, int]:
    """The entries whose mode is not 0700 (directories) or 0600 (files)."""
    return {
        name: mode
        for name, mode in modes.items()
        if mode != (0o700 if (root / name).is_dir() else 0o600)
    }


def test_a_new_node_keeps_its_data_private(tmp_path: Path) -> None:
    root = tmp_path / "node"
    with NodeThread(NodeConfig(data_dir=root, listen="127.0.0.1:0")) as node:
        node.client().close()
        modes = _modes(root)
    for name in ("db/data.mdb", "node.key", "root-token", "join-token", "cluster-ca.key"):
        assert modes[name] == 0o600, name
    assert _loose(modes, root) == {}


def test_an_existing_data_dir_is_tightened_on_start(tmp_path: Path) -> None:
    root = tmp_path / "node"
    config = NodeConfig(data_dir=root, listen="127.0.0.1:0")
    with NodeThread(config):
        pass
    for path in [root, *root.rglob("*")]:  # as an older version (umask 022) left it
        path.chmod(0o755 if path.is_dir() else 0o644)
    with NodeThread(config) as node:
        node.client().close()
        assert _loose(_modes(root), root) == {}
