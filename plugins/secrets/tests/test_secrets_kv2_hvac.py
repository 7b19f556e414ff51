"""KV v2 driven by hvac (a real Vault client) against a real node's HTTP API, mount ``secret/``."""

from __future__ import annotations

from typing import Any

import pytest
from hvac import exceptions


def _kv(vault: Any) -> Any:
    return vault.secrets.kv.v2


@pytest.mark.filterwarnings("ignore:The raise_on_deleted_version:DeprecationWarning")
def test_kv2_hvac_versions_cas_and_patch(vault: Any) -> None:
    kv = _kv(vault)
    first = kv.create_or_update_secret(path="hvac/app", secret={"user": "a"}, cas=0)
    assert first["data"]["version"] == 1
    with pytest.raises(exceptions.InvalidRequest, match="check-and-set"):
        kv.create_or_update_secret(path="hvac/app", secret={"user": "x"}, cas=0)
    kv.create_or_update_secret(path="hvac/app", secret={"user": "b"}, cas=1)

    latest = kv.read_secret_version(path="hvac/app", raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"user": "b"}
    assert latest["data"]["metadata"]["version"] == 2
    old = kv.read_secret_version(path="hvac/app", version=1, raise_on_deleted_version=True)
    assert old["data"]["data"] == {"user": "a"}

    patched = kv.patch(path="hvac/app", secret={"extra": "1"})
    assert patched["data"]["version"] == 3
    got = kv.read_secret_version(path="hvac/app", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"user": "b", "extra": "1"}
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version(path="hvac/missing", raise_on_deleted_version=True)


def test_kv2_hvac_delete_undelete_destroy(vault: Any) -> None:
    kv = _kv(vault)
    for n in range(1, 4):
        kv.create_or_update_secret(path="hvac/life", secret={"n": n})

    kv.delete_latest_version_of_secret(path="hvac/life")
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version(path="hvac/life", raise_on_deleted_version=True)
    # A deleted version answers 404 with its metadata, which hvac can hand back.
    deleted = kv.read_secret_version(path="hvac/life", raise_on_deleted_version=False)
    assert deleted["data"]["data"] is None
    assert deleted["data"]["metadata"]["deletion_time"] != ""

    kv.delete_secret_versions(path="hvac/life", versions=[1])
    kv.undelete_secret_versions(path="hvac/life", versions=[1, 3])
    assert kv.read_secret_version(path="hvac/life", raise_on_deleted_version=True)["data"][
        "data"
    ] == {"n": 3}
    one = kv.read_secret_version(path="hvac/life", version=1, raise_on_deleted_version=True)
    assert one["data"]["data"] == {"n": 1}

    kv.destroy_secret_versions(path="hvac/life", versions=[2])
    meta = kv.read_secret_metadata(path="hvac/life")["data"]
    assert meta["versions"]["2"]["destroyed"] is True
    assert meta["current_version"] == 3
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version(path="hvac/life", version=2, raise_on_deleted_version=True)


def test_kv2_hvac_metadata_list_and_config(vault: Any) -> None:
    kv = _kv(vault)
    for path in ("hvac/tree/a", "hvac/tree/b/c"):
        kv.create_or_update_secret(path=path, secret={"k": "v"})
    assert kv.list_secrets(path="hvac/tree")["data"]["keys"] == ["a", "b/"]

    kv.update_metadata(
        path="hvac/tree/a",
        max_versions=2,
        cas_required=False,
        delete_version_after="1h",
        custom_metadata={"owner": "ops"},
    )
    meta = kv.read_secret_metadata(path="hvac/tree/a")["data"]
    assert meta["max_versions"] == 2
    assert meta["delete_version_after"] == "1h0m0s"
    assert meta["custom_metadata"] == {"owner": "ops"}
    for n in range(3):
        kv.create_or_update_secret(path="hvac/tree/a", secret={"n": n})
    meta = kv.read_secret_metadata(path="hvac/tree/a")["data"]
    assert sorted(meta["versions"]) == ["3", "4"] and meta["oldest_version"] == 3
    with pytest.raises(exceptions.InvalidRequest, match="custom_metadata"):
        kv.update_metadata(path="hvac/tree/a", custom_metadata={"k": "v" * 513})

    kv.delete_metadata_and_all_versions(path="hvac/tree/a")
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_metadata(path="hvac/tree/a")
    assert kv.list_secrets(path="hvac/tree")["data"]["keys"] == ["b/"]

    assert kv.read_configuration()["data"]["max_versions"] == 0
    kv.configure(max_versions=7, cas_required=True, delete_version_after="30m")
    assert kv.read_configuration()["data"] == {
        "max_versions": 7,
        "cas_required": True,
        "delete_version_after": "30m0s",
    }
    with pytest.raises(exceptions.InvalidRequest, match="check-and-set parameter required"):
        kv.create_or_update_secret(path="hvac/tree/b/c", secret={"k": "w"})
