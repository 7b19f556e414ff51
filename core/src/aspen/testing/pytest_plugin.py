"""pytest fixtures for Aspen and plugin authors (loaded automatically via ``pytest11``).

* ``pm``: a plugin manager. Without a marker it loads the installed plugins (honouring
  ``ASPEN_LOAD_PLUGINS`` / ``ASPEN_DISABLE_PLUGINS``). With
  ``@pytest.mark.aspen_plugins("hello", other=OtherPlugin())`` it loads only the named
  installed plugins plus the given in-process plugin objects (keyword = plugin name).
* ``node``: a real node (real LMDB, real TCP on 127.0.0.1, a free port) in a temporary
  directory, running in a background thread with ``pm``'s plugins.
* ``cli``: runs the ``aspen`` CLI in-process against ``node``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from aspen.testing.cli import CliInvoker

if TYPE_CHECKING:
    from aspen.plugins.manager import AspenPluginManager

__all__ = ["cli", "node", "pm", "pm_from_marker"]

_MARKER = (
    "aspen_plugins(*names, **objects): the `pm` fixture loads only the installed plugins "
    "named, plus in-process plugin objects registered under their keyword"
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``aspen_plugins`` marker."""
    config.addinivalue_line("markers", _MARKER)


def pm_from_marker(marker: pytest.Mark | None) -> AspenPluginManager:
    """The plugin manager an ``aspen_plugins`` marker asks for (None: the installed plugins)."""
    from aspen.plugins.manager import make_plugin_manager

    if marker is None:
        return make_plugin_manager()
    names = list(marker.args)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(
            "aspen_plugins: positional arguments are installed plugin names (str); "
            "pass plugin objects as name=object"
        )
    return make_plugin_manager(load=names, disable=(), plugins=marker.kwargs)


@pytest.fixture
def pm(request: pytest.FixtureRequest) -> AspenPluginManager:
    """A plugin manager: the installed plugins, or those an ``aspen_plugins`` marker names."""
    return pm_from_marker(request.node.get_closest_marker("aspen_plugins"))


@pytest.fixture
def node(pm: AspenPluginManager, tmp_path: Any) -> Iterator[Any]:
    """A running :class:`aspen.node.runner.NodeThread` on 127.0.0.1 with ``pm``'s plugins."""
    from aspen.node.config import NodeConfig
    from aspen.node.runner import NodeThread

    config = NodeConfig(data_dir=tmp_path / "aspen-node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config, pm) as running:
        yield running


@pytest.fixture
def cli(node: Any, pm: AspenPluginManager) -> CliInvoker:
    """Run the ``aspen`` CLI against ``node``: ``cli("kv", "put", "k", "v").exit_code == 0``."""
    return CliInvoker(pm, {"ASPEN_ENDPOINT": node.endpoint, "ASPEN_TOKEN": node.token})
