"""Bootstrapping from a SOPS file at start-up: secrets land in KV v2 once (restarts do
not add versions), ``aspen_root_key`` becomes the root key, a bad file seals the plugin."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import aspen
from aspen.errors import AspenError
from aspen.node.devcluster import node_command
from aspen.testing import free_node_port, wait_for
from aspen_secrets.bootstrap import secret_data
from aspen_secrets.sops import encrypt_document

FIXTURES = Path(__file__).parent / "fixtures" / "sops"
KEYS = FIXTURES / "keys.txt"


def _recipients() -> list[str]:
    return re.findall(r"# public key: (age1\w+)", KEYS.read_text())


def _kv(url: str, token: str, name: str) -> dict[str, Any]:
    resp = httpx.get(f"{url}/v1/secret/data/{name}", headers={"X-Vault-Token": token})
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def test_secret_data_shapes() -> None:
    assert secret_data({"a": 1}) == {"a": 1}
    assert secret_data("s") == {"value": "s"}
    assert secret_data([1, 2]) == {"value": [1, 2]}


class _NodeProcess:
    """``aspen node start`` with the secrets plugin and extra flags, as a real process."""

    def __init__(self, data_dir: Path, extra: list[str]) -> None:
        self.data_dir = data_dir
        self.endpoint = f"127.0.0.1:{free_node_port()}"
        env = {
            **os.environ,
            "ASPEN_LOAD_PLUGINS": "secrets",
            "ASPEN_SECRETS_HTTP_LISTEN": "127.0.0.1:0",
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        log = open(data_dir.parent / f"{data_dir.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            node_command(data_dir, self.endpoint) + extra,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def token(self) -> str:
        return (self.data_dir / "root-token").read_text().strip()

    def status(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            log = (self.data_dir.parent / f"{self.data_dir.name}.log").read_text(errors="replace")
            raise AssertionError(f"node exited with {self.proc.returncode}: {log[-2000:]}")
        try:
            with aspen.connect(self.endpoint, token=self.token, timeout=2) as c:
                status = c.call("secrets.status")
        except (AspenError, OSError):
            return None
        return status if status["state"] != "starting" and status["bootstrap"] else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_node_start_secrets_file_bootstraps_kv_once(tmp_path: Path) -> None:
    secrets_file = tmp_path / "example.yaml"
    secrets_file.write_bytes((FIXTURES / "example.yaml").read_bytes())
    expected = json.loads((FIXTURES / "example.yaml.expected.json").read_text())
    flags = ["--secrets-file", str(secrets_file), "--age-key-file", str(KEYS)]
    data_dir = tmp_path / "node"
    reports = []
    for _ in range(2):  # the second start finds everything unchanged
        node = _NodeProcess(data_dir, flags)
        try:
            status = wait_for(node.status, timeout=30, message="bootstrap finished")
            reports.append(status["bootstrap"])
            url = f"http://{status['http_address']}"
            app = _kv(url, node.token, "app2")
            assert app["data"] == expected["app2"] and app["metadata"]["version"] == 1
            scalar = _kv(url, node.token, "myapp1")
            assert scalar["data"] == {"value": expected["myapp1"]}
            assert _kv(url, node.token, "somebooleans")["data"] == {"value": [True, False]}
            assert status["root_key_source"] == "dev"  # the fixture has no aspen_root_key
        finally:
            node.stop()
    assert sorted(reports[0]["written"]) == sorted(expected)
    assert reports[1]["written"] == [] and sorted(reports[1]["unchanged"]) == sorted(expected)


def test_root_key_from_the_secrets_file(
    secrets_node_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root_key = base64.b64encode(os.urandom(32)).decode()
    doc = {"aspen_root_key": root_key, "api": {"token": "tok-123"}}
    secrets_file = tmp_path / "boot.sops.json"
    secrets_file.write_bytes(encrypt_document(doc, "json", _recipients()))
    assert root_key.encode() not in secrets_file.read_bytes()
    monkeypatch.setenv("ASPEN_SECRETS_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(KEYS))  # the default --age-key-file

    data_dir = tmp_path / "node"
    node = secrets_node_factory(data_dir)
    with node.client() as c:
        status = wait_for(lambda: (s := c.call("secrets.status"))["bootstrap"] and s)
    assert status["root_key_source"] == f"secrets file {secrets_file}"
    assert status["bootstrap"]["written"] == ["api"]  # the root key is not a secret
    assert _kv(f"http://{node.http_address}", node.token, "api")["data"] == {"token": "tok-123"}
    node.stop()

    # without the file, the node's dev key does not open the keyring the file's key made
    monkeypatch.delenv("ASPEN_SECRETS_SECRETS_FILE")
    sealed = secrets_node_factory(data_dir, ready=False)
    with sealed.client() as c:
        assert c.call("secrets.status")["state"] == "sealed"


def test_tampered_secrets_file_seals_the_plugin(
    secrets_node_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_file = tmp_path / "bad.sops.json"
    text = encrypt_document({"a": "value-one"}, "json", _recipients()).decode()
    doc = json.loads(text)
    doc["a"], doc["sops"]["mac"] = doc["sops"]["mac"], doc["a"]  # swapped: no longer valid
    secrets_file.write_text(json.dumps(doc))
    monkeypatch.setenv("ASPEN_SECRETS_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("ASPEN_SECRETS_AGE_KEY_FILE", str(KEYS))
    node = secrets_node_factory(tmp_path / "node", ready=False)
    start = time.monotonic()
    with node.client() as c:
        status = c.call("secrets.status")
    assert time.monotonic() - start < 10
    assert status["state"] == "sealed", status
    assert status["reason"].startswith(f"cannot read the secrets file {secrets_file}")
    health = httpx.get(f"http://{node.http_address}/v1/sys/health")
    assert health.status_code == 503


def test_node_start_secrets_http_listen_flag(tmp_path: Path) -> None:
    port = free_node_port()
    node = _NodeProcess(tmp_path / "node", ["--secrets-http-listen", f"127.0.0.1:{port}"])
    try:

        def active() -> bool:  # 503 while the keyring opens, then 200
            try:
                url = f"http://127.0.0.1:{port}/v1/sys/health"
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                assert node.proc.poll() is None, "the node exited"
                return False

        wait_for(active, timeout=30, message="the API serves on the flag's port")
        with aspen.connect(node.endpoint, token=node.token, timeout=5) as c:
            assert c.call("secrets.status")["http_address"] == f"127.0.0.1:{port}"
    finally:
        node.stop()
