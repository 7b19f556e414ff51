"""The PKI engine over the Vault HTTP API of a real node, driven by ``hvac``: a root on
``pki/``, an intermediate on ``pki_int/``, a role, issued and signed leaves, revocation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from aspen.testing import CliInvoker


def certs(text: str) -> list[x509.Certificate]:
    """The certificates of a PEM text."""
    return x509.load_pem_x509_certificates(text.encode())


def test_hvac_pki_root_intermediate_issue_sign_revoke(vault: Any, vault_url: str) -> None:
    pki = vault.secrets.pki
    # pki/ is mounted by default (its maximum TTL is 768h); pki_int/ gets a longer one.
    vault.sys.enable_secrets_engine("pki", path="pki_int", config={"max_lease_ttl": "8760h"})
    answer = pki.generate_root(
        "internal", "Aspen Root", extra_params={"key_type": "ec", "ttl": "8760h"}, mount_point="pki"
    )
    assert any("maximum TTL" in w for w in answer["warnings"])
    root_cert = certs(answer["data"]["certificate"])[0]
    assert root_cert.not_valid_after_utc - root_cert.not_valid_before_utc < timedelta(hours=769)
    assert certs(pki.read_ca_certificate(mount_point="pki")) == [root_cert]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="already has a CA"):
        pki.generate_root("internal", "Another", mount_point="pki")

    csr = pki.generate_intermediate(
        "internal", "Aspen Int", extra_params={"key_type": "ec"}, mount_point="pki_int"
    )["data"]["csr"]
    signed = pki.sign_intermediate(
        csr, "Aspen Int", extra_params={"ttl": "4380h", "format": "pem_bundle"}, mount_point="pki"
    )["data"]
    assert len(certs(signed["certificate"])) == 2  # the intermediate, then the root
    pki.set_signed_intermediate(signed["certificate"], mount_point="pki_int")
    int_cert = certs(pki.read_ca_certificate(mount_point="pki_int"))[0]
    int_cert.verify_directly_issued_by(root_cert)
    assert certs(pki.read_ca_certificate_chain(mount_point="pki_int")) == [int_cert, root_cert]

    pki.create_or_update_role(
        "web",
        extra_params={
            "allowed_domains": ["example.com"],
            "allow_subdomains": True,
            "key_type": "ec",
            "max_ttl": "24h",
        },
        mount_point="pki_int",
    )
    assert pki.read_role("web", mount_point="pki_int")["data"]["allowed_domains"] == ["example.com"]
    issued = pki.generate_certificate(
        "web",
        "www.example.com",
        extra_params={"alt_names": "api.example.com", "ttl": "1h"},
        mount_point="pki_int",
    )["data"]
    leaf = certs(issued["certificate"])[0]
    leaf.verify_directly_issued_by(int_cert)
    assert [certs(c)[0] for c in issued["ca_chain"]] == [int_cert, root_cert]
    key = serialization.load_pem_private_key(issued["private_key"].encode(), None)
    assert key.public_key() == leaf.public_key()
    names = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["api.example.com", "www.example.com"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match=r"evil\.org not allowed"):
        pki.generate_certificate("web", "evil.org", mount_point="pki_int")

    csr_key = ec.generate_private_key(ec.SECP256R1())
    own_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.com")]))
        .sign(csr_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    signed_leaf = pki.sign_certificate("web", own_csr, "svc.example.com", mount_point="pki_int")
    signed_cert = certs(signed_leaf["data"]["certificate"])[0]
    assert signed_cert.public_key() == csr_key.public_key()
    signed_cert.verify_directly_issued_by(int_cert)

    revoked = pki.revoke_certificate(issued["serial_number"], mount_point="pki_int")["data"]
    assert revoked["revocation_time"] > 0
    crl = x509.load_pem_x509_crl(pki.read_crl(mount_point="pki_int").encode())
    assert crl.is_signature_valid(int_cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(signed_cert.serial_number) is None
    raw = httpx.get(f"{vault_url}/v1/pki_int/crl", headers={"X-Vault-Token": vault.token})
    assert raw.headers["content-type"] == "application/pkix-crl"
    assert x509.load_der_x509_crl(raw.content) == crl
    listed = pki.list_certificates(mount_point="pki_int")["data"]["keys"]
    assert issued["serial_number"] in listed
    cert_info = pki.read_certificate(issued["serial_number"], mount_point="pki_int")["data"]
    assert cert_info["revocation_time"] == revoked["revocation_time"]


def test_pki_cli(secrets_cli: CliInvoker) -> None:
    root = secrets_cli("secrets", "pki", "root", "CLI Root", "--key-type", "ec")
    assert root.exit_code == 0, root.output
    role = secrets_cli(
        "secrets", "pki", "role", "web", "allowed_domains=example.com", "allow_subdomains=true"
    )
    assert role.exit_code == 0, role.output
    issued = secrets_cli("--json", "secrets", "pki", "issue", "web", "a.example.com", "--ttl", "1h")
    assert issued.exit_code == 0, issued.output
    data = json.loads(issued.output)
    ca = secrets_cli("secrets", "pki", "ca")
    assert ca.exit_code == 0, ca.output
    certs(data["certificate"])[0].verify_directly_issued_by(certs(ca.output)[0])
    refused = secrets_cli("secrets", "pki", "issue", "web", "evil.org")
    assert refused.exit_code != 0 and "evil.org" in refused.output
    revoked = secrets_cli("secrets", "pki", "revoke", data["serial_number"])
    assert revoked.exit_code == 0, revoked.output
    crl = x509.load_pem_x509_crl(secrets_cli("secrets", "pki", "crl").output.encode())
    serial = int(data["serial_number"].replace(":", ""), 16)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
