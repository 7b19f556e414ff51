"""pytest fixtures for Aspen and plugin authors (loaded automatically via ``pytest11``).

* ``pm``: a plugin manager. Without a marker it loads the installed plugins (honouring
  ``ASPEN_LOAD_PLUGINS`` / ``ASPEN_DISABLE_PLUGINS``). With
  ``@pytest.mark.aspen_plugins("hello", other=OtherPlugin())`` it loads only the named
  installed plugins plus the given in-process plugin objects (keyword = plugin name).
* ``node``: a real node (real LMDB, real TCP on 127.0.0.1, a free port) in a temporary
  directory, running in a background thread with ``pm``'s plugins.
* ``cli``: runs the ``aspen`` CLI in-process against ``node``.
* ``cluster``: a :class:`aspen.testing.cluster.LocalCluster` of real node processes (3 by
  default; ``@pytest.mark.aspen_cluster(nodes=5, env={...})`` or indirect parametrization
  with the node count), loading the installed plugins an ``aspen_plugins`` marker names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from aspen.testing.cli import CliInvoker

if TYPE_CHECKING:
    from pathlib import Path

    from aspen.plugins.manager import AspenPluginManager
    from aspen.testing.cluster import LocalCluster

__all__ = ["cli", "cluster", "node", "pm", "pm_from_marker"]

_MARKER = (
    "aspen_plugins(*names, **objects): the `pm` fixture loads only the installed plugins "
    "named, plus in-process plugin objects registered under their keyword"
)


_CLUSTER_MARKER = (
    "aspen_cluster(nodes=3, env=None): the `cluster` fixture starts that many node "
    "processes, with `env` added to their environment"
)
#: Nodes the ``cluster`` fixture starts unless told otherwise.
DEFAULT_CLUSTER_NODES = 3


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``aspen_plugins`` and ``aspen_cluster`` markers."""
    config.addinivalue_line("markers", _MARKER)
    config.addinivalue_line("markers", _CLUSTER_MARKER)


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


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    """A fresh local cluster of real node processes on 127.0.0.1, stopped after the test.

    Size: ``request.param`` (``@pytest.mark.parametrize("cluster", [3, 5], indirect=True)``),
    else ``@pytest.mark.aspen_cluster(nodes=N)``, else 3. Plugins: the installed ones an
    ``aspen_plugins`` marker names (in-process objects cannot go into another process),
    else what ``ASPEN_LOAD_PLUGINS`` says.
    """
    from aspen.testing.cluster import local_cluster

    marker = request.node.get_closest_marker("aspen_cluster")
    options = dict(marker.kwargs) if marker else {}
    unknown = set(options) - {"nodes", "env"}
    if unknown:
        raise pytest.UsageError(f"aspen_cluster: unknown option(s) {sorted(unknown)}")
    nodes = getattr(request, "param", None) or options.get("nodes", DEFAULT_CLUSTER_NODES)
    plugins = request.node.get_closest_marker("aspen_plugins")
    if plugins is not None and plugins.kwargs:
        raise pytest.UsageError(
            "aspen_plugins: the cluster fixture runs node processes, which load installed "
            f"plugins by name only, not the objects given as {sorted(plugins.kwargs)}"
        )
    with local_cluster(
        tmp_path / "cluster",
        nodes,
        plugins=list(plugins.args) if plugins is not None else None,
        env=options.get("env"),
    ) as running:
        yield running
