"""Frame rules of the HTTP API beyond the basics: reads an engine serves without a token
(PKI's CA and CRL, ``sys/leader``, ``sys/seal-status``), warnings without data, mount
tuning (``sys/mounts/<path>/tune``) and ``sys/leader``'s address."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import hvac
import pytest
from cryptography import x509

from aspen.testing import wait_for
from aspen_secrets import limits

TEN_YEARS = "87600h"
TEN_YEARS_SECONDS = 87600 * 3600
EC = {"key_type": "ec", "key_bits": 256}


def _root(vault: hvac.Client, ttl: str) -> dict[str, Any]:
    return vault.secrets.pki.generate_root(
        "internal", "Tuned Root", extra_params={**EC, "ttl": ttl}
    )


def test_pki_ca_and_crl_are_served_without_a_token(vault: hvac.Client, vault_url: str) -> None:
    root = _root(vault, "24h")
    vault.secrets.pki.create_or_update_role("web", extra_params={"allow_any_name": True, **EC})
    with httpx.Client(base_url=vault_url) as anonymous:
        crl = anonymous.get("/v1/pki/crl")
        assert crl.status_code == 200
        assert crl.headers["content-type"] == "application/pkix-crl"
        assert x509.load_der_x509_crl(crl.content).issuer.rfc4514_string() == "CN=Tuned Root"
        for path in ("ca", "ca/pem", "ca_chain", "crl/pem"):
            assert anonymous.get(f"/v1/pki/{path}").status_code == 200, path
        cert_ca = anonymous.get("/v1/pki/cert/ca")
        assert cert_ca.status_code == 200
        assert cert_ca.json()["data"]["certificate"].strip() == root["data"]["certificate"].strip()
        # a wrong token does not spoil a public read (Vault does not check it there)
        wrong = anonymous.get("/v1/pki/ca/pem", headers={"X-Vault-Token": "aspen_wrong"})
        assert wrong.status_code == 200

        # everything else still needs the token: other paths, other operations, other mounts
        for method, path in [
            ("GET", "/v1/secret/data/app"),
            ("GET", "/v1/secret/metadata/app"),
            ("GET", "/v1/pki/roles/web"),
            ("GET", "/v1/pki/crl?list=true"),
            ("LIST", "/v1/pki/certs"),
            ("POST", "/v1/pki/crl"),
            ("DELETE", "/v1/pki/cert/ca"),
            ("POST", "/v1/pki/issue/web"),
            ("GET", "/v1/nomount/crl"),
        ]:
            resp = anonymous.request(method, path)
            assert resp.status_code == 403, (method, path, resp.text)
            assert resp.json() == {"errors": ["permission denied"]}


def test_warnings_without_data_are_a_200_envelope(vault: hvac.Client, vault_url: str) -> None:
    vault.secrets.kv.v2.configure(cas_required=True)
    answer = vault.secrets.kv.v2.update_metadata(path="app", cas_required=False)
    assert isinstance(answer, dict), answer  # hvac returns the body of a 200, not a 204
    assert answer["data"] is None
    assert answer["warnings"] and "cas_required" in answer["warnings"][0]
    # no warning: still 204 No Content
    plain = vault.secrets.kv.v2.update_metadata(path="app", max_versions=3)
    assert plain.status_code == 204 and plain.content == b""


def test_tune_mount_lifts_the_pki_max_ttl(vault: hvac.Client) -> None:
    system = limits.SECRETS_SYSTEM_LEASE_TTL_SECONDS
    tune = vault.sys.read_mount_configuration("pki")
    assert tune["data"]["max_lease_ttl"] == system and tune["max_lease_ttl"] == system
    assert tune["data"]["default_lease_ttl"] == system

    capped = _root(vault, TEN_YEARS)  # 768h cap by default, with Vault's warning
    assert any("maximum TTL" in w for w in capped["warnings"])
    vault.secrets.pki.delete_root()

    vault.sys.tune_mount_configuration(path="pki", max_lease_ttl=TEN_YEARS, description="CA")
    tune = vault.sys.read_mount_configuration("pki")["data"]
    assert tune["max_lease_ttl"] == TEN_YEARS_SECONDS and tune["description"] == "CA"
    assert tune["default_lease_ttl"] == system
    listed = vault.sys.list_mounted_secrets_engines()["data"]["pki/"]
    assert listed["config"]["max_lease_ttl"] == TEN_YEARS_SECONDS
    assert listed["description"] == "CA"

    root = _root(vault, TEN_YEARS)  # the engine sees the tuned mount at once
    assert not root.get("warnings")
    cert = x509.load_pem_x509_certificate(root["data"]["certificate"].encode())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime >= timedelta(seconds=TEN_YEARS_SECONDS)


def test_mount_config_ttls_are_kept_in_seconds(vault: hvac.Client) -> None:
    vault.sys.enable_secrets_engine("pki", path="longca", config={"max_lease_ttl": TEN_YEARS})
    assert vault.sys.read_mount_configuration("longca")["data"]["max_lease_ttl"] == (
        TEN_YEARS_SECONDS
    )
    root = vault.secrets.pki.generate_root(
        "internal", "Long", mount_point="longca", extra_params={**EC, "ttl": TEN_YEARS}
    )
    assert not root.get("warnings")


def test_tune_mount_refuses_bad_values(vault: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match="greater than max_lease_ttl"):
        vault.sys.tune_mount_configuration(
            path="secret", default_lease_ttl="2h", max_lease_ttl="1h"
        )
    with pytest.raises(
        hvac.exceptions.InvalidRequest, match=r"SECRETS_MAX_(MOUNT_TTL|DURATION)_SECONDS"
    ):
        vault.sys.tune_mount_configuration(path="secret", max_lease_ttl="1000000h")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="duration"):
        vault.sys.tune_mount_configuration(path="secret", max_lease_ttl="soon")
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.sys.tune_mount_configuration(path="nomount", max_lease_ttl="1h")
    assert vault.sys.read_mount_configuration("secret")["data"]["max_lease_ttl"] == (
        limits.SECRETS_SYSTEM_LEASE_TTL_SECONDS
    )  # nothing was half-applied
    # "system" puts a tuned value back to the default
    vault.sys.tune_mount_configuration(path="secret", max_lease_ttl="2h")
    vault.sys.tune_mount_configuration(path="secret", max_lease_ttl="system")
    config = vault.sys.list_mounted_secrets_engines()["data"]["secret/"]["config"]
    assert config["max_lease_ttl"] == 0


def test_leader_reports_its_http_address(vault: hvac.Client, vault_url: str) -> None:
    status = wait_for(
        lambda: (s := vault.sys.read_leader_status())["leader_address"] and s,
        timeout=10,
        message="the node publishes its HTTP address",
    )
    assert status["leader_address"] == vault_url
    assert status["is_self"] is True and status["ha_enabled"] is True


def test_leader_and_seal_status_need_no_token(vault_url: str) -> None:
    with httpx.Client(base_url=vault_url) as anonymous:
        assert anonymous.get("/v1/sys/leader").json()["data"]["is_self"] is True
        assert anonymous.get("/v1/sys/seal-status").json()["sealed"] is False
        assert anonymous.get("/v1/sys/mounts").status_code == 403
        assert anonymous.post("/v1/sys/rotate").status_code == 403
