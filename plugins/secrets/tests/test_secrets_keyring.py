"""The keyring: sealing values, rotation, root key sources, and a node that cannot open
the cluster's keyring staying sealed (503) while the node runs on."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.keyring import (
    ROOT_KEY_BYTES,
    Keyring,
    RootKey,
    dev_root_key,
    parse_root_key,
    read_root_key_file,
)
from aspen_secrets.logical import SealedError


def test_values_open_only_for_their_path_and_key() -> None:
    ring = Keyring.new()
    blob = ring.encrypt(b"hello", b"/_aspen/secrets/a")
    assert b"hello" not in blob and ring.term_of(blob) == 1
    assert ring.decrypt(blob, b"/_aspen/secrets/a") == b"hello"
    with pytest.raises(SealedError, match="failed authentication"):
        ring.decrypt(blob, b"/_aspen/secrets/b")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealedError):
        ring.decrypt(tampered, b"/_aspen/secrets/a")
    with pytest.raises(SealedError):
        Keyring.new().decrypt(blob, b"/_aspen/secrets/a")
    with pytest.raises(InvalidArgumentError):
        ring.decrypt(b"\x07short", b"x")


def test_rotation_keeps_old_terms_readable() -> None:
    ring = Keyring.new()
    old = ring.encrypt(b"v1", b"k")
    rotated = ring.rotated()
    assert rotated.term == 2 and ring.term == 1  # rotation makes a new keyring
    new = rotated.encrypt(b"v2", b"k")
    assert rotated.term_of(new) == 2
    assert rotated.decrypt(old, b"k") == b"v1" and rotated.decrypt(new, b"k") == b"v2"
    with pytest.raises(SealedError, match="term 2"):
        ring.decrypt(new, b"k")


def test_rotation_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SECRETS_MAX_KEYRING_TERMS", 2)
    with pytest.raises(InvalidArgumentError, match="SECRETS_MAX_KEYRING_TERMS"):
        Keyring.new().rotated().rotated()


def test_sealed_keyring_round_trip_and_wrong_root_key() -> None:
    root = RootKey(os.urandom(ROOT_KEY_BYTES), "test")
    ring = Keyring.new().rotated()
    stored = ring.seal(root)
    assert ring.keys[1] not in stored and ring.keys[2] not in stored
    assert Keyring.unseal(stored, root).keys == ring.keys
    with pytest.raises(SealedError, match="cannot be opened with this node's root key"):
        Keyring.unseal(stored, RootKey(os.urandom(ROOT_KEY_BYTES), "other"))


def test_root_key_formats(tmp_path: Path) -> None:
    key = os.urandom(ROOT_KEY_BYTES)
    assert parse_root_key(key, "raw") == key
    assert parse_root_key(key.hex() + "\n", "hex") == key
    assert parse_root_key(base64.b64encode(key).decode(), "b64") == key
    with pytest.raises(InvalidArgumentError, match="32 random bytes"):
        parse_root_key("too-short", "x")
    path = tmp_path / "root.key"
    path.write_text(base64.b64encode(key).decode() + "\n")
    assert read_root_key_file(path) == RootKey(key, f"file {path}")
    with pytest.raises(InvalidArgumentError, match="cannot read root key file"):
        read_root_key_file(tmp_path / "missing")


def test_dev_root_key_depends_only_on_the_token_secret() -> None:
    a = dev_root_key("aspen1.Q0FDQUNBQ0FDQUNBQ0FDQUNBQ0FDQUNBQ0FDQUNBQ0E.s3cret-s3cret-s3cret")
    b = dev_root_key("aspen1.RERERERERERERERERERERERERERERERERERERERERER.s3cret-s3cret-s3cret")
    assert a.key == b.key and a.is_dev and len(a.key) == ROOT_KEY_BYTES
    assert dev_root_key("aspen_other").key != a.key


def _status(node: Any) -> dict[str, Any]:
    with node.client() as c:
        return c.call("secrets.status")


def test_wrong_root_key_seals_the_plugin_and_the_node_runs_on(
    secrets_node_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "node"
    node = secrets_node_factory(data_dir)  # first start: dev root key creates the keyring
    try:
        assert _status(node)["dev_root_key"] is True
        url = f"http://{node.http_address}"
        headers = {"X-Vault-Token": node.token}
        assert httpx.post(
            f"{url}/v1/secret/data/app", json={"data": {"k": "v"}}, headers=headers
        ).is_success
    finally:
        node.stop()

    key_file = tmp_path / "root.key"
    key_file.write_bytes(os.urandom(ROOT_KEY_BYTES))
    monkeypatch.setenv("ASPEN_SECRETS_ROOT_KEY_FILE", str(key_file))
    node = secrets_node_factory(data_dir, ready=False)
    try:
        status = _status(node)
        assert status["state"] == "sealed" and status["sealed"] is True
        assert "cannot be opened with this node's root key" in status["reason"]
        assert status["root_key_source"] == f"file {key_file}"
        url = f"http://{node.http_address}"
        headers = {"X-Vault-Token": node.token}
        health = httpx.get(f"{url}/v1/sys/health")
        assert health.status_code == 503 and health.json()["sealed"] is True
        resp = httpx.get(f"{url}/v1/secret/data/app", headers=headers)
        assert resp.status_code == 503 and "sealed" in resp.json()["errors"][0]
        seal = httpx.get(f"{url}/v1/sys/seal-status", headers=headers)
        assert seal.status_code == 200 and seal.json()["sealed"] is True
        with node.client() as c:  # the node itself still serves
            c.kv.put(b"plain", b"works")
            assert c.kv.get(b"plain").value == b"works"
    finally:
        node.stop()
