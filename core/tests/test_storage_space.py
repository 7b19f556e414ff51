"""Out of space in LMDB: a full disk or a full map fails the write transaction, is named
as such, and leaves the environment usable; data directories are private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from aspen import limits
from aspen.errors import ResourceExhaustedError
from aspen.storage import Storage
from aspen.storage.private import tighten_tree
from aspen.storage.space import OutOfSpace, SpaceGuard, no_space_raised, space_report
from aspen.testing.disk import SmallDisk

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 16 MiB tmpfs (skips where a tmpfs cannot be mounted, e.g. not root)."""
    with SmallDisk(tmp_path / "disk", 16 * MiB).mounted_for_test() as disk:
        yield disk


def _put(storage: Storage, key: bytes, value: bytes) -> None:
    with no_space_raised(storage), storage.begin(write=True) as txn:
        txn.put(key, value, db=storage.db("kv"))


def _get(storage: Storage, key: bytes) -> bytes | None:
    with storage.begin() as txn:
        return txn.get(key, db=storage.db("kv"))


def test_space_report_measures_the_disk_and_the_map(tmp_path: Path) -> None:
    with Storage(tmp_path / "db") as storage:
        report = space_report(storage)
    st = os.statvfs(tmp_path)
    assert 0 < report.free_bytes <= st.f_blocks * st.f_frsize == report.total_bytes
    assert 0 < report.map_used_bytes < report.map_size_bytes == limits.LMDB_MAP_SIZE


def test_full_map_is_out_of_space_and_the_environment_stays_usable(tmp_path: Path) -> None:
    with Storage(tmp_path / "db", map_size=2 * MiB) as storage:
        _put(storage, b"kept", b"v")
        with pytest.raises(OutOfSpace, match=r"LMDB map is full.*LMDB_MAP_SIZE"):
            for i in range(100):
                _put(storage, b"big%d" % i, b"x" * 200_000)
        assert _get(storage, b"kept") == b"v"
        _put(storage, b"after", b"small")  # the failed transaction was aborted, no more
        assert _get(storage, b"after") == b"small"


def test_full_disk_fails_the_commit_and_writes_resume_once_space_is_freed(
    small_disk: SmallDisk,
) -> None:
    with Storage(small_disk.path / "db") as storage:
        _put(storage, b"kept", b"v")
        small_disk.fill(leave_bytes=256 * 1024)
        with pytest.raises(OutOfSpace, match="disk is full") as failed:
            _put(storage, b"big", os.urandom(1 * MiB))  # fails in mdb_txn_commit
        assert isinstance(failed.value.__cause__, lmdb.Error)
        assert _get(storage, b"kept") == b"v" and _get(storage, b"big") is None
        small_disk.free()
        _put(storage, b"big", b"y" * MiB)
        assert _get(storage, b"big") == b"y" * MiB
    with Storage(small_disk.path / "db") as reopened:  # and nothing on disk is damaged
        assert _get(reopened, b"kept") == b"v" and _get(reopened, b"big") == b"y" * MiB


def test_space_guard_refuses_a_write_the_disk_has_no_room_for(small_disk: SmallDisk) -> None:
    with Storage(small_disk.path / "db") as storage:
        guard = SpaceGuard(storage)
        guard.check(100_000)
        small_disk.fill(leave_bytes=limits.DISK_RESERVE_BYTES + 100_000)
        guard.check(1000)
        with pytest.raises(ResourceExhaustedError, match=r"disk is full.*DISK_RESERVE_BYTES"):
            guard.check(100_000)
        with guard.claim(1000):  # what is in flight counts too
            assert guard.pending_bytes == 1000 * limits.WRITE_SPACE_FACTOR
        assert guard.pending_bytes == 0
        small_disk.free()
        guard.check(100_000)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_storage_directory_and_files_are_private(tmp_path: Path) -> None:
    with Storage(tmp_path / "db"):
        pass
    assert _mode(tmp_path / "db") == 0o700
    assert {p.name: _mode(p) for p in (tmp_path / "db").iterdir()} == {
        "data.mdb": 0o600,
        "lock.mdb": 0o600,
    }


def test_tighten_tree_makes_an_existing_data_dir_private(tmp_path: Path) -> None:
    root = tmp_path / "node"
    (root / "db").mkdir(parents=True, mode=0o755)
    root.chmod(0o755)
    for name in ("root-token", "db/data.mdb"):
        (root / name).write_text("x")
        (root / name).chmod(0o644)
    (root / "link").symlink_to(tmp_path)  # never followed
    tmp_path.chmod(0o755)
    tighten_tree(root)
    assert [_mode(p) for p in (root, root / "db")] == [0o700, 0o700]
    assert [_mode(root / n) for n in ("root-token", "db/data.mdb")] == [0o600, 0o600]
    assert _mode(tmp_path) == 0o755


def test_guard_measures_again_only_near_full_or_after_a_while(
    tmp_path: Path, small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ample room one measurement serves many small writes; near full every write is
    measured, so a filled disk is seen at once."""
    import aspen.storage.space as space

    measured: list[int] = []

    def counting(storage: Storage):
        measured.append(1)
        return space_report(storage)

    monkeypatch.setattr(space, "space_report", counting)
    with Storage(small_disk.path / "db") as tight:  # far less than the reuse headroom free
        guard = SpaceGuard(tight)
        for _ in range(5):
            guard.check(100)
        assert len(measured) == 5
    measured.clear()
    with Storage(tmp_path / "db") as roomy:
        guard = SpaceGuard(roomy)
        for _ in range(100):
            guard.check(100)
        assert len(measured) == 1
        monkeypatch.setattr(limits, "SPACE_REUSE_SECONDS", 0.0)
        guard.check(100)
        assert len(measured) == 2
