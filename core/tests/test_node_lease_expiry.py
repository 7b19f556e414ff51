"""Many leases running out at once on a real node (issue 18, "lease expiry with 100k
leases, 1M keys attached", scaled down to 2,000 leases x 20 keys with a small bound): the
leader expires them in commands that each delete at most ``LEASE_EXPIRY_SLICE_KEYS`` keys,
one after the other, until every key is gone. A watch sees each command as one revision,
so the bound is checked on what was applied, not on timing. The leases are granted for an
hour and the leader's lease clock is then moved past their deadlines: all run out at once,
however long the machine took to attach their keys."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from aspen import limits
from aspen.client.txn import Op
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.testing import wait_for

LEASES = 2_000
KEYS_PER_LEASE = 20
#: The bound under test, small enough that the expiry takes many commands.
SLICE_KEYS = 500


class DeleteCounter(threading.Thread):
    """Watches ``l/`` and counts the deletes of each revision until ``expected`` were seen."""

    def __init__(self, node: NodeThread, expected: int) -> None:
        super().__init__(daemon=True)
        self.node, self.expected = node, expected
        self.per_revision: Counter[int] = Counter()
        self.watching = threading.Event()

    def run(self) -> None:
        """Count deletes until every expected one was seen."""
        with self.node.client(timeout=60) as c, c.watch("l/", prefix=True) as watch:
            self.watching.set()
            for response in watch:
                for event in response.events:
                    if event.type == "delete":
                        self.per_revision[event.kv.mod_revision] += 1
                if sum(self.per_revision.values()) >= self.expected:
                    return


def _clock_moved(node: NodeThread, seconds: float) -> None:
    """On the node's loop: its leader's lease clock runs ``seconds`` ahead from now on."""
    node.node.parts.leases._clock = lambda: time.monotonic() + seconds


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node in this process proposes expiry commands of at most ``SLICE_KEYS`` keys."""
    monkeypatch.setattr(limits, "LEASE_EXPIRY_SLICE_KEYS", SLICE_KEYS)


def test_thousands_of_leases_expiring_at_once_are_deleted_in_bounded_commands(
    tmp_path, small_slices
) -> None:
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node, node.client(timeout=60) as c:
        ids = [c.lease.grant(3600).id for _ in range(LEASES)]
        for start in range(0, LEASES, 50):
            c.kv.txn(
                success=[
                    Op.put(f"l/{n:05d}/{k:02d}", "v", lease=ids[n])
                    for n in range(start, start + 50)
                    for k in range(KEYS_PER_LEASE)
                ]
            )
        counter = DeleteCounter(node, LEASES * KEYS_PER_LEASE)
        counter.start()
        assert counter.watching.wait(30)
        node.call(_clock_moved, node, 3601)
        wait_for(lambda: not c.kv.range("l/", limit=1).kvs, timeout=120)
        counter.join(60)
        assert sum(counter.per_revision.values()) == LEASES * KEYS_PER_LEASE
        assert max(counter.per_revision.values()) <= SLICE_KEYS
        assert len(counter.per_revision) >= LEASES * KEYS_PER_LEASE // SLICE_KEYS
        assert c.lease.list() == []


def test_revoking_one_lease_with_many_keys_deletes_them_in_bounded_commands(
    tmp_path, small_slices
) -> None:
    """``lease.revoke`` of one lease with 2,000 keys: sliced like an expiry, answered once
    every key and the lease are gone."""
    keys = 2_000
    config = NodeConfig(data_dir=tmp_path / "node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config) as node, node.client(timeout=60) as c:
        lease = c.lease.grant(3600).id
        for start in range(0, keys, limits.MAX_TXN_OPS):
            c.kv.txn(
                success=[
                    Op.put(f"l/{n:05d}", "v", lease=lease)
                    for n in range(start, start + limits.MAX_TXN_OPS)
                ]
            )
        counter = DeleteCounter(node, keys)
        counter.start()
        assert counter.watching.wait(30)
        c.lease.revoke(lease)
        assert not c.kv.range("l/", limit=1).kvs and c.lease.list() == []
        counter.join(60)
        assert sum(counter.per_revision.values()) == keys
        assert max(counter.per_revision.values()) <= SLICE_KEYS
        assert len(counter.per_revision) == keys // SLICE_KEYS
