"""Key encoding for LMDB's 511-byte key limit, and the order-preserving scanner."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from aspen import limits
from aspen.kv.keycodec import LONG_ENCODED_BYTES, SHORT_KEY_BYTES, encode_key, is_long, scan
from aspen.kv.layout import index_key, index_row
from aspen.kv.records import history_key
from aspen.storage import Storage


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage(tmp_path / "db", sync=False) as s:
        yield s


def _store(storage: Storage, keys: list[bytes], prefix: bytes = b"") -> None:
    with storage.begin(write=True) as txn:
        for key in keys:
            row = index_row(history_key(1), key, encode_key(key))
            txn.put(prefix + encode_key(key), row, db=storage.db("kv"))


def _scan(storage: Storage, start: bytes, end: bytes | None, prefix: bytes = b"") -> list[bytes]:
    with storage.begin() as txn, txn.cursor(db=storage.db("kv")) as cur:
        return [key for _, key, _ in scan(cur, start, end, index_key, prefix=prefix)]


def _expected(keys: list[bytes], start: bytes, end: bytes | None) -> list[bytes]:
    return sorted(k for k in set(keys) if k >= start and (end is None or k < end))


def test_encoding_lengths() -> None:
    short = b"k" * SHORT_KEY_BYTES
    assert encode_key(short) == short and not is_long(short)
    long = b"k" * (SHORT_KEY_BYTES + 1)
    encoded = encode_key(long)
    assert len(encoded) == LONG_ENCODED_BYTES and is_long(encoded)
    assert encoded[:SHORT_KEY_BYTES] == long[:SHORT_KEY_BYTES]
    assert len(encode_key(b"k" * limits.MAX_KEY_BYTES)) == LONG_ENCODED_BYTES
    assert encode_key(long) != encode_key(long + b"x")


def _long_keys_sharing_prefix() -> list[bytes]:
    p = b"p" * SHORT_KEY_BYTES
    q = b"p" * (SHORT_KEY_BYTES - 1) + b"q"
    keys = [p, p[:100], q, b"a", b"z", b"p" * 479]
    keys += [p + bytes([c]) * n for c in (0, 1, 0x61, 0x62, 0xFF) for n in (1, 2, 300)]
    keys += [q + b"x" * n for n in (1, 5, 500)]
    return keys


def test_runs_of_long_keys_come_out_in_true_order(storage: Storage) -> None:
    keys = _long_keys_sharing_prefix()
    _store(storage, keys)
    assert _scan(storage, b"\0", None) == sorted(keys)


def test_bounds_inside_a_run(storage: Storage) -> None:
    keys = _long_keys_sharing_prefix()
    _store(storage, keys)
    p = b"p" * SHORT_KEY_BYTES
    bounds = [p + b"\x00\x00", p + b"a", p + b"a" * 2, p + b"b", p + b"\xff", p, p[:-1], b"q"]
    for start in [b"\0", *bounds]:
        for end in [None, *bounds]:
            assert _scan(storage, start, end) == _expected(keys, start, end), (start, end)


def test_random_keys_against_a_sorted_list(storage: Storage) -> None:
    rnd = random.Random(7)
    base = [b"x" * SHORT_KEY_BYTES, b"x" * 479 + b"y", b"y" * SHORT_KEY_BYTES]
    keys = []
    for _ in range(400):
        b = rnd.choice(base)
        cut = rnd.choice([len(b), len(b), rnd.randint(1, len(b))])
        keys.append(b[:cut] + rnd.randbytes(rnd.randint(0, 40)) * rnd.randint(0, 15))
    keys = [k for k in keys if 0 < len(k) <= limits.MAX_KEY_BYTES]
    assert sum(len(k) > SHORT_KEY_BYTES for k in keys) > 100
    _store(storage, keys)
    for _ in range(300):
        a, b = sorted(rnd.sample(keys, 2))
        for start, end in ((a, b), (a, None), (a + b"\0", b + b"\0")):
            assert _scan(storage, start, end) == _expected(keys, start, end)


def test_scan_under_a_fixed_prefix(storage: Storage) -> None:
    long = b"l" * 600
    _store(storage, [b"a", long, long + b"2"], prefix=b"\x00" * 7 + b"\x01")
    _store(storage, [b"b", long + b"1"], prefix=b"\x00" * 7 + b"\x02")
    _store(storage, [b"c"], prefix=b"\x00" * 7 + b"\x03")
    got = _scan(storage, b"", None, prefix=b"\x00" * 7 + b"\x02")
    assert got == [b"b", long + b"1"]
    assert _scan(storage, b"", None, prefix=b"\x00" * 7 + b"\x01") == [b"a", long, long + b"2"]
    assert _scan(storage, b"", None, prefix=b"\x00" * 7 + b"\x04") == []


def test_empty_and_inverted_ranges(storage: Storage) -> None:
    _store(storage, [b"a", b"b"])
    assert _scan(storage, b"c", None) == []
    assert _scan(storage, b"b", b"a") == []
    assert _scan(storage, b"a", b"a") == []
