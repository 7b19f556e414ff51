"""A local multi-node cluster for tests: real ``aspen node start`` processes on 127.0.0.1.

:func:`local_cluster` starts one (free ports, a fresh data directory) and stops it at the
end of the ``with`` block; the ``cluster`` fixture of :mod:`aspen.testing.pytest_plugin`
gives one to a test. Node processes run this interpreter (``sys.executable -m aspen``), so
they load the plugins installed next to the tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aspen.errors import AspenError
from aspen.node.devcluster import DevCluster
from aspen.testing.waiting import free_base_port, wait_for

__all__ = ["LocalCluster", "local_cluster"]

#: Seconds :meth:`LocalCluster.leader_index` waits for a leader by default.
LEADER_WAIT_SECONDS = 30.0


class LocalCluster(DevCluster):
    """A :class:`~aspen.node.devcluster.DevCluster` plus what tests ask of it.

    Node ``i`` (1-based) is ``client_endpoint(i)`` with data in ``node_dir(i)``, its output
    in ``log(i)``; ``procs[i - 1]`` is its process, ``kill(i)`` and ``restart(i)`` act on it.
    """

    @property
    def endpoints(self) -> str:
        """Every node's client endpoint, comma-separated (what ``aspen.connect`` takes)."""
        return ",".join(self.client_endpoint(i) for i in range(1, self.nodes + 1))

    def client(self, i: int | None = None, *, timeout: float = 10.0) -> Any:
        """A sync client of node ``i``, or of the whole cluster (it follows the leader)."""
        import aspen

        endpoint = self.endpoints if i is None else self.client_endpoint(i)
        return aspen.connect(endpoint, token=self.token, timeout=timeout)

    def log(self, i: int) -> Path:
        """The file node ``i``'s output goes to."""
        return self.data_dir / f"n{i}.log"

    def alive(self, i: int) -> bool:
        """Whether node ``i``'s process is running."""
        return self.procs[i - 1].poll() is None

    def role(self, i: int) -> str | None:
        """Node ``i``'s Raft role (``leader``, ``follower``…), or ``None`` if it does not answer."""
        if not self.alive(i):
            return None
        try:
            with self.client(i, timeout=2) as c:
                return str(c.call("cluster.status")["role"])
        except (AspenError, OSError):
            return None

    def leader_index(
        self, *, among: Iterable[int] | None = None, timeout: float = LEADER_WAIT_SECONDS
    ) -> int:
        """Index of the node that is leader (of those ``among``), waiting until there is one."""
        candidates = list(among) if among is not None else range(1, self.nodes + 1)

        def find() -> int | None:
            return next((i for i in candidates if self.role(i) == "leader"), None)

        return wait_for(find, timeout=timeout, interval=0.1, message="a leader is elected")

    def node_id(self, i: int) -> str:
        """Node ``i``'s id."""
        with self.client(i) as c:
            return str(c.call("cluster.status")["id"])


@contextlib.contextmanager
def local_cluster(
    data_dir: Path,
    nodes: int = 3,
    *,
    plugins: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
    base_port: int | None = None,
    advertise: Mapping[int, str] | None = None,
) -> Iterator[LocalCluster]:
    """Start a fresh ``nodes``-node cluster under ``data_dir``; stop every node at the end.

    ``plugins`` names the installed plugins the nodes load (``None``: what the environment
    says, by default every installed one); ``env`` is added to each node's environment;
    ``base_port`` defaults to a free range; ``advertise`` maps a node index to the peer
    address the others should use for it (a fault-injecting proxy).
    """
    node_env = dict(env or {})
    if plugins is not None:
        node_env["ASPEN_LOAD_PLUGINS"] = ",".join(plugins)
    cluster = LocalCluster(
        data_dir,
        nodes,
        base_port if base_port is not None else free_base_port(nodes),
        advertise=dict(advertise or {}),
        env=node_env,
    )
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
