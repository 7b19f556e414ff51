"""Leases across a leader change on a real 3-process cluster (issue 18, scaled down): the
new leader loads every lease (off its event loop) and keeps serving them: each keeps its
keys and a TTL no longer than granted, keepalives renew it, and a lease nobody renews is
expired by the new leader."""

from __future__ import annotations

import pytest

import aspen
from aspen.client.txn import Op
from aspen.errors import AspenError
from aspen.testing import LocalCluster, wait_for

pytestmark = pytest.mark.slow

LEASES = 300
TTL = 120
SHORT_TTL = 4


def _status(c: LocalCluster, i: int) -> dict:
    with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as client:
        return client.call("cluster.status")


def test_leases_survive_a_leader_change_with_their_ttl_and_keys(cluster: LocalCluster) -> None:
    old = cluster.leader_index()
    with aspen.connect(cluster.client_endpoint(old), token=cluster.token, timeout=30) as c:
        ids = [c.lease.grant(TTL).id for _ in range(LEASES)]
        c.kv.txn(success=[Op.put(f"l/{n:04d}", "v", lease=i) for n, i in enumerate(ids)])
        short = c.lease.grant(SHORT_TTL).id
        c.kv.put("short", "v", lease=short)
        target = next(i for i in range(1, 4) if i != old)
        c.call("cluster.transfer_leader", {"id": _status(cluster, target)["id"]})
    new = wait_for(
        lambda: (
            next((i for i in range(1, 4) if _status(cluster, i)["role"] == "leader"), None)
            if _status(cluster, old)["role"] != "leader"
            else None
        ),
        ignore=(AspenError, OSError),
        message="leadership moved",
    )
    assert new != old
    with aspen.connect(cluster.client_endpoint(new), token=cluster.token, timeout=30) as c:
        assert set(ids) <= set(c.lease.list())
        info = c.lease.ttl(ids[0], keys=True)
        assert 0 < info.ttl <= TTL and info.granted_ttl == TTL and info.keys == [b"l/0000"]
        assert c.lease.keepalive(ids[-1]) == TTL
        assert all(0 < c.lease.ttl(i).ttl <= TTL for i in ids[::50])
        wait_for(lambda: c.kv.get("short") is None, timeout=60, message="the short lease expired")
        assert short not in c.lease.list()
        assert len(c.kv.range("l/").kvs) == LEASES
