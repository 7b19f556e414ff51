"""``node.blobs.put_durable`` on a real 3-node cluster (node threads, TLS, LMDB) with one
member stopped: a plain put cannot reach the cluster's replica count (3) and is refused;
the durable put is acknowledged on a majority (2) and repaired to 3 once the member is
back. aspen-forge (packs) and aspen-pijul (changes) store their blobs this way."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from aspen.errors import AspenError, UnavailableError
from aspen.node.config import NodeConfig
from aspen.node.devcluster import JOIN_TOKEN_FILE
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import free_base_port, wait_for
from aspen.transport.ports import PEER_PORT_OFFSET

#: Seconds the cluster has to form, elect, promote or repair.
SETTLE_SECONDS = 60.0


def _config(root: Path, base: int, i: int, join: str | None = None) -> NodeConfig:
    return NodeConfig(
        data_dir=root / f"n{i}",
        listen=f"127.0.0.1:{base + i}",
        peer_listen=f"127.0.0.1:{base + PEER_PORT_OFFSET + i}",
        join=join,
        sync=False,
    )


def _start(config: NodeConfig) -> NodeThread:
    return NodeThread(config, make_plugin_manager(load=[])).start()


class Cluster:
    """Three node threads in this process; node ``i`` is ``nodes[i - 1]``."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root, self.stack, self.base = root, stack, free_base_port(3)
        first = self._enter(_config(root, self.base, 1))
        join = f"{(root / 'n1' / JOIN_TOKEN_FILE).read_text().strip()}@127.0.0.1:"
        join += str(self.base + PEER_PORT_OFFSET + 1)
        self.nodes = [first] + [self._enter(_config(root, self.base, i, join)) for i in (2, 3)]
        with first.client(timeout=10) as c:
            wait_for(lambda: self._promoted(c), timeout=SETTLE_SECONDS, message="3 voters")

    def _enter(self, config: NodeConfig) -> NodeThread:
        node = _start(config)
        self.stack.callback(lambda: node.stop())
        return node

    @staticmethod
    def _promoted(c) -> bool:
        conf = c.call("cluster.status")["conf"]
        for learner in conf["learners"]:
            # refused while it has not caught up: the next look tries again
            with contextlib.suppress(AspenError):
                c.call("cluster.promote", {"id": learner})
        return not conf["learners"] and len(conf["voters"]) == 3

    def leader(self) -> int:
        """The index of the node that leads (waits for one)."""

        def find() -> int | None:
            for i, n in enumerate(self.nodes, 1):
                if n._portal is not None and n.node.parts.cluster.replicator.is_leader:
                    return i
            return None

        return wait_for(find, timeout=SETTLE_SECONDS, message="a leader")

    def restart(self, i: int) -> None:
        """Start node ``i`` again on its data (it was stopped)."""
        self.nodes[i - 1] = self._enter(_config(self.root, self.base, i))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with pytest.MonkeyPatch.context() as mp, ExitStack() as stack:
        mp.setenv("ASPEN_BLOB_REPAIR_INTERVAL_SECONDS", "0.3")
        yield Cluster(tmp_path_factory.mktemp("majority"), stack)


def test_put_durable_with_every_member_up_holds_the_replica_count(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    blobs = node.node.blobs

    async def pieces():
        yield b"a" * 1000
        yield b"b" * 1000

    ref = node.call(functools.partial(blobs.put_durable, pieces(), pin="test/all", size=2000))
    assert ref.size == 2000
    assert len(node.call(blobs.stat, ref.hash)["holders"]) == 3


def test_put_durable_falls_back_to_a_majority_and_is_repaired(cluster: Cluster) -> None:
    leader = cluster.leader()
    down = 3 if leader != 3 else 2
    put_via = next(i for i in (1, 2, 3) if i != down)
    cluster.nodes[down - 1].stop()
    node = cluster.nodes[put_via - 1]
    blobs = node.node.blobs
    data = os.urandom(300 * 1024)

    with pytest.raises(UnavailableError, match="2 of the 3 nodes"):
        node.call(functools.partial(blobs.put, data, pin="test/plain"))
    ref = node.call(functools.partial(blobs.put_durable, data, pin="test/durable"))
    assert ref.replicas == 2
    info = node.call(blobs.stat, ref.hash)
    assert len(info["holders"]) == 2 and info["replicas"] == 3
    assert info["pins"] == ["test/durable"]
    got = node.call(_read, blobs, ref.hash)
    assert got == data

    cluster.restart(down)
    wait_for(
        lambda: len(node.call(blobs.stat, ref.hash)["holders"]) == 3,
        timeout=SETTLE_SECONDS,
        message="the repairer copies the blob to the member that came back",
    )
    back = cluster.nodes[down - 1].node.blobs
    wait_for(lambda: back.store.has(ref.hash), timeout=SETTLE_SECONDS)

    # below a majority the durable put is refused too, naming what it needed
    for i in (1, 2, 3):
        if i != put_via:
            cluster.nodes[i - 1].stop()
    with pytest.raises(UnavailableError, match="1 of the 3 nodes asked for, at least 2 needed"):
        node.call(functools.partial(blobs.put_durable, os.urandom(1000), pin="test/lost"))


async def _read(blobs, digest: str) -> bytes:
    return b"".join([piece async for piece in blobs.open(digest)])
