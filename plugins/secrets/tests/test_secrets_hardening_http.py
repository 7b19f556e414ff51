"""HTTP-level regressions of the review findings: the ``vault kv`` CLI's mount preflight,
``kv-v2`` mounts through hvac, status-code overrides, malformed bodies, the bootstrap
import finishing before the plugin reports ready."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hvac
import pytest

from aspen_secrets.sops import encrypt_document

SOPS_KEYS = Path(__file__).parent / "fixtures" / "sops" / "keys.txt"


@pytest.fixture
def http(vault_url: str, secrets_node: Any) -> Iterator[httpx.Client]:
    """An httpx client on the API with the root token."""
    headers = {"X-Vault-Token": secrets_node.token}
    with httpx.Client(base_url=vault_url, headers=headers, timeout=30) as client:
        yield client


def test_kv_preflight_mount_lookup(http: httpx.Client, vault_url: str) -> None:
    for prefix in ("/v1/sys/mounts-all/", "/v1/sys/internal/ui/mounts/"):
        for path in ("secret/app", "secret/data/app", "secret", "secret/a/b/c"):
            resp = http.get(prefix + path)
            assert resp.status_code == 200, (prefix, path, resp.text)
            data = resp.json()["data"]
            assert data["type"] == "kv"
            assert data["options"]["version"] == "2"
            assert data["path"] == "secret/"
        assert http.get(prefix + "transit/keys/k").json()["data"]["path"] == "transit/"
        assert http.get(prefix + "nomount/x").status_code == 404
    assert httpx.get(f"{vault_url}/v1/sys/mounts-all/secret/app").status_code == 403


def test_hvac_kv_v2_on_default_and_kv_v2_mounts(vault: hvac.Client) -> None:
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(path="app", secret={"password": "one"})
    kv.create_or_update_secret(path="app", secret={"password": "two"}, cas=1)
    read = kv.read_secret_version(path="app", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"password": "two"}
    assert read["data"]["metadata"]["version"] == 2
    assert kv.list_secrets(path="")["data"]["keys"] == ["app"]

    vault.sys.enable_secrets_engine("kv-v2", path="team")
    mounted = vault.sys.read_mount_configuration("team")  # the mount exists as kv v2
    assert mounted["data"]["options"] == {"version": "2"}
    assert vault.sys.list_mounted_secrets_engines()["data"]["team/"]["type"] == "kv"
    kv.create_or_update_secret(path="x", secret={"v": "1"}, mount_point="team")
    assert kv.read_secret_version(path="x", mount_point="team", raise_on_deleted_version=True)[
        "data"
    ]["data"] == {"v": "1"}


def test_health_status_overrides_are_bounded(vault_url: str) -> None:
    with httpx.Client(base_url=vault_url, timeout=30) as c:  # no token needed
        for code in ("100", "199", "204", "304", "600", "abc"):
            resp = c.get(f"/v1/sys/health?activecode={code}")
            assert resp.status_code == 400, (code, resp.text)
            assert "status code" in resp.json()["errors"][0] or code == "abc"
        assert c.get("/v1/sys/health?activecode=299").status_code == 299
        assert c.get("/v1/sys/health?activecode=").status_code == 200


def test_transit_partial_failure_code_bounded(http: httpx.Client) -> None:
    assert http.post("/v1/transit/keys/k").status_code in (200, 204)
    body = {
        "batch_input": [{"plaintext": "aGk="}, {"plaintext": "not base64!"}],
        "partial_failure_response_code": 100,
    }
    resp = http.post("/v1/transit/encrypt/k", json=body)
    assert resp.status_code == 400 and "status code" in resp.json()["errors"][0]
    resp = http.post("/v1/transit/encrypt/k", json={**body, "partial_failure_response_code": 207})
    assert resp.status_code == 207


def test_malformed_bodies_are_400(http: httpx.Client) -> None:
    deep = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = http.post(
        "/v1/secret/data/deep", content=deep, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and "nested too deeply" in resp.json()["errors"][0]
    surrogate = b'{"data": {"k": "\\ud800"}}'
    resp = http.post(
        "/v1/secret/data/s", content=surrogate, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and "cannot be stored" in resp.json()["errors"][0]
    assert http.get("/v1/secret/data/s").status_code == 404  # nothing was written


def test_disable_twice_and_ca_read_without_token(http: httpx.Client, vault_url: str) -> None:
    assert http.post("/v1/sys/mounts/team", json={"type": "kv"}).status_code == 204
    assert http.post("/v1/team/data/x", json={"data": {"a": "1"}}).status_code == 200
    assert http.delete("/v1/sys/mounts/team").status_code == 204
    assert http.delete("/v1/sys/mounts/team").status_code == 204  # a retry is harmless
    body = http.get("/v1/sys/mounts").json()["data"]
    assert "team/" not in body

    http.post("/v1/pki/root/generate/internal", json={"common_name": "R", "key_type": "ec"})
    assert httpx.get(f"{vault_url}/v1/pki/ca/pem").text.startswith("-----BEGIN CERTIFICATE")


def test_bootstrap_import_finishes_before_ready(
    secrets_node_factory: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recipients = re.findall(r"# public key: (age1\w+)", SOPS_KEYS.read_text())
    doc = {f"s{i:03d}": {"v": str(i)} for i in range(60)}
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_bytes(encrypt_document(doc, "json", recipients))
    monkeypatch.setenv("ASPEN_SECRETS_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("ASPEN_SECRETS_AGE_KEY_FILE", str(SOPS_KEYS))
    node = secrets_node_factory(tmp_path / "n1")
    with node.client() as c:
        status = c.call("secrets.status")  # right after it first reported ready
    assert status["state"] == "ready"
    assert len(status["bootstrap"]["written"]) == len(doc), status["bootstrap"]
    with node.client() as c:
        answer = c.call(
            "secrets.request", {"operation": "read", "path": "secret/data/s059", "data": {}}
        )
    assert answer["data"]["data"] == {"v": "59"}
