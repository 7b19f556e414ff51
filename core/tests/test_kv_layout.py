"""Storage format 2 (aspen.kv.layout): each value stored once; reads at every revision,
watches (with prev_kv) and compaction checked against a simple model; old formats refused."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb
import pytest
from kvstore import Store

from aspen import limits
from aspen.errors import StorageFormatError
from aspen.kv import compact_command, delete_command, put_command, txn_command
from aspen.node.config import NodeConfig
from aspen.node.node import DB_DIR
from aspen.node.runner import NodeThread
from aspen.storage import DB_NAMES, Storage
from aspen.storage.env import FORMAT_KEY, STORAGE_FORMAT

#: A model state: key -> [value, create_revision, mod_revision, version].
State = dict[bytes, list[Any]]

LONG = b"L" * 600  # long keys sharing their 480-byte prefix: stored by digest
KEYS = [b"a", b"b", b"b\x00", b"c/1", b"c/2", b"d", LONG + b"1", LONG + b"2", LONG]


def _rows(storage: Storage) -> list[tuple[str, bytes, bytes]]:
    with storage.begin() as txn:
        return [
            (name, k, v)
            for name in DB_NAMES
            if name != "log"
            for k, v in txn.cursor(db=storage.db(name))
        ]


def test_each_value_is_stored_once(tmp_path: Path) -> None:
    kv = Store(tmp_path / "db")
    values = {}
    for i in range(300):
        key = (LONG if i % 10 == 0 else b"k/") + b"%04d" % i
        values[key] = b"value-%06d-" % i + b"x" * 100
        kv.put(key, values[key])
    for i, key in enumerate(list(values)[:50]):  # overwritten: old and new, once each
        values[key + b"/new"] = b"renewed-%06d-" % i + b"y" * 100
        kv.put(key, values[key + b"/new"])
    rows = _rows(kv.storage)
    for value in values.values():
        holders = [(name, k) for name, k, v in rows if value in v]
        assert len(holders) == 1 and holders[0][0] == "history", (value, holders)
    # the key index holds positions (12 bytes; a long key also its full key), nothing else
    index_rows = [(k, v) for name, k, v in rows if name in ("kv", "keyrevs")]
    assert all(len(v) == 12 or v[12:].startswith(LONG) for _, v in index_rows)
    assert sum(1 for name, _, _ in rows if name == "keyrevs") == 50  # only the overwritten


def _model_apply(
    model: State, revision: int, puts: dict[bytes, bytes], deletes: set[bytes]
) -> State:
    state = {k: list(v) for k, v in model.items()}
    for key, value in puts.items():
        old = state.get(key)
        state[key] = [value, old[1] if old else revision, revision, old[3] + 1 if old else 1]
    for key in deletes:
        state.pop(key, None)
    return state


def _as_model(kvs: list[dict[str, Any]]) -> State:
    return {
        kv["key"]: [kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"]]
        for kv in kvs
    }


@pytest.mark.parametrize("seed", range(12))
def test_reads_watches_and_compaction_match_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(limits, "COMPACT_SLICE_ENTRIES", 3)  # leftovers between slices
    rng = random.Random(seed)
    kv = Store(tmp_path / "db")
    states: dict[int, State] = {kv.revision(): {}}
    compacted = 0
    for step in range(80):
        current = kv.revision()
        roll = rng.random()
        if roll < 0.08 and current > compacted + 1:
            compacted = rng.randrange(max(compacted, 1) + 1, current + 1)
            kv.ok(compact_command({"revision": compacted}))
            continue
        keys = rng.sample(KEYS, rng.randrange(1, 4))
        puts = {k: b"%d:%d" % (seed, step) + k[:3] for k in keys if rng.random() < 0.7}
        deletes = {k for k in keys if k not in puts and k in states[current]}
        if roll < 0.15 and puts:  # one put through the single-key command
            key = next(iter(puts))
            puts, deletes = {key: puts[key]}, set()
            kv.ok(put_command({"key": key, "value": puts[key]}))
        elif roll < 0.22:  # a delete range
            lo, hi = sorted(rng.sample(KEYS, 2))
            deletes = {k for k in states[current] if lo <= k < hi}
            puts = {}
            kv.ok(delete_command({"key": lo, "end": hi}))
        else:
            ops = [{"put": {"key": k, "value": v}} for k, v in puts.items()]
            ops += [{"delete": {"key": k}} for k in deletes]
            kv.ok(txn_command({"success": ops}))
        if puts or deletes:
            states[kv.revision()] = _model_apply(states[current], kv.revision(), puts, deletes)
        _check(kv, states, compacted)


def _check(kv: Store, states: dict[int, State], compacted: int) -> None:
    """Every revision from the compact revision on reads as the model says; a watch from
    there sees every change, each with its prev_kv."""
    current = kv.revision()

    def state_at(r: int) -> State:
        return states[max(x for x in states if x <= r)]

    first = max(compacted, min(states))
    for r in range(first, current + 1):
        assert _as_model(kv.kvs(revision=r)) == state_at(r), r
        assert _as_model(kv.range(b"b", end=b"d", revision=r)["kvs"]) == {
            k: v for k, v in state_at(r).items() if b"b" <= k < b"d"
        }
        for key in (b"a", LONG + b"2"):
            single = {key: state_at(r)[key]} if key in state_at(r) else {}
            assert _as_model(kv.range(key, revision=r)["kvs"]) == single
    start = max(compacted, min(states) + 1)
    expected = []
    for r in range(start, current + 1):
        before, after = state_at(r - 1), state_at(r)
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                expected.append((r, "put" if key in after else "delete", key, before.get(key)))
    events = kv.sm.history(None, start, b"\0", b"\0", limit=10_000)
    got = [
        (e["revision"], e["type"], e["kv"]["key"], _prev(e["prev_kv"]))
        for e in sorted(events, key=lambda e: (e["revision"], e["kv"]["key"]))
    ]
    assert got == expected


def _prev(kv: dict[str, Any] | None) -> list[Any] | None:
    return (
        None
        if kv is None
        else [kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"]]
    )


def test_compaction_leaves_each_live_keys_record_and_no_tombstones(tmp_path: Path) -> None:
    kv = Store(tmp_path / "db")
    for i in range(5):
        kv.put(b"k", b"%d" % i)
        kv.put(b"gone", b"%d" % i)
    kv.delete(b"gone")
    kv.put(b"z", b"last")
    kv.ok(compact_command({"revision": kv.revision()}))
    kv.put(b"after", b"x")  # one more write cycle: the compaction finishes
    rows = _rows(kv.storage)
    history = [v for name, _, v in rows if name == "history"]
    assert len(history) == 3  # k's and z's records, and the put after the compaction
    assert not any(b"gone" in v for v in history)
    assert [k for name, k, _ in rows if name == "keyrevs"] == []


def _old_format(path: Path, raw: bytes | None) -> None:
    """Make ``path`` look like a data dir of another format (``raw``: its format value,
    None: written before formats were recorded)."""
    with Storage(path, sync=False) as storage, storage.begin(write=True) as txn:
        meta = storage.db("meta")
        txn.put(b"kv/state", b"\0" * 24, db=meta)
        if raw is None:
            txn.delete(FORMAT_KEY, db=meta)
        else:
            txn.put(FORMAT_KEY, raw, db=meta)


@pytest.mark.parametrize("found", [None, 1, STORAGE_FORMAT + 1])
def test_a_data_dir_of_another_format_is_refused(tmp_path: Path, found: int | None) -> None:
    path = tmp_path / "db"
    _old_format(path, None if found is None else found.to_bytes(8, "big"))
    with pytest.raises(StorageFormatError, match=r"storage format \d; .* reads format 2") as err:
        Storage(path, sync=False)
    assert err.value.details["found"] == (found or 1)
    assert err.value.details["expected"] == STORAGE_FORMAT
    with pytest.raises(StorageFormatError):  # the refusal changed nothing
        Storage(path, sync=False)


def test_a_new_data_dir_records_the_format(tmp_path: Path) -> None:
    with Storage(tmp_path / "db", sync=False) as storage, storage.begin() as txn:
        assert txn.get(FORMAT_KEY, db=storage.db("meta")) == STORAGE_FORMAT.to_bytes(8, "big")
    Storage(tmp_path / "db", sync=False).close()  # and opens again


def test_a_node_refuses_an_old_format_data_dir_with_a_clear_error(tmp_path: Path) -> None:
    """A real node's data dir turned into format 1 (no format recorded): ``aspen node
    start`` exits non-zero naming both formats, and leaves the directory as it was."""
    root = tmp_path / "node"
    with NodeThread(NodeConfig(data_dir=root, listen="127.0.0.1:0")) as node, node.client() as c:
        c.kv.put("k", "kept")
    env = lmdb.open(str(root / DB_DIR), max_dbs=limits.LMDB_MAX_DBS)
    with env.begin(write=True) as txn:
        txn.delete(FORMAT_KEY, db=env.open_db(b"meta", txn=txn))
    env.close()
    before = (root / DB_DIR / "data.mdb").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "aspen", "node", "start", "--data-dir", str(root)],
        env={**os.environ, "ASPEN_LOAD_PLUGINS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "holds storage format 1; this version of Aspen reads format 2" in done.stderr
    assert (root / DB_DIR / "data.mdb").read_bytes() == before
