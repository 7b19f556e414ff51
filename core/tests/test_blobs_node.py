"""The blob store on one real node: the node API plugins use (``node.blobs``), the
``blob.*`` events on the bus, the local store's verification, and a disk that fills."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

import aspen
from aspen.auth.tokens import inspect_token, is_capability_token
from aspen.blobs.hashing import BlobRef
from aspen.blobs.meta import PREFIX as META_PREFIX
from aspen.blobs.service import META_CAPABILITIES
from aspen.blobs.store import BlobCorruptError, BlobStore
from aspen.errors import (
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthorizedError,
    UnavailableError,
)
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import wait_for
from aspen.testing.disk import SmallDisk

MiB = 1024 * 1024


class BlobRecorder:
    """Records the blob events it is handed."""

    def __init__(self) -> None:
        self.events: list = []
        self.lock = threading.Lock()

    @aspen.hookimpl
    def aspen_on_blob_event(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def names(self) -> list[str]:
        with self.lock:
            return [e.name for e in self.events]


def test_the_node_api_and_blob_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASPEN_BLOB_GC_GRACE_SECONDS", "0.5")
    monkeypatch.setenv("ASPEN_BLOB_REPAIR_INTERVAL_SECONDS", "0.2")
    recorder = BlobRecorder()
    pm = make_plugin_manager(load=[], plugins={"recorder": recorder})
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    data = os.urandom(2 * MiB + 1)
    with NodeThread(config, pm) as node:
        blobs = node.node.blobs

        async def chunks():
            yield data[:MiB]
            yield data[MiB:]

        async def put_and_read() -> tuple[BlobRef, bytes, dict]:
            ref = await blobs.put(chunks(), pin="recorder/a")
            got = b"".join([piece async for piece in blobs.open(ref.hash)])
            return ref, got, await blobs.stat(ref.hash)

        ref, got, info = node.call(put_and_read)
        assert ref == BlobRef(blake3.blake3(data).hexdigest(), len(data)) and got == data
        assert info["pins"] == ["recorder/a"] and info["holders"] == [node.node.id]
        wait_for(lambda: "blob.added" in recorder.names(), timeout=10)
        added = next(e for e in recorder.events if e.name == "blob.added")
        assert (added.hash, added.size) == (ref.hash, len(data)) and added.revision > 0
        pinned = next(e for e in recorder.events if e.name == "blob.pinned")
        assert (pinned.hash, pinned.pin, pinned.revision) == (
            ref.hash,
            "recorder/a",
            added.revision,
        )
        # unpinned, the blob is collected after the grace period: blob.removed, file gone
        assert node.call(blobs.unpin, "recorder/a") == ref.hash
        wait_for(lambda: "blob.removed" in recorder.names(), timeout=20)
        wait_for(lambda: not blobs.store.has(ref.hash), timeout=20)
        with node.client() as c, pytest.raises(NotFoundError):
            c.blobs.stat(ref.hash)


def test_the_blob_service_reaches_the_cluster_without_the_root_token(tmp_path: Path) -> None:
    """Its own client holds a capability token for the blob metadata alone: puts and reads
    work, and the same token is refused anywhere else."""
    pm = make_plugin_manager(load=[])
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    with NodeThread(config, pm) as node:
        blobs = node.node.blobs
        token = blobs.client.token
        assert token != node.token and is_capability_token(token)
        assert sorted(str(c) for c in inspect_token(token).capabilities) == sorted(
            META_CAPABILITIES
        )
        ref = node.call(functools.partial(blobs.put, b"least privilege", pin="t/a"))
        assert node.call(blobs.stat, ref.hash)["pins"] == ["t/a"]
        with aspen.connect(node.endpoint, token=token) as c:
            with pytest.raises(UnauthorizedError):
                c.kv.put("/app/x", b"1")
            with pytest.raises(UnauthorizedError):
                c.kv.get("/_aspen/tokens/x")
            assert c.kv.get(f"{META_PREFIX}p/t/a") is not None


def test_the_store_verifies_every_piece_it_reads(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=10 * MiB, reserve_bytes=0)
    data = os.urandom(3 * MiB)
    writer = store.writer(len(data))
    writer.write(data)
    ref = writer.commit()
    assert b"".join(store.read(ref.hash, MiB - 1, 2)) == data[MiB - 1 : MiB + 1]
    with open(store.path(ref.hash), "r+b") as f:
        f.seek(2 * MiB + 9)
        f.write(b"\x00" if data[2 * MiB + 9] else b"\x01")
    pieces = store.read(ref.hash)
    assert next(pieces) == data[:MiB] and next(pieces) == data[MiB : 2 * MiB]
    with pytest.raises(BlobCorruptError, match="failed its hash check"):
        next(pieces)
    assert not store.verify(ref.hash)
    # a put that was never committed leaves nothing behind
    writer = store.writer()
    writer.write(b"partial")
    writer.abort()
    assert not any(store.tmp.iterdir())


def test_a_disk_that_fills_during_a_put(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 24 MiB tmpfs data dir: a put too big for it fails with a clear error (announced
    size: before any byte; streamed: when the disk fills), leaves no partial file, and
    the node keeps serving KV and smaller blobs."""
    monkeypatch.setenv("ASPEN_BLOB_DISK_RESERVE_BYTES", str(MiB))
    with SmallDisk(tmp_path / "n", 24 * MiB).mounted_for_test() as disk:
        config = NodeConfig(data_dir=disk.path, listen="127.0.0.1:0")
        with NodeThread(config) as node, node.client(timeout=20) as c:
            with pytest.raises(ResourceExhaustedError, match="does not fit"):
                c.blobs.put(os.urandom(40 * MiB))
            with pytest.raises(ResourceExhaustedError, match="no disk space"):
                c.blobs.put(iter([os.urandom(MiB)] * 40))
            assert not any((disk.path / "blobs" / "tmp").iterdir())
            c.kv.put("still", "serving")
            assert c.kv.get("still").value == b"serving"
            small = c.blobs.put(b"fits")
            assert c.blobs.get_bytes(small.hash) == b"fits"


def test_the_progress_bar_shows_bytes_rate_and_eta_only_when_enabled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aspen.cli.blob import Progress

    quiet = Progress(10 * MiB, enabled=False)
    quiet(5 * MiB)
    quiet.finish()
    assert capsys.readouterr().err == ""
    shown = Progress(10 * MiB, enabled=True)
    shown(5 * MiB)
    shown.finish()
    err = capsys.readouterr().err
    assert "5.0 MiB / 10.0 MiB" in err and "MiB/s" in err and "ETA" in err


def test_gc_cannot_race_a_concurrent_put_of_the_same_hash(tmp_path: Path) -> None:
    """GC deletes a record only if it is unchanged since GC read it: a put (or pin) of the
    same bytes in between rewrites the record, so that GC's delete is refused."""
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    with NodeThread(config) as node:
        blobs = node.node.blobs

        async def race() -> tuple[bool, bool, bool]:
            ref = await blobs.put(b"same bytes")
            seen = await blobs.meta.require(ref.hash)  # what a GC pass examined
            await blobs.put(b"same bytes")  # a concurrent put of the same hash
            refused = not await blobs.meta.forget(seen)
            again = await blobs.meta.require(ref.hash)
            await blobs.pin("p", ref.hash)  # so is a pin in between
            refused_after_pin = not await blobs.meta.forget(again)
            still = await blobs.meta.get(ref.hash) is not None
            return refused, refused_after_pin, still

        assert node.call(race) == (True, True, True)


def test_a_put_whose_upload_expired_says_it_was_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASPEN_BLOB_UPLOAD_IDLE_SECONDS", "0.3")
    monkeypatch.setenv("ASPEN_BLOB_REPAIR_INTERVAL_SECONDS", "0.1")
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    with NodeThread(config) as node, node.client(timeout=10) as c:
        uploads = node.node.blobs.uploads

        def stalls() -> Iterator[bytes]:
            yield b"first"
            wait_for(lambda: len(uploads) == 0, timeout=20, message="the idle upload expires")
            yield b"second"

        with pytest.raises(UnavailableError, match="interrupted"):
            c.blobs.put(stalls())
        assert not any((node.data_dir / "blobs" / "tmp").iterdir())
        assert c.blobs.status()["blobs"] == 0


def test_list_and_pins_page_through_every_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``blob.list`` pages through the blobs in hash order and ``blob.pins`` through the pins
    under a prefix in name order: each page continues after the last item, every item comes
    once, and the client and CLI read every page. A page's pin names are bounded."""
    monkeypatch.setattr("aspen.blobs.meta.BLOB_LIST_MAX_PINS", 4)
    pm = make_plugin_manager(load=[])
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    with NodeThread(config, pm) as node, node.client() as c:
        refs = {i: c.blobs.put(f"blob {i}".encode(), pin=f"rel/{i:02d}") for i in range(11)}
        c.blobs.pin("other/a", refs[0].hash)
        hashes = sorted(ref.hash for ref in refs.values())

        seen, after, pages = [], None, 0
        while True:
            page = c.call("blob.list", {"after": after, "limit": 3})
            seen += [b["hash"] for b in page["blobs"]]
            pages += 1
            if not page["more"]:
                break
            after = seen[-1]
        assert seen == hashes and pages >= 4
        assert [b["hash"] for b in c.blobs.list()] == hashes
        assert [b["hash"] for b in c.blobs.list(after=hashes[2], limit=5)] == hashes[3:8]

        names = [f"rel/{i:02d}" for i in range(11)]
        assert [e["name"] for e in c.blobs.pins("rel/")] == names
        assert c.blobs.pins("rel/", limit=2, after="rel/04") == [
            {"name": n, "hash": refs[i].hash, "size": refs[i].size}
            for i, n in ((5, "rel/05"), (6, "rel/06"))
        ]
        assert [e["name"] for e in c.blobs.pins("other/")] == ["other/a"]
        assert c.blobs.pins("none/") == []

        # a blob pinned under more names than a page may carry lists a part of them
        crowded = c.blobs.put(b"crowded", pin="x/0")
        for n in range(1, 6):
            c.blobs.pin(f"x/{n}", crowded.hash)
        every = [b["hash"] for b in c.blobs.list()]
        assert sorted(every) == every and crowded.hash in every and len(every) == 12
        page = c.call("blob.list", {})
        assert page["more"] and sum(len(b["pins"]) for b in page["blobs"]) <= 4
        at = every.index(crowded.hash)
        page = c.call("blob.list", {"after": every[at - 1] if at else None})
        assert [b["hash"] for b in page["blobs"]] == [crowded.hash] and page["more"]
        assert page["blobs"][0]["pins_truncated"] and len(page["blobs"][0]["pins"]) == 4

        for bad in ({"after": "zz"}, {"limit": 0}, {"limit": 1001}, {"after": 7}):
            with pytest.raises(InvalidArgumentError):
                c.call("blob.list", bad)
        with pytest.raises(InvalidArgumentError):
            c.call("blob.pins", {"prefix": "p" * 600})
