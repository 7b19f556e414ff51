"""A tampered announcement on the DHT wire: a loopback UDP proxy between a cluster's DHT
node and the node holding an announcement flips one bit of the BEP-44 value in every
answer that carries it. ``discover`` refuses it (exit 1, ``not_found``); through another
path (a second holder reached directly) the genuine announcement is found.

The topology is what keeps it deterministic: the holder H is reachable from cluster B only
through the proxy, and the publisher P is closed once it stored the item on H (a node also
answers for what it put itself), so in the first phase no untampered copy is reachable."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aspen.errors import NotFoundError
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker, LocalCluster, local_cluster, wait_for

pytest.importorskip(
    "libtorrent", reason="the libtorrent wheel (pip install libtorrent) is not installed"
)

from aspen_federation.announce import Announcement
from aspen_federation.dht import DhtDiscovery
from aspen_federation.identity import ClusterKey

ENV = {"ASPEN_FEDERATION_DHT_LISTEN": "127.0.0.1:0", "ASPEN_FEDERATION_DHT_PRIVATE": "true"}


class _FlippingUdpProxy:
    """Relays UDP between one client and ``target``; flips a bit in the middle of
    ``needle`` in every datagram from ``target`` that carries it."""

    def __init__(self, target_port: int, needle: bytes) -> None:
        self.target = ("127.0.0.1", target_port)
        self.needle = needle
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.client: tuple[str, int] | None = None
        self.flipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            data, addr = self.sock.recvfrom(65536)
            if addr != self.target:
                self.client = addr
                self.sock.sendto(data, self.target)
                continue
            at = data.find(self.needle)
            if at >= 0:
                middle = at + len(self.needle) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
                self.flipped += 1
            if self.client is not None:
                self.sock.sendto(data, self.client)

    def __enter__(self) -> _FlippingUdpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _holder_with(key: ClusterKey, value: bytes) -> DhtDiscovery:
    """A DHT node holding ``value`` under ``key``: put there by a publisher that is then
    closed (so that only the holder answers for it)."""
    import anyio

    holder = DhtDiscovery("127.0.0.1:0", private=True)
    publisher = DhtDiscovery("127.0.0.1:0", private=True)
    try:
        publisher.add_contact("127.0.0.1", holder.listen_port())
        wait_for(lambda: publisher.node_count() >= 1, timeout=30)
        wait_for(lambda: anyio.run(publisher.publish, key, value) >= 1, timeout=60)
    finally:
        publisher.close()
    return holder


@pytest.fixture(scope="module")
def cluster_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Cluster B, one node with a DHT session and no contacts yet."""
    with local_cluster(
        Path(tmp_path_factory.mktemp("b")), 1, plugins=["federation"], env=ENV
    ) as cluster:
        cluster.leader_index()
        yield cluster


def _cli(cluster: LocalCluster, *args: str) -> Any:
    pm = make_plugin_manager(load=["federation"])
    invoke = CliInvoker(pm, {"ASPEN_ENDPOINT": cluster.endpoints, "ASPEN_TOKEN": cluster.token})
    return invoke(*args)


def test_a_bit_flipped_announcement_is_refused_and_the_genuine_one_found(
    cluster_b: LocalCluster,
) -> None:
    key = ClusterKey.generate()
    value = Announcement.create(key, "cluster-x", ["127.0.0.1:2379"]).encode(check=True)
    holders = [_holder_with(key, value)]
    try:
        with _FlippingUdpProxy(holders[0].listen_port(), value) as proxy:
            joined = _cli(cluster_b, "federation", "dht-bootstrap", f"127.0.0.1:{proxy.port}")
            assert joined.exit_code == 0, joined.output
            status = "federation", "status", "--json"
            wait_for(lambda: '"dht_nodes": 0' not in _cli(cluster_b, *status).output, 30)

            # only the tampered copy is reachable: refused, exit 1, a typed error
            refused = _cli(cluster_b, "federation", "discover", key.public.hex(), "--json")
            assert refused.exit_code == 1, refused.output
            assert "no announcement found" in refused.output
            assert proxy.flipped >= 1
            with cluster_b.client() as c, pytest.raises(NotFoundError):
                c.call("federation.discover", {"key": key.public.hex()})

            # another path: a second holder, reached directly, has the genuine one
            holders.append(_holder_with(key, value))
            other = f"127.0.0.1:{holders[1].listen_port()}"
            assert _cli(cluster_b, "federation", "dht-bootstrap", other).exit_code == 0

            def found() -> Any:
                got = _cli(cluster_b, "federation", "discover", key.public.hex(), "--json")
                return got.output if got.exit_code == 0 else None

            output = wait_for(found, timeout=90)
            assert '"name": "cluster-x"' in output and key.public.hex() in output
    finally:
        for holder in holders:
            holder.close()
