"""What a range costs: rows read per call, on a real node (real LMDB, real sockets).

Issue 18: a range page cost O(keys in range) whatever its limit (count, ``more``), so a
page-by-page listing was quadratic. These tests pin the complexity, not the wall time:
they count the rows (index rows and history entries) the node's reader reads per call
(``KVReader.rows_read``), so a regression to O(range) fails here on any machine.

A range at an old revision cost O(history since that revision): it read every later change
first. It now looks each key's record up in the key index of revisions (one seek per key,
see :mod:`aspen.kv.layout`), so a page costs the same however much happened since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import msgpack
import pytest

from aspen import limits
from aspen.client import Op
from aspen.kv.reads import KV_WIRE_OVERHEAD_BYTES
from aspen.kv.records import pack_put, record_to_wire
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread

#: Keys loaded under k/ for the page tests.
KEYS = 50_000
#: A page's own rows plus the one after it (``more``), and a little slack.
SLACK = 2
#: Rows read per key of a page: its ``kv`` index row and its history entry.
ROWS_PER_KEY = 2
#: ... and at an old revision: the index row, a ``keyrevs`` seek, the history entry.
ROWS_PER_KEY_AT_OLD_REVISION = 3


def _key(i: int) -> str:
    return f"k/{i:06d}"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeThread, int]]:
    """One node with KEYS keys under k/ (and one key after them); yields (node, revision
    after the load)."""
    config = NodeConfig(data_dir=tmp_path_factory.mktemp("range") / "node", listen="127.0.0.1:0")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASPEN_LOAD_PLUGINS", "")
        with NodeThread(config) as node, node.client() as c:
            for lo in range(0, KEYS, limits.MAX_TXN_OPS):
                hi = min(KEYS, lo + limits.MAX_TXN_OPS)
                c.kv.txn(success=[Op.put(_key(i), b"v" * 100) for i in range(lo, hi)])
            revision = c.kv.put("l", "after the prefix").revision
            yield node, revision


def _rows(node: NodeThread, call: Callable[[], object]) -> int:
    """Rows the node's reader read while ``call`` ran."""
    reader = node.node.parts.state_machine.reader
    before = reader.rows_read
    call()
    return reader.rows_read - before


@pytest.mark.parametrize("at", [0, KEYS // 2, KEYS - 20])
@pytest.mark.parametrize("keys_only", [False, True])
def test_a_page_reads_its_keys_and_one_more(loaded, at: int, keys_only: bool) -> None:
    node, _ = loaded
    with node.client() as c:
        page = None

        def read() -> None:
            nonlocal page
            page = c.kv.range(_key(at), end="k0", limit=10, keys_only=keys_only)

        assert _rows(node, read) <= (10 + SLACK) * ROWS_PER_KEY
        assert page is not None and len(page) == 10 and page.more and page.count is None
        assert page.kvs[0].key == _key(at).encode()


def test_only_counting_reads_the_whole_range(loaded) -> None:
    node, _ = loaded
    with node.client() as c:
        assert _rows(node, lambda: c.kv.range("k/", count_only=True)) >= KEYS
        counted = c.kv.range("k/", limit=10, count=True)
        assert counted.count == KEYS and len(counted) == 10 and counted.more


def test_listing_page_by_page_is_linear(loaded) -> None:
    node, _ = loaded
    page = 1000
    with node.client() as c:
        listed: list[int] = []

        def scan() -> None:
            with c.kv.scan("k/", page_size=page, keys_only=True) as records:
                listed.append(sum(1 for _ in records))

        rows = _rows(node, scan)
    assert listed == [KEYS]
    assert rows <= (KEYS + (KEYS // page + 1) * SLACK) * ROWS_PER_KEY  # not KEYS * pages / 2


def test_a_page_at_an_old_revision_costs_the_same_however_much_happened_since(loaded) -> None:
    """Issue 18 (gap left by the range-page change): ``kv.range ... revision=R`` read every
    change after R. Rows per page must not grow with the number of later revisions."""
    node, revision = loaded
    mid = KEYS // 2
    with node.client() as c:
        c.kv.put(_key(mid + 1), "changed")
        c.kv.delete(_key(mid + 2))
        c.kv.put(_key(mid) + "x", "created")  # not there at `revision`
        pages = []

        def read() -> None:
            pages.append(c.kv.range(_key(mid), end="k0", limit=10, revision=revision))

        few = _rows(node, read)
        costs = []
        for _ in range(2):  # a later revision for every key, twice
            for lo in range(0, KEYS, limits.MAX_TXN_OPS):
                c.kv.txn(success=[Op.put(_key(i), b"w" * 100) for i in range(lo, lo + 990)])
                c.kv.txn(success=[Op.delete(_key(i)) for i in range(lo + 990, lo + 1000)])
            costs.append(_rows(node, read))
        at_now = c.kv.range(_key(mid), end="k0", limit=3)
    bound = (10 + SLACK + 2) * ROWS_PER_KEY_AT_OLD_REVISION  # + a key created, one deleted
    assert few <= bound and costs[0] <= bound
    assert costs[1] == costs[0]  # 50k more changes since: not one more row
    for page in pages:
        assert page.more
        assert [kv.key for kv in page] == [_key(i).encode() for i in range(mid, mid + 10)]
        assert [kv.value for kv in page] == [b"v" * 100] * 10
        assert {kv.mod_revision for kv in page} < {revision}.union(range(revision))
    assert at_now.kvs[0].value == b"w" * 100


def test_issue_big_values_are_paged_by_bytes_not_refused(running_node) -> None:
    """Issue 18: a ``kv.range`` over 1 MiB values built the whole answer before failing
    ("ask for less"). Scaled down from 10k values to 6: pages stop at
    MAX_RANGE_PAGE_BYTES with ``more`` true and the client's scan continues."""
    big = b"x" * limits.MAX_VALUE_BYTES
    n = 6
    with running_node.client() as c:
        for i in range(n):
            c.kv.put(f"big/{i}", big)
        page = c.kv.range("big/", limit=limits.MAX_RANGE_LIMIT)
        assert page.more and 1 <= len(page) < n
        assert sum(len(kv.key) + len(kv.value) for kv in page) <= limits.MAX_RANGE_PAGE_BYTES
        keys = [kv.key for kv in c.kv.scan("big/", page_size=limits.MAX_RANGE_LIMIT)]
        assert keys == [f"big/{i}".encode() for i in range(n)]
        assert all(len(kv.value) == len(big) for kv in c.kv.range("big/3"))


def test_a_full_page_fits_one_frame() -> None:
    """The byte bound of a page counts each key-value's wire overhead beyond its stored
    history entry at most KV_WIRE_OVERHEAD_BYTES; the largest page plus one largest
    key-value fits a frame."""
    big = 2**63 - 1
    record = [b"k", b"", big, big, big, big]
    stored = len(pack_put(msgpack.Packer(use_bin_type=True), record))
    assert len(msgpack.packb(record_to_wire(record))) - stored <= KV_WIRE_OVERHEAD_BYTES
    assert len(msgpack.packb(record_to_wire(record, keys_only=True))) - 1 <= (
        KV_WIRE_OVERHEAD_BYTES
    )
    largest_kv = limits.MAX_KEY_BYTES + limits.MAX_VALUE_BYTES + KV_WIRE_OVERHEAD_BYTES + stored
    assert limits.MAX_RANGE_PAGE_BYTES + largest_kv + 1024 < limits.MAX_FRAME_BYTES
