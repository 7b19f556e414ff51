"""Aspen under test: a local cluster of real node processes running only the secrets
plugin (default durable settings: fsync on every commit), its HTTP API on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aspen
from aspen.node.devcluster import DevCluster
from aspen.testing import free_base_port
from secrets_support.procs import Endpoint, wait_until

#: Environment of every node: only the secrets plugin, its HTTP API on a free port (each
#: node writes the address it bound to ``<data-dir>/secrets-http-address``).
NODE_ENV = {"ASPEN_LOAD_PLUGINS": "secrets", "ASPEN_SECRETS_HTTP_LISTEN": "127.0.0.1:0"}
#: Read modes of the Aspen set-ups (``--aspen-reads``): the node's default linearizable
#: reads (a ReadIndex heartbeat round on several nodes) and its opt-in leader-lease reads
#: (``--lease-reads``, docs/lease-reads.md), the like of OpenBao's active node answering
#: from its own state while it holds the HA lock.
READ_MODES = {"readindex": {}, "lease": {"ASPEN_LEASE_READS": "true"}}
#: The ``storage`` label of each read mode's rows.
STORAGE_LABELS = {"readindex": "lmdb+raft", "lease": "lmdb+raft lease-reads"}
#: File in a node's data directory holding its bound HTTP address.
HTTP_ADDRESS_FILE = "secrets-http-address"


def _leader(cluster: DevCluster) -> int | None:
    """1-based index of the node that says it leads, if any."""
    for i in range(1, cluster.nodes + 1):
        with aspen.connect(cluster.client_endpoint(i), token=cluster.token, timeout=2) as c:
            if c.call("cluster.status")["role"] == "leader":
                return i
    return None


def _secrets_ready(cluster: DevCluster, i: int) -> bool:
    """Whether node ``i``'s secrets plugin opened its keyring."""
    with aspen.connect(cluster.client_endpoint(i), token=cluster.token, timeout=2) as c:
        state = c.call("secrets.status")["state"]
    if state == "sealed":
        raise SystemExit(f"aspen-secrets is sealed on node {i}")
    return state == "ready"


@contextmanager
def aspen_cluster(
    workdir: Path, nodes: int, reads: str = "readindex", source: Path | None = None
) -> Iterator[Endpoint]:
    """Start an ``nodes``-node Aspen cluster in ``workdir`` with the read mode ``reads``
    (:data:`READ_MODES`); yield its leader's endpoint. ``source``: run the nodes from
    another checkout's sources (its ``core/src`` and ``plugins/secrets/src`` first on
    their ``PYTHONPATH``), reported as system ``aspen-baseline``."""
    env = {**NODE_ENV, **READ_MODES[reads]}
    if source is not None:
        env["PYTHONPATH"] = f"{source / 'core' / 'src'}:{source / 'plugins' / 'secrets' / 'src'}"
    cluster = DevCluster(workdir, nodes, free_base_port(nodes), env=env)
    try:
        cluster.up()
        leader = wait_until(lambda: _leader(cluster), "an Aspen leader")
        for i in range(1, nodes + 1):
            wait_until(lambda i=i: _secrets_ready(cluster, i), f"aspen-secrets on node {i}")
        address = (cluster.node_dir(leader) / HTTP_ADDRESS_FILE).read_text().strip()
        yield Endpoint(
            system="aspen" if source is None else "aspen-baseline",
            storage=STORAGE_LABELS[reads],
            nodes=nodes,
            http_url=f"http://{address}",
            token=cluster.token,
            pids=tuple(p.pid for p in cluster.procs),
            rpc_endpoint=cluster.client_endpoint(leader),
        )
    finally:
        cluster.down()
