"""The PKI engine, driven through ``engine.handle(Request(...))`` on two MemoryStore-backed
mounts: ``pki/`` (the root CA) and ``pki_int/`` (an intermediate signed by it).
Certificates, chains and CRLs are checked with ``cryptography``."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from aspen.errors import InvalidArgumentError, NotFoundError
from aspen.testing import wait_for
from aspen_secrets.engines import engine_class
from aspen_secrets.engines.base import Mount
from aspen_secrets.engines.pki import PkiEngine
from aspen_secrets.engines.pki.names import NamePolicy, check_names
from aspen_secrets.logical import Operation, Request, Response, UnsupportedOperationError
from aspen_secrets.store import MemoryStore

pytestmark = pytest.mark.anyio

R, W, L, D = Operation.READ, Operation.WRITE, Operation.LIST, Operation.DELETE


class YieldingStore(MemoryStore):
    """A MemoryStore whose reads give the event loop a turn, as the cluster's do, so that
    concurrent requests interleave between their reads and their commit."""

    async def get(self, path: str) -> Any:
        await asyncio.sleep(0)
        return await super().get(path)

    async def scan(self, prefix: str, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().scan(prefix, **kwargs)


def new_engine(path: str) -> PkiEngine:
    """A PKI engine on a fresh in-memory store, mounted at ``path``."""
    return PkiEngine(YieldingStore(), Mount(path, "pki", f"uuid-{path.strip('/')}"))


async def call(engine: PkiEngine, op: Operation, path: str, **data: Any) -> Response:
    """One request to ``engine``."""
    return await engine.handle(Request(op, path, data))


async def fails(engine: PkiEngine, op: Operation, path: str, **data: Any) -> str:
    """The message of the ``invalid_argument`` the request must fail with (state checked
    unchanged by the callers)."""
    with pytest.raises(InvalidArgumentError) as info:
        await call(engine, op, path, **data)
    return str(info.value)


def pem_certs(text: str) -> list[x509.Certificate]:
    """All certificates in a PEM text."""
    return x509.load_pem_x509_certificates(text.encode())


def ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    """The value of a certificate extension."""
    return cert.extensions.get_extension_for_oid(oid).value


async def root_ca(engine: PkiEngine, **extra: Any) -> dict[str, Any]:
    """Generate the root CA of ``engine`` (EC, fast) and return the answer."""
    data = {"common_name": "Aspen Root CA", "ttl": "87600h", "key_type": "ec", **extra}
    return (await call(engine, W, "root/generate/internal", **data)).data or {}


@pytest.fixture
def root() -> PkiEngine:
    """A mount with no CA yet (it becomes the root)."""
    return new_engine("pki/")


@pytest.fixture
async def pair(root: PkiEngine) -> tuple[PkiEngine, PkiEngine]:
    """(root mount, intermediate mount): root CA → intermediate CSR → signed → set."""
    await root_ca(root)
    inter = new_engine("pki_int/")
    csr = (
        await call(
            inter, W, "intermediate/generate/internal", common_name="Aspen Int CA", key_type="ec"
        )
    ).data["csr"]
    signed = (
        await call(
            root, W, "root/sign-intermediate", csr=csr, common_name="Aspen Int CA", ttl="43800h"
        )
    ).data
    chain = signed["certificate"] + "\n" + signed["issuing_ca"]
    await call(inter, W, "intermediate/set-signed", certificate=chain)
    await call(
        inter,
        W,
        "roles/web",
        allowed_domains="example.com",
        allow_subdomains=True,
        key_type="ec",
        max_ttl="72h",
    )
    return root, inter


async def test_engine_is_registered() -> None:
    assert engine_class("pki") is PkiEngine


async def test_root_generate_answer_and_fetch_endpoints(root: PkiEngine) -> None:
    answer = await root_ca(root, key_type="rsa", organization="Aspen", country="FR")
    cert = pem_certs(answer["certificate"])[0]
    assert "private_key" not in answer
    assert answer["issuing_ca"] == answer["certificate"]
    assert answer["serial_number"] == ":".join(
        f"{b:02x}" for b in cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8)
    )
    assert answer["expiration"] == int(cert.not_valid_after_utc.timestamp())
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Aspen"
    constraints = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert constraints.ca and constraints.path_length is None
    assert ext(cert, ExtensionOID.KEY_USAGE).key_cert_sign
    cert.verify_directly_issued_by(cert)
    # The root's TTL is capped by the mount's maximum (768h by default), with a warning.
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < timedelta(hours=769)
    ca_pem = await call(root, R, "ca/pem")
    assert ca_pem.raw is not None and pem_certs(ca_pem.raw.decode()) == [cert]
    ca_der = await call(root, R, "ca")
    assert ca_der.content_type == "application/pkix-cert"
    assert x509.load_der_x509_certificate(ca_der.raw or b"") == cert
    assert (await call(root, R, "cert/ca")).data["certificate"].strip() == answer["certificate"]
    assert answer["serial_number"] in (await call(root, L, "certs")).data["keys"]
    # An empty CRL exists from the start.
    crl = x509.load_der_x509_crl((await call(root, R, "crl")).raw or b"")
    assert len(crl) == 0 and crl.is_signature_valid(cert.public_key())


async def test_root_exported_returns_key_once(root: PkiEngine) -> None:
    answer = (
        await call(root, W, "root/generate/exported", common_name="Root", key_type="ed25519")
    ).data
    assert answer["private_key_type"] == "ed25519"
    key = serialization.load_pem_private_key(answer["private_key"].encode(), None)
    cert = pem_certs(answer["certificate"])[0]
    assert key.public_key() == cert.public_key()


async def test_second_root_is_refused_until_deleted(root: PkiEngine) -> None:
    first = await root_ca(root)
    message = await fails(root, W, "root/generate/internal", common_name="Other")
    assert "already has a CA" in message
    assert (await call(root, R, "ca/pem")).raw.decode().strip() == first["certificate"]
    await call(root, D, "root")
    with pytest.raises(NotFoundError):
        await call(root, R, "ca/pem")
    second = await root_ca(root, common_name="Second Root")
    assert second["serial_number"] != first["serial_number"]


async def test_full_chain_issue_verifies_to_root(pair: tuple[PkiEngine, PkiEngine]) -> None:
    root, inter = pair
    root_cert = pem_certs((await call(root, R, "ca/pem")).raw.decode())[0]
    int_cert = pem_certs((await call(inter, R, "ca/pem")).raw.decode())[0]
    answer = (
        await call(
            inter,
            W,
            "issue/web",
            common_name="www.example.com",
            alt_names="api.example.com",
            ip_sans="10.0.0.1",
            ttl="1h",
        )
    ).data
    leaf = pem_certs(answer["certificate"])[0]
    # Signatures: leaf ← intermediate ← root (self-signed).
    leaf.verify_directly_issued_by(int_cert)
    int_cert.verify_directly_issued_by(root_cert)
    root_cert.verify_directly_issued_by(root_cert)
    assert ext(int_cert, ExtensionOID.BASIC_CONSTRAINTS).ca
    # The chain answer includes the root; issuing_ca is the intermediate.
    assert pem_certs(answer["issuing_ca"]) == [int_cert]
    assert [pem_certs(c)[0] for c in answer["ca_chain"]] == [int_cert, root_cert]
    chain_raw = (await call(inter, R, "ca_chain")).raw.decode()
    assert pem_certs(chain_raw) == [int_cert, root_cert]
    # Validity.
    now = datetime.now(UTC)
    assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - now <= timedelta(hours=1, seconds=5)
    # Names, usage.
    sans = ext(leaf, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["api.example.com", "www.example.com"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.com"
    usage = ext(leaf, ExtensionOID.KEY_USAGE)
    assert usage.digital_signature and usage.key_agreement and not usage.key_cert_sign
    eku = ext(leaf, ExtensionOID.EXTENDED_KEY_USAGE)
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = ext(leaf, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    assert aki.key_identifier == ext(int_cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER).digest
    # The private key matches and is never stored.
    assert answer["private_key_type"] == "ec"
    key = serialization.load_pem_private_key(answer["private_key"].encode(), None)
    assert key.public_key() == leaf.public_key()
    stored = msgpack.packb(inter.store._data)  # type: ignore[attr-defined]
    der_key = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert answer["private_key"].encode() not in stored and der_key not in stored
    # The certificate is stored under its serial.
    read = (await call(inter, R, f"cert/{answer['serial_number']}")).data
    assert pem_certs(read["certificate"]) == [leaf] and read["revocation_time"] == 0


async def test_intermediate_path_length_and_chain_checks(root: PkiEngine) -> None:
    await root_ca(root, max_path_length=1)
    inter = new_engine("pki_int/")
    csr = (
        await call(inter, W, "intermediate/generate/exported", common_name="Int", key_type="ec")
    ).data
    assert csr["private_key_type"] == "ec" and "BEGIN EC PRIVATE KEY" in csr["private_key"]
    signed = (await call(root, W, "root/sign-intermediate", csr=csr["csr"], common_name="Int")).data
    cert = pem_certs(signed["certificate"])[0]
    assert ext(cert, ExtensionOID.BASIC_CONSTRAINTS).path_length == 0
    # A certificate for another key is refused, clearly, and nothing changes.
    other = new_engine("other/")
    other_csr = (
        await call(other, W, "intermediate/generate/internal", common_name="X", key_type="ec")
    ).data["csr"]
    wrong = (await call(root, W, "root/sign-intermediate", csr=other_csr, common_name="X")).data
    message = await fails(inter, W, "intermediate/set-signed", certificate=wrong["certificate"])
    assert "does not match the pending intermediate key" in message
    with pytest.raises(NotFoundError):
        await call(inter, R, "ca/pem")
    # A chain whose second certificate did not sign the first is refused.
    bad_chain = signed["certificate"] + "\n" + wrong["certificate"]
    assert "not issued by" in await fails(
        inter, W, "intermediate/set-signed", certificate=bad_chain
    )
    await call(inter, W, "intermediate/set-signed", certificate=signed["certificate"])
    # The intermediate (path length 0) cannot sign another CA.
    assert "max path length of 0" in await fails(
        inter, W, "root/sign-intermediate", csr=other_csr, common_name="X"
    )
    # set-signed again: there is no pending key any more (and a CA exists).
    assert "already has a CA" in await fails(
        inter, W, "intermediate/set-signed", certificate=signed["certificate"]
    )


def make_csr(cn: str, *dns: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A PEM CSR (EC key) for ``cn`` with DNS SANs ``dns``."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


async def test_sign_csr(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    csr, key = make_csr("svc.example.com", "svc.example.com", "alt.example.com")
    answer = (await call(inter, W, "sign/web", csr=csr, common_name="ignored.example.com")).data
    assert "private_key" not in answer
    cert = pem_certs(answer["certificate"])[0]
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "svc.example.com"
    sans = ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).get_values_for_type(x509.DNSName)
    assert sorted(sans) == ["alt.example.com", "svc.example.com"]
    cert.verify_directly_issued_by(pem_certs(answer["issuing_ca"])[0])
    # A CSR naming a disallowed domain is refused, naming it.
    bad_csr, _ = make_csr("ok.example.com", "evil.org")
    message = await fails(inter, W, "sign/web", csr=bad_csr)
    assert "evil.org" in message and "not allowed" in message
    # Wrong key type for the role (role wants ec; RSA CSR).
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com")]))
        .sign(rsa_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    assert "type 'ec'" in await fails(inter, W, "sign/web", csr=rsa_csr)


@pytest.mark.parametrize(
    ("policy", "name", "allowed"),
    [
        (NamePolicy(("example.com",), allow_subdomains=True), "a.b.example.com", True),
        (NamePolicy(("example.com",), allow_subdomains=True), "example.com", False),
        (NamePolicy(("example.com",), allow_bare_domains=True), "example.com", True),
        (NamePolicy(("example.com",), allow_bare_domains=True), "www.example.com", False),
        (NamePolicy(("example.com",), allow_subdomains=True), "badexample.com", False),
        (NamePolicy(("example.com",), allow_subdomains=True), "*.example.com", True),
        (
            NamePolicy(("example.com",), allow_subdomains=True, allow_wildcard_certificates=False),
            "*.example.com",
            False,
        ),
        (NamePolicy(("*.example.com",), allow_glob_domains=True), "x.y.example.com", True),
        (NamePolicy(("web-*.example.com",), allow_glob_domains=True), "web-1.example.com", True),
        (NamePolicy(("web-*.example.com",), allow_glob_domains=True), "db-1.example.com", False),
        (NamePolicy(("*.example.com",)), "x.example.com", False),  # glob not enabled
        (NamePolicy(()), "localhost", True),
        (NamePolicy((), allow_localhost=False), "localhost", False),
        (NamePolicy((), allow_any_name=True), "anything.org", True),
        (NamePolicy((), allow_any_name=True), "not a hostname", False),
        (NamePolicy((), allow_any_name=True, enforce_hostnames=False), "not a hostname", True),
        (NamePolicy(("example.com",), allow_bare_domains=True), "me@example.com", True),
        (NamePolicy(("example.com",), allow_subdomains=True), "*@example.com", False),
        (NamePolicy(("example.com",), allow_subdomains=True), "a.*.example.com", False),
        (NamePolicy(("example.com",)), "evil.org", False),
    ],
)
def test_role_name_policy(policy: NamePolicy, name: str, allowed: bool) -> None:
    if allowed:
        check_names([name], policy)
    else:
        with pytest.raises(InvalidArgumentError, match="not allowed by this role"):
            check_names([name], policy)


async def test_issue_checks_every_name_against_the_role(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    cases = {
        "evil.org": {"common_name": "evil.org"},
        "bad.net": {"common_name": "a.example.com", "alt_names": "b.example.com,bad.net"},
        "example.com": {"common_name": "example.com"},  # bare domain not allowed
    }
    for name, data in cases.items():
        message = await fails(inter, W, "issue/web", **data)
        assert name in message and "not allowed by this role" in message
    await call(
        inter,
        W,
        "roles/noip",
        allowed_domains="example.com",
        allow_bare_domains=True,
        allow_ip_sans=False,
        key_type="ec",
    )
    assert "IP subject alternative names" in await fails(
        inter, W, "issue/noip", common_name="example.com", ip_sans="127.0.0.1"
    )
    # Wildcards under the role's subdomain rule are fine.
    wildcard = (await call(inter, W, "issue/web", common_name="*.example.com")).data
    cert = pem_certs(wildcard["certificate"])[0]
    names = ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).get_values_for_type(x509.DNSName)
    assert names == ["*.example.com"]


async def test_ttl_is_capped_by_role_and_ca(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    response = await call(inter, W, "issue/web", common_name="a.example.com", ttl="100h")
    cert = pem_certs(response.data["certificate"])[0]
    assert cert.not_valid_after_utc - datetime.now(UTC) <= timedelta(hours=72, seconds=5)
    assert any("maximum TTL" in w for w in response.warnings)
    await call(inter, W, "roles/long", allow_any_name=True, key_type="ec", max_ttl="87600h")
    response = await call(inter, W, "issue/long", common_name="a.example.com", ttl="80000h")
    cert = pem_certs(response.data["certificate"])[0]
    int_cert = pem_certs((await call(inter, R, "ca/pem")).raw.decode())[0]
    assert cert.not_valid_after_utc == int_cert.not_valid_after_utc
    assert any("CA certificate" in w for w in response.warnings)


async def test_formats(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    der = (await call(inter, W, "issue/web", common_name="a.example.com", format="der")).data
    cert = x509.load_der_x509_certificate(base64.b64decode(der["certificate"]))
    key = serialization.load_der_private_key(base64.b64decode(der["private_key"]), None)
    assert key.public_key() == cert.public_key()
    assert len(der["ca_chain"]) == 2
    bundle = (
        await call(
            inter,
            W,
            "issue/web",
            common_name="b.example.com",
            format="pem_bundle",
            private_key_format="pkcs8",
        )
    ).data
    text = bundle["certificate"]
    assert text.startswith("-----BEGIN PRIVATE KEY-----")
    assert len(pem_certs(text)) == 3  # leaf, intermediate, root


async def test_roles_crud(root: PkiEngine) -> None:
    with pytest.raises(NotFoundError):
        await call(root, L, "roles")
    written = (await call(root, W, "roles/a", allowed_domains=["x.com", "y.com"], ttl="1h")).data
    assert written["allowed_domains"] == ["x.com", "y.com"] and written["ttl"] == 3600
    read = (await call(root, R, "roles/a")).data
    assert read == written
    assert read["allow_wildcard_certificates"] is True and read["key_type"] == "rsa"
    assert read["key_bits"] == 2048 and read["server_flag"] and read["allow_localhost"]
    patched = (await call(root, Operation.PATCH, "roles/a", allow_subdomains=True)).data
    assert patched["allow_subdomains"] and patched["allowed_domains"] == ["x.com", "y.com"]
    await call(root, W, "roles/b", key_type="any")
    assert (await call(root, L, "roles")).data == {"keys": ["a", "b"]}
    await call(root, D, "roles/a")
    with pytest.raises(NotFoundError):
        await call(root, R, "roles/a")
    for bad in (
        {"key_type": "dsa"},
        {"key_type": "rsa", "key_bits": 1024},
        {"key_type": "ec", "key_bits": 255},
        {"ttl": "2h", "max_ttl": "1h"},
        {"ttl": "soon"},
        {"key_usage": "Teleport"},
        {"allow_subdomains": "maybe"},
        {"country": "France"},
    ):
        await fails(root, W, "roles/bad", **bad)
    await fails(root, W, "roles/bad name!")
    with pytest.raises(NotFoundError):
        await call(root, R, "roles/bad")


async def test_revoke_lists_serial_in_crl(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    int_cert = pem_certs((await call(inter, R, "ca/pem")).raw.decode())[0]
    kept = (await call(inter, W, "issue/web", common_name="keep.example.com")).data
    gone = (await call(inter, W, "issue/web", common_name="gone.example.com")).data
    serial = gone["serial_number"]
    answer = (await call(inter, W, "revoke", serial_number=serial)).data
    assert answer["revocation_time"] > 0 and answer["revocation_time_rfc3339"].endswith("Z")
    # Revoking again answers the same time.
    again = (await call(inter, W, "revoke", serial_number=serial.replace(":", "-").upper())).data
    assert again["revocation_time"] == answer["revocation_time"]
    der = await call(inter, R, "crl")
    assert der.content_type == "application/pkix-crl"
    pem = (await call(inter, R, "crl/pem")).raw.decode()
    json_pem = (await call(inter, R, "cert/crl")).data["certificate"]
    gone_cert = pem_certs(gone["certificate"])[0]
    kept_cert = pem_certs(kept["certificate"])[0]
    for crl in (
        x509.load_der_x509_crl(der.raw or b""),
        x509.load_pem_x509_crl(pem.encode()),
        x509.load_pem_x509_crl(json_pem.encode()),
    ):
        assert crl.is_signature_valid(int_cert.public_key())
        assert crl.issuer == int_cert.subject
        assert crl.get_revoked_certificate_by_serial_number(gone_cert.serial_number) is not None
        assert crl.get_revoked_certificate_by_serial_number(kept_cert.serial_number) is None
    read = (await call(inter, R, f"cert/{serial}")).data
    assert read["revocation_time"] == answer["revocation_time"]
    assert (await call(inter, L, "certs/revoked")).data == {"keys": [serial]}
    # Unknown serial, the CA itself, a malformed serial, both/neither fields: 400s.
    assert "not found" in await fails(inter, W, "revoke", serial_number="01:02:03")
    ca_serial = (await call(inter, R, "cert/ca")).data["certificate"]
    assert "CA's own" in await fails(inter, W, "revoke", certificate=ca_serial)
    await fails(inter, W, "revoke", serial_number="zz:top")
    await fails(inter, W, "revoke")


async def test_tidy_removes_expired_certs_and_revocations(
    pair: tuple[PkiEngine, PkiEngine],
) -> None:
    _, inter = pair
    await call(inter, W, "roles/short", allow_any_name=True, key_type="ec", not_before_duration=0)
    short = (await call(inter, W, "issue/short", common_name="short.example.com", ttl="2s")).data
    revoked = (await call(inter, W, "issue/short", common_name="rev.example.com", ttl="2s")).data
    long = (await call(inter, W, "issue/web", common_name="long.example.com", ttl="1h")).data
    await call(inter, W, "revoke", serial_number=revoked["serial_number"])
    # Nothing has expired yet: tidy keeps everything.
    kept = (await call(inter, W, "tidy", tidy_cert_store=True, safety_buffer=0)).data
    assert kept["cert_store_deleted_count"] == 0
    deadline = max(short["expiration"], revoked["expiration"]) + 1
    wait_for(lambda: time.time() > deadline, timeout=10, message="the short certificates expire")
    response = await call(
        inter, W, "tidy", tidy_cert_store=True, tidy_revoked_certs=True, safety_buffer="0s"
    )
    assert response.status == 202
    assert response.data["revoked_cert_deleted_count"] == 1
    serials = (await call(inter, L, "certs")).data["keys"]
    assert long["serial_number"] in serials
    assert short["serial_number"] not in serials and revoked["serial_number"] not in serials
    with pytest.raises(NotFoundError):
        await call(inter, L, "certs/revoked")
    crl = x509.load_der_x509_crl((await call(inter, R, "crl")).raw or b"")
    assert len(crl) == 0
    assert "at least one" in await fails(inter, W, "tidy")


async def test_bad_inputs_leave_no_state(root: PkiEngine) -> None:
    # No CA yet.
    await call(root, W, "roles/r", allow_any_name=True)
    assert "no CA" in await fails(root, W, "issue/r", common_name="a.com")
    with pytest.raises(NotFoundError):
        await call(root, R, "crl")
    assert "not PEM" in await fails(root, W, "intermediate/set-signed", certificate="x")
    # Bad CA requests.
    await fails(root, W, "root/generate/kms", common_name="x")
    await fails(root, W, "root/generate/internal")  # no common_name
    await fails(root, W, "root/generate/internal", common_name="x", key_type="dsa")
    await fails(root, W, "root/generate/internal", common_name="x", ttl="forever")
    await fails(root, W, "root/generate/internal", common_name="x", country="France")
    await fails(root, W, "root/generate/internal", common_name="x" * 65)
    await fails(root, W, "root/generate/internal", common_name="x", ip_sans="300.1.1.1")
    await fails(root, W, "root/generate/internal", common_name="x", format="xml")
    with pytest.raises(NotFoundError):
        await call(root, R, "ca/pem")
    assert (await call(root, L, "roles")).data == {"keys": ["r"]}
    ca_pem = (await root_ca(root))["certificate"]
    fresh = new_engine("fresh/")
    assert "no pending" in await fails(fresh, W, "intermediate/set-signed", certificate=ca_pem)
    # Bad issue/sign requests.
    assert "unknown role" in await fails(root, W, "issue/nope", common_name="a.com")
    await fails(root, W, "issue/r")  # CN required by the role
    assert "only for signing" not in await fails(root, W, "issue/r", common_name="a b")
    await call(root, W, "roles/any", allow_any_name=True, key_type="any")
    assert "only for signing" in await fails(root, W, "issue/any", common_name="a.com")
    await fails(root, W, "sign/r", csr="not a csr")
    await fails(
        root,
        W,
        "sign/r",
        csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    await fails(root, W, "sign/r")
    await fails(root, W, "issue/r", common_name="a.com", ttl="-5")
    await fails(root, W, "root/sign-intermediate", csr="garbage", common_name="x")
    await fails(
        root,
        W,
        "intermediate/set-signed",
        certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    with pytest.raises(NotFoundError):
        await call(root, R, "cert/01:02")
    await fails(root, R, "cert/not-hex")
    with pytest.raises(UnsupportedOperationError):
        await call(root, R, "issue/r")


async def test_config_urls_go_into_certificates(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    await call(
        inter,
        W,
        "config/urls",
        issuing_certificates="http://ca.example.com/v1/pki_int/ca",
        crl_distribution_points=["http://ca.example.com/v1/pki_int/crl"],
    )
    urls = (await call(inter, R, "config/urls")).data
    assert urls["crl_distribution_points"] == ["http://ca.example.com/v1/pki_int/crl"]
    cert = pem_certs(
        (await call(inter, W, "issue/web", common_name="a.example.com")).data["certificate"]
    )[0]
    points = ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    assert points[0].full_name[0].value == "http://ca.example.com/v1/pki_int/crl"
    access = ext(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    assert access[0].access_location.value == "http://ca.example.com/v1/pki_int/ca"
    await fails(inter, W, "config/urls", ocsp_servers="not a url")


async def test_concurrent_writers_do_not_clash(pair: tuple[PkiEngine, PkiEngine]) -> None:
    _, inter = pair
    fresh = new_engine("race/")
    roots = await asyncio.gather(
        root_ca(fresh, common_name="A"), root_ca(fresh, common_name="B"), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in roots) == ["InvalidArgumentError", "dict"]
    issued = [
        (await call(inter, W, "issue/web", common_name=f"c{i}.example.com")).data for i in range(3)
    ]
    await asyncio.gather(
        *(call(inter, W, "revoke", serial_number=i["serial_number"]) for i in issued)
    )
    crl = x509.load_der_x509_crl((await call(inter, R, "crl")).raw or b"")
    assert len(crl) == 3
