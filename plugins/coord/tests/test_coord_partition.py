"""aspen-coord on a node cut off from the cluster by a real network partition (every
node's peer address is a fault-injecting proxy): ``election observe`` and ``election
leader`` through it answer ``unavailable`` naming COORD_ELECTION_READ_SECONDS instead of
waiting the core's proposal timeout, as etcd's election API never answers from a stale
replica either; after the heal they serve again, and the other nodes serve throughout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aspen.errors import UnavailableError
from aspen.testing import free_base_port, local_cluster, wait_for
from aspen.testing.faultproxy import FaultProxy
from aspen.transport.ports import PEER_PORT_OFFSET
from aspen_coord.client import Coord

pytestmark = pytest.mark.slow


@pytest.fixture
def partitioned(tmp_path) -> Iterator[tuple[Coord, Coord, FaultProxy]]:
    """A 3-node cluster with an election led by ``a``; yields a client of a follower
    whose peer proxy is then cut, a client of another node, and that proxy."""
    base = free_base_port(3)
    proxies = {i: FaultProxy(("127.0.0.1", base + PEER_PORT_OFFSET + i)) for i in (1, 2, 3)}
    advertise = {i: p.address for i, p in proxies.items()}
    try:
        with local_cluster(
            tmp_path / "c", 3, plugins=["coord"], base_port=base, advertise=advertise
        ) as c:
            leader = c.leader_index()
            cut = next(i for i in (1, 2, 3) if i != leader)
            with c.client(cut) as cut_client, c.client(leader) as good_client:
                coord_cut, coord_good = Coord(cut_client), Coord(good_client)
                leadership = coord_good.campaign("e", b"a", ttl=30)
                try:
                    yield coord_cut, coord_good, proxies[cut]
                finally:
                    leadership.release()
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_observe_on_a_cut_off_node_is_unavailable_then_serves_after_the_heal(
    partitioned: tuple[Coord, Coord, FaultProxy],
) -> None:
    cut, good, proxy = partitioned
    with cut.observe("e") as seen:
        assert next(seen)["leader"]["value"] == b"a"
    proxy.partition()
    with pytest.raises(UnavailableError, match="COORD_ELECTION_READ_SECONDS"):
        cut.observe("e")
    with pytest.raises(UnavailableError, match="COORD_ELECTION_READ_SECONDS"):
        cut.call("election.leader", {"name": "e"})
    # the rest of the cluster keeps serving the election
    with good.observe("e") as seen:
        assert next(seen)["leader"]["value"] == b"a"
    proxy.heal()

    def observed() -> bool:
        try:
            with cut.observe("e") as seen:
                return next(seen)["leader"]["value"] == b"a"
        except UnavailableError:
            return False

    wait_for(observed, timeout=60, message="the healed node observes the election again")
