"""The cluster CA, node certificates, token formats, and TLS on client links (real sockets
on 127.0.0.1, real TLS 1.3, both RPC server drivers)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
import test_rpc_server as rpc
from cryptography import x509
from test_rpc_server import serving

import aspen
from aspen import errors
from aspen.auth.access import ROOT
from aspen.node.auth import token_service
from aspen.transport.identity import NodeIdentity, load_or_create_identity
from aspen.transport.join import init_cluster
from aspen.transport.tls import (
    CLUSTER_CA_CERT_FILE,
    CLUSTER_CA_KEY_FILE,
    NODE_CERT_FILE,
    ClusterCA,
    NodeCredentials,
    issue_node_cert,
    load_node_credentials,
    node_id_from_certificate,
    server_context,
)
from aspen.transport.tokens import (
    ClusterToken,
    new_cluster_token,
    parse_cluster_token,
    secrets_match,
    token_secret,
)

#: (event loop, RPC server driver): the rpc tests' cases plus uvloop, as nodes run.
CASES = [("uvloop", "asyncio"), *rpc.CASES]


@pytest.fixture(params=CASES, ids=[f"{b}-{d}" for b, d in CASES])
def backend_driver(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(event loop, server I/O driver) pairs."""
    return request.param


@pytest.fixture
def anyio_backend(backend_driver: tuple[str, str]) -> Any:
    """The event loop the test runs on."""
    if backend_driver[0] == "uvloop":
        return ("asyncio", {"use_uvloop": True})
    return backend_driver[0]


driver = rpc.driver


def mode(path: Path) -> int:
    """Permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------ CA and certs
def test_cluster_ca_is_created_stored_and_loaded(tmp_path: Path) -> None:
    ca = ClusterCA.create(tmp_path)
    assert mode(tmp_path / CLUSTER_CA_KEY_FILE) == 0o600
    assert (tmp_path / CLUSTER_CA_CERT_FILE).read_bytes() == ca.cert_pem
    loaded = ClusterCA.load(tmp_path)
    assert loaded.cluster_id == ca.cluster_id and len(ca.cluster_id) == 16
    assert loaded.public_raw == ca.public_raw and loaded.private_key is not None
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    with pytest.raises(FileExistsError):
        ClusterCA.create(tmp_path)
    (tmp_path / CLUSTER_CA_KEY_FILE).unlink()
    assert ClusterCA.load(tmp_path).private_key is None


def test_ca_refuses_a_key_of_another_ca() -> None:
    a, b = ClusterCA.generate(), ClusterCA.generate()
    with pytest.raises(ValueError, match="does not belong"):
        ClusterCA.from_pem(a.cert_pem, b.key_pem())
    assert a.cluster_id != b.cluster_id


def test_node_certificate_carries_the_node_id() -> None:
    ca, ident = ClusterCA.generate(), NodeIdentity.generate()
    cert = x509.load_pem_x509_certificate(
        issue_node_cert(ca, ident, ["127.0.0.1:7000", "db1.example:7000", "[::1]:7000"])
    )
    assert node_id_from_certificate(cert) == ident.node_id
    assert cert.issuer == ca.cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"aspen://{ca.cluster_id}/node/{ident.node_id}"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["db1.example"]
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days >= aspen.limits.NODE_CERT_VALIDITY_DAYS
    without_key = ClusterCA.from_pem(ca.cert_pem)
    with pytest.raises(ValueError, match="CA key"):
        issue_node_cert(without_key, ident)


def test_node_credentials_are_issued_once_and_reissued_for_a_new_key(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    assert load_node_credentials(tmp_path, ident) is None  # no cluster: plain single node
    ClusterCA.create(tmp_path)
    first = load_node_credentials(tmp_path, ident)
    assert first is not None and (tmp_path / NODE_CERT_FILE).read_bytes() == first.cert_pem
    again = load_node_credentials(tmp_path, ident)
    assert again is not None and again.cert_pem == first.cert_pem
    other = NodeIdentity.generate()
    reissued = load_node_credentials(tmp_path, other)
    assert reissued is not None and reissued.cert_pem != first.cert_pem
    (tmp_path / CLUSTER_CA_KEY_FILE).unlink()
    with pytest.raises(ValueError, match="no CA key"):
        load_node_credentials(tmp_path, ident)


def test_init_cluster_writes_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "root-token").write_text("aspen_legacy\n")
    init = init_cluster(tmp_path, ["127.0.0.1:7001"])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["cluster-ca.key", "cluster-ca.pem", "join-token", "node.key", "node.pem", "root-token"]
    )
    for private in ("cluster-ca.key", "join-token", "node.key", "root-token"):
        assert mode(tmp_path / private) == 0o600, private
    root = parse_cluster_token((tmp_path / "root-token").read_text())
    join = parse_cluster_token((tmp_path / "join-token").read_text())
    assert root is not None and root.kind == "client" and str(root) == init.root_token
    assert join is not None and join.kind == "join" and join.cluster_id == init.cluster_id
    with pytest.raises(ValueError, match="already belongs"):
        init_cluster(tmp_path)


# ------------------------------------------------------------------------------ tokens
def test_token_formats() -> None:
    ca = ClusterCA.generate()
    token = new_cluster_token("client", ca.public_raw)
    text = str(token)
    assert text.startswith("aspen1.") and text.count(".") == 2
    assert parse_cluster_token(text) == token
    assert token.cluster_id == ca.cluster_id
    join = new_cluster_token("join", ca.public_raw)
    assert str(join).startswith("aspen1j.")
    assert parse_cluster_token("aspen_abcdef") is None
    assert parse_cluster_token("") is None
    for bad in ("aspen1.x.y", "aspen1.AAAA.secretsecretsecret", "aspen1j.a.b.c"):
        with pytest.raises(ValueError):
            parse_cluster_token(bad)
    assert token_secret(text) == token.secret
    assert token_secret("aspen_legacy") == "aspen_legacy"
    assert secrets_match("a", "a") and not secrets_match("a", "b")
    assert "secret=..." in repr(token) and token.secret not in repr(token)


def test_the_token_service_compares_the_secret_of_cluster_tokens() -> None:
    ca = ClusterCA.generate()
    creds = NodeCredentials.issue(ca, NodeIdentity.generate(), ["127.0.0.1:0"])
    root = new_cluster_token("client", ca.public_raw)
    auth = token_service(creds, str(root), creds.node_id).authenticate
    assert auth(str(root)) is ROOT
    other = ClusterToken("client", ca.public_raw, "x" * 43)
    assert auth(str(other)) is None
    assert auth(str(ClusterToken("join", ca.public_raw, root.secret))) is ROOT
    assert auth(None) is None and auth("") is None
    legacy = token_service(creds, "aspen_abc", creds.node_id).authenticate
    assert legacy("aspen_abc") is ROOT and legacy("aspen_abd") is None


# ------------------------------------------------------------------------------ client TLS
def cluster_credentials() -> tuple[NodeCredentials, str]:
    """A node's credentials and the matching client token (the server's secret is
    ``test_rpc_server.TOKEN``)."""
    ca = ClusterCA.generate()
    creds = NodeCredentials.issue(ca, NodeIdentity.generate(), ["127.0.0.1:0"])
    return creds, str(ClusterToken("client", ca.public_raw, "s3cret" * 4))


def tls_authenticate(token: str | None) -> str | None:
    """Accept the secret of :func:`cluster_credentials`' token."""
    return "root" if token and token_secret(token) == "s3cret" * 4 else None


@pytest.mark.anyio
async def test_client_with_cluster_token_talks_tls(driver: str) -> None:
    creds, token = cluster_credentials()
    ctx = server_context(creds)
    async with serving(driver, ssl_context=ctx) as s:
        s.server.authenticate = tls_authenticate
        async with aspen.aconnect(s.endpoint, token=token) as c:
            assert await c.call("test.echo", {"k": b"v"}) == {"k": b"v"}
            assert c._conn is not None and c._conn.server_node_id == creds.node_id
            results = []

            async def one(i: int) -> None:
                results.append(await c.call("test.echo", {"i": i, "pad": b"x" * 5000}))

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
            assert sorted(r["i"] for r in results) == list(range(200))
            items = [i async for i in c.stream("test.flood", {"n": 50, "size": 70_000})]
            assert len(items) == 50


@pytest.mark.anyio
async def test_client_refuses_a_server_of_another_cluster(driver: str) -> None:
    creds, _ = cluster_credentials()
    _, foreign_token = cluster_credentials()  # a token pinning another CA key
    async with serving(driver, ssl_context=server_context(creds)) as s:
        s.server.authenticate = tls_authenticate
        with anyio.fail_after(5), pytest.raises(errors.UnauthorizedError, match="cluster CA"):
            async with aspen.aconnect(s.endpoint, token=foreign_token):
                pass
        assert s.server.stats()["requests"] == 0


@pytest.mark.anyio
async def test_wrong_secret_over_tls_is_unauthorized(driver: str) -> None:
    creds, token = cluster_credentials()
    wrong = str(ClusterToken("client", creds.ca.public_raw, "y" * 43))
    async with serving(driver, ssl_context=server_context(creds)) as s:
        s.server.authenticate = tls_authenticate
        async with aspen.aconnect(s.endpoint, token=token) as c:
            assert await c.call("test.echo", {}) == {}
        with pytest.raises(errors.UnauthorizedError, match="not valid"):
            async with aspen.aconnect(s.endpoint, token=wrong):
                pass


@pytest.mark.anyio
async def test_plain_client_to_tls_server_fails_cleanly(driver: str) -> None:
    creds, _ = cluster_credentials()
    async with serving(driver, ssl_context=server_context(creds)) as s:
        with anyio.fail_after(5), pytest.raises(errors.UnavailableError) as info:
            async with aspen.aconnect(s.endpoint, token=rpc.TOKEN, connect_timeout=3):
                pass
        assert s.endpoint in info.value.message and "TLS" in info.value.message
        assert s.server.stats()["connections_total"] == 0


@pytest.mark.anyio
async def test_tls_client_to_plain_server_fails_cleanly(driver: str) -> None:
    _, token = cluster_credentials()
    async with serving(driver) as s:
        with anyio.fail_after(5), pytest.raises(errors.UnavailableError, match="TLS"):
            async with aspen.aconnect(s.endpoint, token=token, connect_timeout=3):
                pass


@pytest.mark.anyio
async def test_malformed_cluster_token_is_invalid(driver: str) -> None:
    async with serving(driver) as s:
        with pytest.raises(errors.InvalidArgumentError, match="malformed token"):
            async with aspen.aconnect(s.endpoint, token="aspen1.nonsense"):
                pass


@pytest.mark.anyio
async def test_portable_client_driver_over_tls(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's anyio driver (what trio uses), forced on asyncio, pins and talks TLS."""
    import aspen.client.aclient
    import aspen.client.connection

    for module in (aspen.client.aclient, aspen.client.connection):
        monkeypatch.setattr(module, "running_on_asyncio", lambda: False)
    creds, token = cluster_credentials()
    _, foreign_token = cluster_credentials()
    async with serving(driver, ssl_context=server_context(creds)) as s:
        s.server.authenticate = tls_authenticate
        async with aspen.aconnect(s.endpoint, token=token) as c:
            assert type(c._conn).__name__ == "_AnyioConnection"
            assert c._conn.server_node_id == creds.node_id
            assert await c.call("test.echo", {"k": 1}) == {"k": 1}
        with pytest.raises(errors.UnauthorizedError, match="cluster CA"):
            async with aspen.aconnect(s.endpoint, token=foreign_token):
                pass
