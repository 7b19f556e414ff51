"""The KV v2 engine through ``engine.handle(Request(...))`` on an in-memory store."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest

from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from aspen_secrets import limits
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.kv2 import KvV2Engine
from aspen_secrets.engines.kv2.model import format_time
from aspen_secrets.logical import (
    Operation,
    Request,
    Response,
    UnsupportedOperationError,
    UnsupportedPathError,
    http_status,
)
from aspen_secrets.store import Entry, MemoryStore, ScopedStore

pytestmark = pytest.mark.anyio

R, W, L, D, P = Operation.READ, Operation.WRITE, Operation.LIST, Operation.DELETE, Operation.PATCH
SECOND = 1_000_000_000
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture
def anyio_backend() -> str:
    """Run on asyncio, as nodes do."""
    return "asyncio"


class Clock:
    """A settable nanosecond clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * SECOND + 123_456_789

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backing() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def kv(backing: MemoryStore, clock: Clock) -> KvV2Engine:
    store = ScopedStore(backing, "mounts/m1/")
    return KvV2Engine(store, Mount("secret/", "kv", "m1"), clock=clock)


async def call(kv: KvV2Engine, op: Operation, path: str, data: dict[str, Any] | None = None):
    """The response's data (raises what the engine raises)."""
    return (await kv.handle(Request(op, path, data or {}))).data


async def put(kv: KvV2Engine, path: str, data: dict[str, Any], **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data}
    if options:
        body["options"] = options
    return await call(kv, W, f"data/{path}", body)


# --- versions and reads ------------------------------------------------------------


async def test_write_and_read_versions(kv: KvV2Engine) -> None:
    first = await put(kv, "app/db", {"user": "a", "n": 1})
    assert first["version"] == 1
    assert first["destroyed"] is False and first["deletion_time"] == ""
    assert first["custom_metadata"] is None
    assert RFC3339_NANO.match(first["created_time"])
    await put(kv, "app/db", {"user": "b"})

    latest = await call(kv, R, "data/app/db")
    assert latest["data"] == {"user": "b"}
    assert latest["metadata"]["version"] == 2
    old = await call(kv, R, "data/app/db", {"version": "1"})  # query params arrive as text
    assert old["data"] == {"user": "a", "n": 1}
    assert old["metadata"]["version"] == 1


async def test_read_missing_secret_or_version_is_plain_404(kv: KvV2Engine) -> None:
    with pytest.raises(NotFoundError):
        await call(kv, R, "data/nothing")
    await put(kv, "x", {"a": "1"})
    with pytest.raises(NotFoundError):
        await call(kv, R, "data/x", {"version": 7})


def test_timestamps_are_rfc3339_with_nanoseconds() -> None:
    assert format_time(1521685446945319214) == "2018-03-22T02:24:06.945319214Z"
    assert format_time(1521685446945319000) == "2018-03-22T02:24:06.945319Z"
    assert format_time(1521685446 * SECOND) == "2018-03-22T02:24:06Z"
    assert format_time(None) == ""


async def test_routing_errors(kv: KvV2Engine) -> None:
    with pytest.raises(UnsupportedPathError):
        await call(kv, R, "nope/x")
    with pytest.raises(UnsupportedOperationError) as info:
        await call(kv, R, "destroy/x")
    assert http_status(info.value) == 405


# --- check-and-set -----------------------------------------------------------------


async def test_cas_zero_match_and_mismatch(kv: KvV2Engine) -> None:
    assert (await put(kv, "c", {"v": 1}, cas=0))["version"] == 1
    with pytest.raises(CompareFailedError) as info:
        await put(kv, "c", {"v": 2}, cas=0)
    assert str(info.value) == "check-and-set parameter did not match the current version"
    assert http_status(info.value) == 400
    assert (await put(kv, "c", {"v": 2}, cas=1))["version"] == 2
    with pytest.raises(CompareFailedError):
        await put(kv, "c", {"v": 3}, cas=5)
    with pytest.raises(InvalidArgumentError, match="error parsing check-and-set"):
        await put(kv, "c", {"v": 3}, cas="two")
    assert (await call(kv, R, "data/c"))["data"] == {"v": 2}


async def test_cas_required_by_mount(kv: KvV2Engine) -> None:
    await call(kv, W, "config", {"cas_required": True})
    with pytest.raises(InvalidArgumentError) as info:
        await put(kv, "m", {"v": 1})
    assert str(info.value) == "check-and-set parameter required for this call"
    assert http_status(info.value) == 400
    assert (await put(kv, "m", {"v": 1}, cas=0))["version"] == 1
    # A secret cannot opt out: the write succeeds with a warning, the mount rule holds.
    answer = await kv.handle(Request(W, "metadata/m", {"cas_required": False}))
    assert answer.warnings and "mandated by backend config" in answer.warnings[0]
    with pytest.raises(InvalidArgumentError):
        await put(kv, "m", {"v": 2})


async def test_cas_required_by_secret(kv: KvV2Engine) -> None:
    await put(kv, "s", {"v": 1})
    await call(kv, W, "metadata/s", {"cas_required": True})
    with pytest.raises(InvalidArgumentError, match="required"):
        await put(kv, "s", {"v": 2})
    assert (await put(kv, "s", {"v": 2}, cas=1))["version"] == 2
    await put(kv, "other", {"v": 1})  # other secrets are not affected


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no data provided"),
        ({"data": ["a"]}, "JSON object"),
        ({"data": "text"}, "JSON object"),
        ({"data": {"a": 1}, "options": "cas=0"}, "options"),
    ],
)
async def test_write_rejects_bad_bodies(kv: KvV2Engine, body: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        await call(kv, W, "data/bad", body)
    assert http_status(info.value) == 400
    with pytest.raises(NotFoundError):
        await call(kv, R, "metadata/bad")  # nothing half-written


async def test_write_rejects_oversize_and_deep_data(kv: KvV2Engine) -> None:
    with pytest.raises(ResourceExhaustedError):
        await put(kv, "big", {"blob": "x" * (limits.KV2_MAX_DATA_BYTES + 1)})
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(limits.KV2_MAX_DATA_DEPTH + 1):
        node["k"] = {}
        node = node["k"]
    with pytest.raises(InvalidArgumentError, match="nested deeper"):
        await put(kv, "deep", deep)


@pytest.mark.parametrize(
    "path",
    [
        "a//b",
        "../x",
        "a/./b",
        "x" * (limits.SECRETS_MAX_PATH_CHARS + 1),
        "é" * (limits.KV2_MAX_PATH_BYTES // 2 + 1),
    ],
)
async def test_bad_paths(kv: KvV2Engine, path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await put(kv, path, {"a": 1})


# --- patch -------------------------------------------------------------------------


async def test_patch_merges_and_null_deletes(kv: KvV2Engine) -> None:
    await put(kv, "p", {"keep": 1, "drop": 2, "nested": {"a": 1, "b": {"c": 1}}, "list": [1]})
    answer = await call(
        kv,
        P,
        "data/p",
        {"data": {"drop": None, "nested": {"b": {"d": 2}, "a": None}, "list": [2], "new": "x"}},
    )
    assert answer["version"] == 2
    got = await call(kv, R, "data/p")
    assert got["data"] == {"keep": 1, "nested": {"b": {"c": 1, "d": 2}}, "list": [2], "new": "x"}
    assert (await call(kv, R, "data/p", {"version": 1}))["data"]["drop"] == 2


async def test_patch_needs_an_existing_live_version(kv: KvV2Engine) -> None:
    with pytest.raises(NotFoundError):
        await call(kv, P, "data/none", {"data": {"a": 1}})
    await put(kv, "p", {"a": 1})
    with pytest.raises(CompareFailedError):
        await call(kv, P, "data/p", {"data": {"a": 2}, "options": {"cas": 0}})
    assert (await call(kv, P, "data/p", {"data": {"a": 2}, "options": {"cas": 1}}))["version"] == 2
    await call(kv, D, "data/p")
    answer = await kv.handle(Request(P, "data/p", {"data": {"a": 3}}))
    assert answer.status == 404
    assert answer.data["version"] == 2 and answer.data["deletion_time"] != ""
    assert (await call(kv, R, "metadata/p"))["current_version"] == 2


# --- delete, undelete, destroy -----------------------------------------------------


async def test_soft_delete_latest_reads_404_with_metadata(kv: KvV2Engine, clock: Clock) -> None:
    await put(kv, "d", {"a": 1})
    await put(kv, "d", {"a": 2})
    clock.advance(1)
    assert await call(kv, D, "data/d") is None
    answer = await kv.handle(Request(R, "data/d"))
    assert isinstance(answer, Response) and answer.status == 404
    assert answer.data["data"] is None
    assert answer.data["metadata"]["version"] == 2
    assert answer.data["metadata"]["deletion_time"] == format_time(clock.now)
    assert (await call(kv, R, "data/d", {"version": 1}))["data"] == {"a": 1}


async def test_delete_undelete_destroy_listed_versions(
    kv: KvV2Engine, backing: MemoryStore
) -> None:
    for n in range(1, 4):
        await put(kv, "v", {"n": n})
    await call(kv, W, "delete/v", {"versions": [1, 2, 99]})
    assert (await kv.handle(Request(R, "data/v", {"version": 1}))).status == 404
    assert (await kv.handle(Request(R, "data/v", {"version": 2}))).status == 404
    assert (await call(kv, R, "data/v"))["data"] == {"n": 3}

    await call(kv, W, "undelete/v", {"versions": "1"})  # comma-separated text works too
    assert (await call(kv, R, "data/v", {"version": 1}))["data"] == {"n": 1}

    await call(kv, W, "destroy/v", {"versions": [2, 3]})
    for n in (2, 3):
        answer = await kv.handle(Request(R, "data/v", {"version": n}))
        assert answer.status == 404 and answer.data["metadata"]["destroyed"] is True
    await call(kv, W, "undelete/v", {"versions": [2]})  # destroyed stays destroyed
    assert (await kv.handle(Request(R, "data/v", {"version": 2}))).status == 404
    assert await backing.keys("mounts/m1/ver/") == ["mounts/m1/ver/v/1"]

    meta = await call(kv, R, "metadata/v")
    assert meta["versions"]["2"]["destroyed"] is True
    assert meta["versions"]["1"] == {
        "created_time": meta["versions"]["1"]["created_time"],
        "deletion_time": "",
        "destroyed": False,
    }
    with pytest.raises(InvalidArgumentError, match="No version number provided"):
        await call(kv, W, "delete/v", {"versions": []})
    assert await call(kv, W, "destroy/absent", {"versions": [1]}) is None


# --- metadata ----------------------------------------------------------------------


async def test_metadata_read_update_delete(kv: KvV2Engine, backing: MemoryStore) -> None:
    created = await put(kv, "m", {"a": 1})
    await put(kv, "m", {"a": 2})
    meta = await call(kv, R, "metadata/m")
    assert meta["current_version"] == 2 and meta["oldest_version"] == 0
    assert meta["max_versions"] == 0 and meta["delete_version_after"] == "0s"
    assert meta["cas_required"] is False and meta["custom_metadata"] is None
    assert meta["created_time"] == created["created_time"]
    assert sorted(meta["versions"]) == ["1", "2"]

    await call(
        kv,
        W,
        "metadata/m",
        {"max_versions": 5, "delete_version_after": "3h25m19s", "custom_metadata": {"o": "j"}},
    )
    meta = await call(kv, R, "metadata/m")
    assert meta["max_versions"] == 5 and meta["delete_version_after"] == "3h25m19s"
    assert meta["custom_metadata"] == {"o": "j"}
    assert meta["current_version"] == 2  # no new version
    assert (await call(kv, R, "data/m"))["metadata"]["custom_metadata"] == {"o": "j"}

    await call(kv, P, "metadata/m", {"custom_metadata": {"o": None, "n": 7}, "max_versions": 4})
    meta = await call(kv, R, "metadata/m")
    assert meta["custom_metadata"] == {"n": "7"} and meta["max_versions"] == 4
    assert meta["delete_version_after"] == "3h25m19s"  # untouched by the patch

    assert await call(kv, D, "metadata/m") is None
    with pytest.raises(NotFoundError):
        await call(kv, R, "metadata/m")
    assert await backing.keys("") == []
    with pytest.raises(NotFoundError):
        await call(kv, P, "metadata/m", {"max_versions": 1})


async def test_metadata_write_creates_secret_settings_before_data(kv: KvV2Engine) -> None:
    await call(kv, W, "metadata/pre", {"max_versions": 2, "cas_required": True})
    meta = await call(kv, R, "metadata/pre")
    assert meta["current_version"] == 0 and meta["versions"] == {}
    with pytest.raises(NotFoundError):
        await call(kv, R, "data/pre")
    assert (await put(kv, "pre", {"a": 1}, cas=0))["version"] == 1


@pytest.mark.parametrize(
    "custom",
    [
        {f"k{i}": "v" for i in range(limits.KV2_MAX_CUSTOM_METADATA_KEYS + 1)},
        {"k" * (limits.KV2_MAX_CUSTOM_METADATA_KEY_BYTES + 1): "v"},
        {"k": "v" * (limits.KV2_MAX_CUSTOM_METADATA_VALUE_BYTES + 1)},
        {"k": ""},
        {"k": "bell\x07"},
        {"k": ["list"]},
    ],
)
async def test_custom_metadata_bounds(kv: KvV2Engine, custom: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="custom_metadata validation failed"):
        await call(kv, W, "metadata/cm", {"custom_metadata": custom})
    with pytest.raises(NotFoundError):
        await call(kv, R, "metadata/cm")


async def test_custom_metadata_at_the_bounds_is_accepted(kv: KvV2Engine) -> None:
    custom = {
        f"{i:03d}".ljust(limits.KV2_MAX_CUSTOM_METADATA_KEY_BYTES, "k"): "é"
        * (limits.KV2_MAX_CUSTOM_METADATA_VALUE_BYTES // 2)
        for i in range(limits.KV2_MAX_CUSTOM_METADATA_KEYS)
    }
    await call(kv, W, "metadata/cm", {"custom_metadata": custom})
    assert (await call(kv, R, "metadata/cm"))["custom_metadata"] == custom
    with pytest.raises(InvalidArgumentError, match="at most"):  # a patch cannot grow past it
        await call(kv, P, "metadata/cm", {"custom_metadata": {"one-more": "v"}})


# --- pruning and automatic deletion ------------------------------------------------


async def test_max_versions_prunes_oldest_in_the_same_commit(
    kv: KvV2Engine, backing: MemoryStore
) -> None:
    await call(kv, W, "config", {"max_versions": 3})
    for n in range(1, 6):
        await put(kv, "p", {"n": n})
    meta = await call(kv, R, "metadata/p")
    assert meta["oldest_version"] == 3 and sorted(meta["versions"]) == ["3", "4", "5"]
    assert meta["max_versions"] == 0  # the secret sets none; the mount's 3 is in effect
    assert await backing.keys("mounts/m1/ver/p/") == [f"mounts/m1/ver/p/{n}" for n in (3, 4, 5)]
    with pytest.raises(NotFoundError):
        await call(kv, R, "data/p", {"version": 1})

    await call(kv, W, "metadata/p", {"max_versions": 1})  # the secret's own setting wins
    await put(kv, "p", {"n": 6})
    meta = await call(kv, R, "metadata/p")
    assert meta["oldest_version"] == 6 and list(meta["versions"]) == ["6"]
    assert await backing.keys("mounts/m1/ver/p/") == ["mounts/m1/ver/p/6"]


async def test_default_keeps_ten_versions(kv: KvV2Engine) -> None:
    for n in range(1, 12):
        await put(kv, "d", {"n": n})
    meta = await call(kv, R, "metadata/d")
    assert len(meta["versions"]) == limits.KV2_DEFAULT_MAX_VERSIONS
    assert meta["oldest_version"] == 2


async def test_max_versions_is_bounded(kv: KvV2Engine) -> None:
    with pytest.raises(InvalidArgumentError):
        await call(kv, W, "config", {"max_versions": limits.KV2_MAX_VERSIONS + 1})
    with pytest.raises(InvalidArgumentError):
        await call(kv, W, "metadata/x", {"max_versions": -1})


async def test_delete_version_after(kv: KvV2Engine, clock: Clock) -> None:
    await call(kv, W, "metadata/t", {"delete_version_after": "1h"})
    written = await put(kv, "t", {"a": 1})
    assert written["deletion_time"] == format_time(clock.now + 3600 * SECOND)
    clock.advance(3599)
    assert (await call(kv, R, "data/t"))["data"] == {"a": 1}
    clock.advance(2)
    answer = await kv.handle(Request(R, "data/t"))
    assert answer.status == 404 and answer.data["metadata"]["deletion_time"] != ""
    # Undelete starts a new lifetime.
    await call(kv, W, "undelete/t", {"versions": [1]})
    assert (await call(kv, R, "data/t"))["data"] == {"a": 1}

    # The smaller non-zero of mount and secret wins; a negative mount value disables it.
    await call(kv, W, "config", {"delete_version_after": "10m"})
    assert (await put(kv, "t", {"a": 2}))["deletion_time"] == format_time(clock.now + 600 * SECOND)
    await call(kv, W, "config", {"delete_version_after": "-1s"})
    assert (await call(kv, R, "config"))["delete_version_after"] == "-1s"
    assert (await put(kv, "t", {"a": 3}))["deletion_time"] == ""


async def test_config_read_write(kv: KvV2Engine) -> None:
    assert await call(kv, R, "config") == {
        "max_versions": 0,
        "cas_required": False,
        "delete_version_after": "0s",
    }
    await call(kv, W, "config", {"max_versions": "5", "delete_version_after": "3h25m19s"})
    assert await call(kv, R, "config") == {
        "max_versions": 5,
        "cas_required": False,
        "delete_version_after": "3h25m19s",
    }
    with pytest.raises(InvalidArgumentError):
        await call(kv, W, "config", {"delete_version_after": "soon"})


# --- list and subkeys --------------------------------------------------------------


async def test_list_with_folders(kv: KvV2Engine) -> None:
    for path in ("foo", "foo/bar", "foo/baz/qux", "zed"):
        await put(kv, path, {"a": 1})
    assert await call(kv, L, "metadata") == {"keys": ["foo", "foo/", "zed"]}
    assert await call(kv, L, "metadata/foo") == {"keys": ["bar", "baz/"]}
    assert await call(kv, L, "metadata/foo/") == {"keys": ["bar", "baz/"]}
    assert await call(kv, L, "metadata/foo/baz") == {"keys": ["qux"]}
    with pytest.raises(NotFoundError):
        await call(kv, L, "metadata/zed")
    await call(kv, D, "metadata/foo/baz/qux")
    assert await call(kv, L, "metadata/foo") == {"keys": ["bar"]}


async def test_subkeys(kv: KvV2Engine) -> None:
    await put(kv, "s", {"foo": "abc", "bar": {"baz": "def", "deep": {"x": 1}}, "quux": {}})
    answer = await call(kv, R, "subkeys/s")
    assert answer["subkeys"] == {
        "foo": None,
        "bar": {"baz": None, "deep": {"x": None}},
        "quux": None,
    }
    assert answer["metadata"]["version"] == 1
    shallow = await call(kv, R, "subkeys/s", {"depth": "1"})
    assert shallow["subkeys"] == {"foo": None, "bar": None, "quux": None}
    await call(kv, D, "data/s")
    assert (await kv.handle(Request(R, "subkeys/s"))).status == 404


# --- concurrency -------------------------------------------------------------------


class YieldingStore(MemoryStore):
    """A MemoryStore that lets other tasks run at every read and commit, as a networked
    store does, so concurrent writers really interleave."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_commits = 0

    async def get(self, path: str) -> Entry | None:
        await anyio.sleep(0)
        return await super().get(path)

    async def commit(self, writes) -> bool:
        await anyio.sleep(0)
        ok = await super().commit(writes)
        self.failed_commits += not ok
        return ok


async def test_concurrent_writers_lose_no_version(clock: Clock) -> None:
    store = YieldingStore()
    kv = KvV2Engine(store, Mount("secret/", "kv", "m1"), clock=clock)
    per_writer = 15
    await call(kv, W, "config", {"max_versions": 2 * per_writer})
    acked: dict[int, dict[str, Any]] = {}

    async def writer(name: str) -> None:
        for i in range(per_writer):
            data = {"writer": name, "i": i}
            answer = await put(kv, "shared", data)
            assert answer["version"] not in acked
            acked[answer["version"]] = data

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer, "a")
        tg.start_soon(writer, "b")

    assert sorted(acked) == list(range(1, 2 * per_writer + 1))
    assert store.failed_commits > 0  # the writers did race
    for version, data in acked.items():
        assert (await call(kv, R, "data/shared", {"version": version}))["data"] == data
    assert (await call(kv, R, "metadata/shared"))["current_version"] == 2 * per_writer
