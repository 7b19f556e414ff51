"""Issue 9: what one txn or delete may read, on a real node with a real client.

A txn's ranges and prev_kv answers are bounded (MAX_RESPONSE_KVS, MAX_RESPONSE_KV_BYTES,
MAX_TXN_SCAN_KEYS); a request over a bound is refused before it is proposed where the
request tells, and as a whole (nothing applied) otherwise. A txn that only compares and
reads is a linearizable read: it never enters the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import aspen
from aspen import limits
from aspen.client.txn import Compare, Op
from aspen.errors import InvalidArgumentError, ResourceExhaustedError, TimeoutError
from aspen.node.devcluster import DevCluster
from aspen.node.runner import NodeThread
from aspen.testing import free_base_port, wait_for
from aspen.testing.linearizability import HistoryRecorder, check_kv_history


def _load(c, prefix: str, n: int, value: bytes = b"v") -> None:
    """Put ``n`` keys under ``prefix`` in txns of MAX_TXN_OPS puts."""
    for start in range(0, n, limits.MAX_TXN_OPS):
        stop = min(n, start + limits.MAX_TXN_OPS)
        c.kv.txn(success=[Op.put(f"{prefix}{i:06d}", value) for i in range(start, stop)])


def _applied_index(c) -> int:
    return c.call("node.status")["applied_index"]


class _Writer(threading.Thread):
    """Puts one key after another until stopped; counts the puts acknowledged."""

    def __init__(self, node: NodeThread) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.acked = 0
        self.errors: list[Exception] = []

    def run(self) -> None:
        with self.node.client() as c:
            while not self.stop.is_set():
                try:
                    c.kv.put("writer", str(self.acked))
                    self.acked += 1
                except Exception as exc:  # reported by the test
                    self.errors.append(exc)
                    return


@pytest.fixture
def writer(running_node: NodeThread) -> Iterator[_Writer]:
    """A concurrent writer on the node, already acknowledged at least once."""
    w = _Writer(running_node)
    w.start()
    wait_for(lambda: w.acked > 0 or w.errors, message="the writer's first put")
    yield w
    w.stop.set()
    w.join(30)
    assert not w.errors


def test_issue_txn_of_400_big_ranges_is_refused_up_front_and_writes_go_on(
    running_node: NodeThread, writer: _Writer
) -> None:
    with running_node.client() as c:
        _load(c, "g/", 2000)
        before = _applied_index(c)
        with pytest.raises(InvalidArgumentError, match="MAX_RESPONSE_KVS") as refused:
            c.kv.txn(success=[Op.range("g/", limit=10_000) for _ in range(400)])
        assert "4000000 key-values" in str(refused.value)
        with pytest.raises(InvalidArgumentError, match="MAX_RESPONSE_KVS"):  # also with a put
            c.kv.txn(success=[Op.put("m", "1"), *(Op.range("g/", limit=10_000),) * 2])
        assert c.kv.get("m") is None
        acked = writer.acked
        wait_for(lambda: writer.acked >= acked + 20 or writer.errors, message="more puts")
        # the refused txns never entered the log: only the writer's puts did
        assert _applied_index(c) - before <= writer.acked


def test_ranges_within_bounds_are_answered_with_a_writer_running(
    running_node: NodeThread, writer: _Writer
) -> None:
    with running_node.client() as c:
        _load(c, "g/", 2000)
        ops = [Op.range("g/", limit=1000, count=True) for _ in range(10)]  # MAX_RESPONSE_KVS
        read = c.kv.txn(success=ops)
        assert [len(r.kvs) for r in read.responses] == [1000] * 10
        assert all(r.more and r.count == 2000 for r in read.responses)
        mixed = c.kv.txn(success=[Op.put("g/000000", "new"), Op.range("g/", limit=2)])
        assert mixed.responses[1].kvs[0].value == b"new"  # a txn's ranges see its writes
        acked = writer.acked
        wait_for(lambda: writer.acked >= acked + 20 or writer.errors, message="more puts")


def test_txn_over_the_byte_bound_is_refused_and_applies_nothing(running_node) -> None:
    big = b"x" * (512 * 1024)
    with running_node.client() as c:
        _load(c, "b/", 5, big)  # 2.5 MB of values: over MAX_RESPONSE_KV_BYTES (2 MiB)
        with pytest.raises(ResourceExhaustedError, match="MAX_RESPONSE_KV_BYTES"):
            c.kv.txn(success=[Op.range("b/")])  # read-only: refused by the read
        with pytest.raises(ResourceExhaustedError, match="nothing was applied"):
            c.kv.txn(success=[Op.put("m", "1"), Op.range("b/")])  # mixed: refused in apply
        assert c.kv.get("m") is None
        assert len(c.kv.txn(success=[Op.range("b/", keys_only=True)]).responses[0].kvs) == 5
        with pytest.raises(ResourceExhaustedError, match="MAX_RESPONSE_KV_BYTES"):
            c.kv.txn(success=[Op.put(f"b/{i:06d}", "s", prev_kv=True) for i in range(5)])
        assert c.kv.get("b/000000").value == big


def test_txn_over_the_scan_bound_is_refused(running_node, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_TXN_SCAN_KEYS", 50)  # the node runs in this process
    with running_node.client() as c:
        _load(c, "s/", 60)
        with pytest.raises(ResourceExhaustedError, match="MAX_TXN_SCAN_KEYS"):
            c.kv.txn(success=[Op.range("s/", limit=1, count=True)])  # counting visits all
        page = c.kv.txn(success=[Op.range("s/", limit=1)])  # a page visits what it returns
        assert len(page.responses[0].kvs) == 1 and page.responses[0].more
        with pytest.raises(ResourceExhaustedError, match="MAX_TXN_SCAN_KEYS"):
            c.kv.txn(compare=[Compare.version("s/", "s0") > 0], success=[Op.put("m", "1")])
        assert c.kv.get("m") is None
        assert c.kv.range("s/", count_only=True).count == 60  # kv.range is not a txn


def test_issue_delete_with_prev_kv_over_the_bound_deletes_nothing(running_node) -> None:
    n = limits.MAX_RESPONSE_KVS + 1
    with running_node.client() as c:
        _load(c, "d/", n, b"v" * 400)  # prev_kvs over MAX_FRAME_BYTES, as in the issue
        before = _applied_index(c)
        with pytest.raises(ResourceExhaustedError, match="MAX_RESPONSE_KV_BYTES") as refused:
            c.kv.delete("d/", prefix=True, prev_kv=True)
        assert "without prev_kv" in str(refused.value)
        assert c.kv.range("d/", count_only=True).count == n  # every key is still there
        assert _applied_index(c) == before  # refused before it was proposed
        assert c.kv.delete("d/", prefix=True).deleted == n


def test_read_only_txn_is_a_read_that_never_enters_the_log(running_node) -> None:
    with running_node.client() as c:
        c.kv.put("k", "v1")
        c.kv.put("other", "x")
        revision = c.kv.put("k", "v2").revision
        before = _applied_index(c)
        hit = c.kv.txn(
            compare=[Compare.value("k") == b"v2"],
            success=[Op.get("k"), Op.txn(success=[Op.range("o", "p")])],
            failure=[Op.get("other")],
        )
        assert hit.succeeded and hit.revision == revision
        assert hit.responses[0].kvs[0].value == b"v2"
        assert hit.responses[1].responses[0].kvs[0].key == b"other"
        miss = c.kv.txn(compare=[Compare.version("k") == 1], failure=[Op.get("other")])
        assert not miss.succeeded and miss.responses[0].kvs[0].value == b"x"
        assert _applied_index(c) == before
        assert c.kv.put("k", "v3").revision == revision + 1


def test_a_write_held_up_by_a_busy_node_says_so_not_no_quorum(running_node, monkeypatch) -> None:
    """The issue's "timeout (no quorum?)" on one node: the node was busy in one long write
    cycle. Holding LMDB's write lock keeps the driver's next cycle waiting the same way."""
    monkeypatch.setattr(limits, "PROPOSAL_TIMEOUT_SECONDS", 1.5)
    with running_node.client() as c:
        c.kv.put("k", "0")
        with running_node.node.parts.storage.env.begin(write=True):  # the driver waits for it
            with pytest.raises(TimeoutError) as first:  # proposed, cannot be persisted
                c.kv.put("k", "1")
            with pytest.raises(TimeoutError) as second:  # queued behind that cycle
                c.kv.put("k", "2")
        for late in (first.value, second.value):
            assert "this node has been busy persisting and applying" in late.message
            assert "quorum" not in late.message and late.details["outcome"] == "unknown"
        assert "was not committed" in first.value.message
        assert "was not proposed" in second.value.message
        wait_for(lambda: c.kv.get("k").value == b"2", message="both writes applied")


def _read_only_get(c, key: str) -> bytes | None:
    """Read ``key`` with a read-only txn (a compare and a range: it never enters the log)."""
    result = c.kv.txn(compare=[Compare.version(key) > 0], success=[Op.get(key)])
    return result.responses[0].kvs[0].value if result.succeeded else None


def test_read_only_txns_on_every_node_are_linearizable(tmp_path) -> None:
    cluster = DevCluster(tmp_path / "c", 3, free_base_port(3))
    recorder = HistoryRecorder()
    stop = threading.Event()
    errors: list[Exception] = []

    def client(n: int, endpoint: str, writes: bool) -> None:
        try:
            with aspen.connect(endpoint, token=cluster.token, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    if writes:
                        value = f"{n}-{i}".encode()
                        with recorder.invoke(n, "put", key="k", value=value) as op:
                            c.kv.put("k", value)
                            op.ok()
                    else:
                        with recorder.invoke(n, "get", key="k") as op:
                            op.ok(_read_only_get(c, "k"))
        except Exception as exc:  # reported below
            errors.append(exc)

    cluster.up()
    try:
        every = ",".join(cluster.client_endpoint(i) for i in (1, 2, 3))
        threads = [threading.Thread(target=client, args=(0, every, True), daemon=True)]
        threads += [
            threading.Thread(target=client, args=(i, cluster.client_endpoint(i), False))
            for i in (1, 2, 3)  # one reader on each node: two of them followers
        ]
        for t in threads:
            t.start()
        wait_for(lambda: len(recorder) > 400 or errors, timeout=60, message="400 operations")
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        cluster.down()
    assert not errors
    history = recorder.history()
    assert any(op["op"] == "get" and op["result"] for op in history)
    result = check_kv_history(history, timeout=60)
    assert result.ok, result.explanation
