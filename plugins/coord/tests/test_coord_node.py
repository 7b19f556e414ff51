"""aspen-coord on one real node: the CLI contract, each primitive's behaviour, and typed
errors for bad input."""

from __future__ import annotations

import json
import threading

import anyio
import pytest

import aspen
from aspen.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen_coord import limits
from aspen_coord.client import AsyncCoord, Coord
from aspen_coord.errors import BusyError, FencedError, NotHeldError

pytestmark = pytest.mark.aspen_plugins("coord")
BAD = InvalidArgumentError
TAGS = ["t"] * (limits.COORD_MAX_TAGS + 1)


def test_cli_contract_lock_and_counter(node, cli):
    got = cli("coord", "lock", "acquire", "jobs", "--ttl", "10", "--json")
    assert got.exit_code == 0, got.stderr
    held = json.loads(got.stdout)
    assert set(held) == {"fence", "lease"} and held["fence"] > 0
    busy = cli("coord", "lock", "try", "jobs", "--ttl", "10", "--json")
    assert busy.exit_code != 0 and "queue" in busy.stderr
    written = cli(
        "coord", "lock", "write", "jobs", "--lease", str(held["lease"]),
        "--fence", str(held["fence"]), "--put", "/app/x", "1", "--json",
    )  # fmt: skip
    assert written.exit_code == 0, written.stderr
    released = cli("coord", "lock", "release", "jobs", "--lease", str(held["lease"]))
    assert released.exit_code == 0, released.stderr
    again = json.loads(cli("coord", "lock", "acquire", "jobs", "--ttl", "10", "--json").stdout)
    assert again["fence"] > held["fence"]
    assert cli("coord", "counter", "add", "c", "5").stdout == "5\n"
    assert cli("coord", "counter", "add", "c", "-2").stdout == "3\n"
    assert cli("coord", "counter", "get", "c").stdout == "3\n"


def test_concurrent_adds_on_one_node_all_land(node):
    """Many clients adding to one counter through one node: every add succeeds (they take
    turns on the node instead of losing compare-and-swap rounds to each other) and the
    total is exact."""
    adders, each = 16, 25
    values: list[int] = []

    def adder() -> None:
        with aspen.connect(node.endpoint, token=node.token) as c:
            for _ in range(each):
                values.append(c.call("coord.counter.add", {"name": "hot"})["value"])

    threads = [threading.Thread(target=adder) for _ in range(adders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(values) == list(range(1, adders * each + 1))


def test_lock_waits_in_fifo_order_and_fences(node):
    with node.client() as client:
        coord = Coord(client)
        first = coord.lock("l", ttl=5)
        assert first.try_acquire() and not coord.lock("l", ttl=5).try_acquire()
        order: list[int] = []

        def waiter(i: int) -> None:
            with aspen.connect(node.endpoint, token=node.token) as c:
                lock = Coord(c).lock("l", ttl=5, timeout=30)
                lock.acquire()
                order.append(i)
                lock.release()

        threads = []
        for i in range(3):
            t = threading.Thread(target=waiter, args=(i,))
            t.start()
            threads.append(t)
            aspen.testing.wait_for(
                lambda i=i: len(coord.call("lock.status", {"name": "l"})["queue"]) == i + 2,
                timeout=10,
            )
        with pytest.raises(BusyError):
            coord.lock("l", ttl=5, timeout=0).acquire()
        stale_fence = first.fence
        first.release()
        for t in threads:
            t.join(30)
        assert order == [0, 1, 2]
        with pytest.raises(NotHeldError):
            first.lease = 1
            first.renew()
        second = coord.lock("l", ttl=5)
        second.acquire()
        old = {"name": "l", "lease": second.lease, "fence": stale_fence, "ops": []}
        with pytest.raises(FencedError):
            coord.call("lock.write", old)
        assert second.write([{"put": {"key": b"/f", "value": b"1"}}]) > 0
        second.release()


def test_semaphore_rwlock_barrier_sequence(node):
    with node.client() as client:
        coord = Coord(client)
        a, b = coord.semaphore("s", 2), coord.semaphore("s", 2)
        a.acquire()
        b.acquire()
        with pytest.raises(BusyError):
            coord.semaphore("s", 2).acquire(timeout=0)
        with pytest.raises(aspen.errors.CompareFailedError, match="2 permits"):
            coord.semaphore("s", 3).acquire()
        a.release()
        c = coord.semaphore("s", 2)
        c.acquire()
        readers = [coord.rwlock("rw", "read"), coord.rwlock("rw", "read")]
        for r in readers:
            r.acquire()
        with pytest.raises(BusyError):
            coord.rwlock("rw", "write").acquire(timeout=0)
        for r in readers:
            r.release()
        w = coord.rwlock("rw", "write")
        w.acquire()
        with pytest.raises(BusyError):
            coord.rwlock("rw", "read").acquire(timeout=0)
        assert coord.sequence_next("q") == 1
        assert coord.sequence_reserve("q", 10) == range(2, 12)
        assert coord.counter_cas("k", 0, 7) and not coord.counter_cas("k", 0, 8)
        with pytest.raises(AspenTimeoutError):
            coord.barrier_wait("bar", 2, timeout=0.2)
        arrived: list[bool] = []

        def arrive() -> None:
            with aspen.connect(node.endpoint, token=node.token) as c2:
                Coord(c2).barrier_wait("bar", 2, timeout=30)
                arrived.append(True)

        t = threading.Thread(target=arrive)
        t.start()
        coord.barrier_wait("bar", 2, timeout=30)
        t.join(30)
        assert arrived == [True]


def test_election_rate_limiter_and_services(node):
    with node.client() as client:
        coord = Coord(client)
        with pytest.raises(NotFoundError):
            coord.call("election.leader", {"name": "e"})
        observer = coord.observe("e")
        assert next(observer)["leader"] is None
        lead = coord.campaign("e", b"one")
        assert next(observer)["leader"]["value"] == b"one"
        coord.call(
            "election.proclaim",
            {"name": "e", "lease": lead.lease, "fence": lead.fence, "value": b"two"},
        )
        assert next(observer)["leader"]["value"] == b"two"
        with pytest.raises(BusyError):
            coord.campaign("e", b"other", timeout=0)
        lead.release()
        assert next(observer)["leader"] is None
        observer.close()
        taken = [coord.ratelimit_take("r", 0.001, 3)["allowed"] for _ in range(5)]
        assert taken == [True, True, True, False, False]
        reg = coord.call(
            "service.register",
            {"name": "web", "instance": "a", "address": "10.0.0.1:80", "tags": ["eu"], "ttl": 5},
        )
        coord.call("service.register", {"name": "web", "instance": "b", "address": "x:1"})
        found = coord.call("service.discover", {"name": "web", "tag": "eu"})["instances"]
        assert [i["instance"] for i in found] == ["a"] and found[0]["lease"] == reg["lease"]
        watch = coord.stream("service.watch", {"name": "web"})
        assert len(next(watch)["instances"]) == 2
        coord.call("service.deregister", {"name": "web", "instance": "b"})
        gone = next(watch)
        assert gone["event"] == "deregister" and gone["instance"] == {"instance": "b"}
        watch.close()


def test_observe_sees_every_leadership_that_begins_after_it_returns(node):
    """Observe, then (before reading a single item) three leaderships come and go: every
    one is reported, in order, none coalesced into the next."""
    with node.client() as client:
        coord = Coord(client)
        with coord.observe("brief") as observer:
            fences = []
            for value in (b"a", b"b", b"c"):
                lead = coord.campaign("brief", value, ttl=5)
                fences.append(lead.fence)
                lead.release()
            items = [next(observer)["leader"] for _ in range(7)]
    assert items[0] is None  # the leader when it began: nobody
    assert [i and (i["fence"], i["value"]) for i in items[1:]] == [
        (fences[0], b"a"), None, (fences[1], b"b"), None, (fences[2], b"c"), None,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params", "error"),
    [
        ("lock.acquire", {"name": "a/b"}, InvalidArgumentError),
        ("lock.acquire", {"name": "x" * (limits.COORD_MAX_NAME_BYTES + 1)}, InvalidArgumentError),
        ("lock.acquire", {"name": "a", "ttl": 0}, InvalidArgumentError),
        ("lock.acquire", {"name": "a", "timeout": 1e9}, InvalidArgumentError),
        ("counter.add", {"name": "a", "by": 2**64}, InvalidArgumentError),
        ("semaphore.acquire", {"name": "a", "permits": 0}, InvalidArgumentError),
        ("barrier.wait", {"name": "a", "count": limits.COORD_MAX_PERMITS + 1}, BAD),
        ("ratelimit.take", {"name": "a", "rate": -1}, InvalidArgumentError),
        ("service.register", {"name": "s", "instance": "i", "address": "x", "tags": TAGS}, BAD),
        ("lock.release", {"name": "nobody", "lease": 5}, NotHeldError),
    ],
)  # fmt: skip
def test_bad_input_gets_typed_errors(node, method, params, error):
    with node.client() as client, pytest.raises(error):
        Coord(client).call(method, params)


def test_queue_is_bounded(node):
    with node.client() as client:
        coord = Coord(client)
        lease = client.lease.grant(30).id
        for i in range(limits.COORD_MAX_WAITERS):
            client.kv.put(f"/_aspen/coord/semaphore/big/{i:016x}", b"1", lease=lease)
        with pytest.raises(ResourceExhaustedError, match="COORD_MAX_WAITERS"):
            coord.semaphore("big", 1).acquire()


def test_async_api_over_an_async_client(node):
    async def main() -> None:
        async with aspen.aconnect(node.endpoint, token=node.token) as c:
            coord = AsyncCoord(c.call)
            async with coord.lock("al", ttl=5) as lock:
                assert lock.fence > 0
                assert await lock.write([{"put": {"key": b"/al", "value": b"1"}}]) > lock.fence
                with pytest.raises(BusyError):
                    async with coord.lock("al", ttl=5, timeout=0):
                        pass
            async with coord.lock("al", ttl=5) as again:
                assert again.fence > lock.fence
            assert await coord.counter_add("ac", 2) == 2
            assert await coord.sequence_next("as") == 1

    anyio.run(main)
