"""The transit engine over the Vault HTTP API of a real node, driven by ``hvac``."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import hvac.exceptions
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aspen.testing import CliInvoker


def b64(raw: bytes) -> str:
    """Base64 text of ``raw``."""
    return base64.b64encode(raw).decode()


def test_hvac_encryption_lifecycle(vault: Any) -> None:
    transit = vault.secrets.transit
    transit.create_key("app", exportable=True)
    info = transit.read_key("app")["data"]
    assert info["type"] == "aes256-gcm96" and info["latest_version"] == 1 and info["exportable"]
    assert transit.list_keys()["data"]["keys"] == ["app"]

    old = transit.encrypt_data("app", plaintext=b64(b"hello"))["data"]["ciphertext"]
    assert old.startswith("vault:v1:")
    assert transit.decrypt_data("app", ciphertext=old)["data"]["plaintext"] == b64(b"hello")

    transit.rotate_key("app")
    assert transit.read_key("app")["data"]["latest_version"] == 2
    rewrapped = transit.rewrap_data("app", ciphertext=old)["data"]
    assert rewrapped["ciphertext"].startswith("vault:v2:") and rewrapped["key_version"] == 2
    transit.update_key_configuration("app", min_decryption_version=2, deletion_allowed=True)
    assert transit.read_key("app")["data"]["min_decryption_version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest, match="too old"):
        transit.decrypt_data("app", ciphertext=old)
    assert transit.decrypt_data("app", ciphertext=rewrapped["ciphertext"])["data"][
        "plaintext"
    ] == b64(b"hello")

    datakey = transit.generate_data_key("app", key_type="plaintext", bits=512)["data"]
    assert len(base64.b64decode(datakey["plaintext"])) == 64
    unwrapped = transit.decrypt_data("app", ciphertext=datakey["ciphertext"])["data"]
    assert unwrapped["plaintext"] == datakey["plaintext"]

    mac = transit.generate_hmac("app", hash_input=b64(b"m"), algorithm="sha2-512")["data"]
    assert mac["hmac"].startswith("vault:v2:")
    exported = transit.export_key("app", key_type="hmac-key", version="latest")["data"]
    assert set(exported["keys"]) == {"2"}

    blob = bytearray(base64.b64decode(rewrapped["ciphertext"].split(":")[2]))
    blob[-1] ^= 1
    with pytest.raises(hvac.exceptions.InvalidRequest, match="authentication failed"):
        transit.decrypt_data("app", ciphertext="vault:v2:" + b64(bytes(blob)))
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unknown key type"):
        vault.write("transit/keys/bad", type="des")
    transit.delete_key("app")
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit.read_key("app")


def test_hvac_signing(vault: Any) -> None:
    transit = vault.secrets.transit
    transit.create_key("signer", key_type="ecdsa-p256")
    data = b"document"
    signed = transit.sign_data("signer", hash_input=b64(data), hash_algorithm="sha2-384")["data"]
    verified = transit.verify_signed_data(
        "signer", hash_input=b64(data), signature=signed["signature"], hash_algorithm="sha2-384"
    )
    assert verified["data"]["valid"] is True
    wrong = transit.verify_signed_data(
        "signer", hash_input=b64(b"other"), signature=signed["signature"], hash_algorithm="sha2-384"
    )
    assert wrong["data"]["valid"] is False
    pem = transit.read_key("signer")["data"]["keys"]["1"]["public_key"]
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    raw = base64.b64decode(signed["signature"].split(":")[2])
    public.verify(raw, data, ec.ECDSA(hashes.SHA384()))

    transit.create_key("rsa", key_type="rsa-2048")
    signed = transit.sign_data("rsa", hash_input=b64(data), signature_algorithm="pkcs1v15")
    verified = transit.verify_signed_data(
        "rsa",
        hash_input=b64(data),
        signature=signed["data"]["signature"],
        signature_algorithm="pkcs1v15",
    )
    assert verified["data"]["valid"] is True
    random = transit.generate_random_bytes(n_bytes=16, output_format="hex")["data"]
    assert len(random["random_bytes"]) == 32
    digest = transit.hash_data(b64(b"x"), algorithm="sha2-256")["data"]["sum"]
    assert digest == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_batch_status_over_http(vault: Any, vault_url: str) -> None:
    headers = {"X-Vault-Token": vault.token}
    mixed = httpx.post(
        f"{vault_url}/v1/transit/encrypt/batch",
        json={"batch_input": [{"plaintext": b64(b"ok")}, {"plaintext": "!!"}]},
        headers=headers,
    )
    assert mixed.status_code == 200
    first, second = mixed.json()["data"]["batch_results"]
    assert first["ciphertext"].startswith("vault:v1:") and "base64" in second["error"]
    failed = httpx.post(
        f"{vault_url}/v1/transit/encrypt/batch",
        json={"batch_input": [{"plaintext": "!!"}]},
        headers=headers,
    )
    assert failed.status_code == 400
    assert "error" in failed.json()["data"]["batch_results"][0]


def test_transit_cli(secrets_cli: CliInvoker) -> None:
    created = secrets_cli("secrets", "transit", "create", "cli-key")
    assert created.exit_code == 0, created.output
    encrypted = secrets_cli("secrets", "transit", "encrypt", "cli-key", "hello cli")
    assert encrypted.exit_code == 0, encrypted.output
    ciphertext = encrypted.output.strip()
    assert ciphertext.startswith("vault:v1:")
    rotated = secrets_cli("secrets", "transit", "rotate", "cli-key")
    assert rotated.output.strip() == "2"
    decrypted = secrets_cli("secrets", "transit", "decrypt", "cli-key", ciphertext)
    assert decrypted.exit_code == 0 and decrypted.output.strip() == "hello cli"

    secrets_cli("secrets", "transit", "create", "cli-ed", "--type", "ed25519")
    signed = secrets_cli("secrets", "transit", "sign", "cli-ed", "msg")
    signature = signed.output.strip()
    assert signature.startswith("vault:v1:"), signed.output
    good = secrets_cli("secrets", "transit", "verify", "cli-ed", "msg", signature)
    assert good.exit_code == 0 and good.output.strip() == "true"
    bad = secrets_cli("secrets", "transit", "verify", "cli-ed", "other", signature)
    assert bad.exit_code == 1 and bad.output.strip() == "false"
