"""TLS 1.3 for every link: the cluster CA, node certificates and the SSL contexts.

A cluster has one CA: an Ed25519 key and a self-signed certificate; the cluster id derives
from the CA public key. Each node's certificate carries its Ed25519 node key (so the peer's
node id follows from the certificate) and is issued by the CA. Peer links are mutual TLS
with the CA as the only trust anchor; clients pin the CA public key from their token and
check the server certificate's signature themselves (:func:`verify_server_certificate`),
since Python's ``ssl`` cannot trust a bare key.

Files in a data directory: ``cluster-ca.pem`` (CA certificate), ``cluster-ca.key`` (CA key,
0600; every member holds it, see :mod:`aspen.transport.join`) and ``node.pem`` (this node's
certificate; its key is ``node.key`` from :mod:`aspen.transport.identity`).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aspen.errors import UnauthorizedError
from aspen.limits import (
    CERT_BACKDATE_SECONDS,
    CLUSTER_CA_VALIDITY_DAYS,
    NODE_CERT_RENEW_DAYS,
    NODE_CERT_VALIDITY_DAYS,
)
from aspen.transport.identity import (
    NodeIdentity,
    cluster_id_from_public_key,
    node_id_from_public_key,
    write_private_file,
)

__all__ = [
    "CLUSTER_CA_CERT_FILE",
    "CLUSTER_CA_KEY_FILE",
    "NODE_CERT_FILE",
    "ClusterCA",
    "NodeCredentials",
    "client_context",
    "cluster_id_from_public_key",
    "issue_node_cert",
    "load_node_credentials",
    "node_id_from_certificate",
    "peer_client_context",
    "peer_node_id",
    "server_context",
    "split_address",
    "verify_server_certificate",
    "write_public_file",
]

#: The cluster CA certificate (PEM) in a data directory.
CLUSTER_CA_CERT_FILE = "cluster-ca.pem"
#: The cluster CA private key (PEM, mode 0600) in a data directory.
CLUSTER_CA_KEY_FILE = "cluster-ca.key"
#: This node's certificate, issued by the cluster CA (PEM).
NODE_CERT_FILE = "node.pem"

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_PKCS8 = (
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
)


def write_public_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ed25519_public(cert: x509.Certificate) -> Ed25519PublicKey:
    """The certificate's public key; refuses anything but Ed25519."""
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the certificate does not carry an Ed25519 key")
    return key


def node_id_from_certificate(cert: x509.Certificate) -> str:
    """The node id of a node certificate (from its public key, not its subject)."""
    return node_id_from_public_key(_ed25519_public(cert).public_bytes(*_RAW))


@dataclass(frozen=True, slots=True)
class ClusterCA:
    """The cluster's certificate authority: certificate, public key, and (on members) key."""

    cert: x509.Certificate
    cert_pem: bytes
    public_raw: bytes
    cluster_id: str
    private_key: Ed25519PrivateKey | None = None

    @classmethod
    def generate(cls) -> ClusterCA:
        """Make a new CA in memory: an Ed25519 key and a self-signed certificate."""
        key = Ed25519PrivateKey.generate()
        public_raw = key.public_key().public_bytes(*_RAW)
        cluster_id = cluster_id_from_public_key(public_raw)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aspen"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"aspen cluster CA {cluster_id}"),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=CERT_BACKDATE_SECONDS))
            .not_valid_after(now + datetime.timedelta(days=CLUSTER_CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, None)
        )
        return cls.from_pem(
            cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(*_PKCS8)
        )

    @classmethod
    def create(cls, data_dir: Path) -> ClusterCA:
        """Make a new CA and store it in ``data_dir`` (refuses to replace an existing one)."""
        ca = cls.generate()
        ca.save(data_dir)
        return ca

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes | None = None) -> ClusterCA:
        """Load a CA from PEM; checks the certificate is a self-signed Ed25519 CA and that
        the key (if given) belongs to it. Raises ``ValueError`` otherwise."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        public = _ed25519_public(cert)
        try:
            public.verify(cert.signature, cert.tbs_certificate_bytes)
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (InvalidSignature, x509.ExtensionNotFound):
            raise ValueError("not a self-signed CA certificate") from None
        if not constraints.ca:
            raise ValueError("the certificate is not a CA certificate")
        public_raw = public.public_bytes(*_RAW)
        key = None
        if key_pem is not None:
            loaded = serialization.load_pem_private_key(key_pem, password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError("the CA key is not an Ed25519 key")
            if loaded.public_key().public_bytes(*_RAW) != public_raw:
                raise ValueError("the CA key does not belong to the CA certificate")
            key = loaded
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return cls(cert, pem, public_raw, cluster_id_from_public_key(public_raw), key)

    @classmethod
    def load(cls, data_dir: Path) -> ClusterCA:
        """Load the CA from ``data_dir`` (with its key when ``cluster-ca.key`` is there)."""
        key_path = data_dir / CLUSTER_CA_KEY_FILE
        key_pem = key_path.read_bytes() if key_path.exists() else None
        return cls.from_pem((data_dir / CLUSTER_CA_CERT_FILE).read_bytes(), key_pem)

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """Whether ``data_dir`` holds a cluster CA certificate."""
        return (data_dir / CLUSTER_CA_CERT_FILE).exists()

    def key_pem(self) -> bytes:
        """The CA private key as PEM (PKCS#8); ``ValueError`` if this copy has no key."""
        if self.private_key is None:
            raise ValueError("this copy of the cluster CA has no private key")
        return self.private_key.private_bytes(*_PKCS8)

    def save(self, data_dir: Path) -> None:
        """Write ``cluster-ca.key`` (0600, if held) and ``cluster-ca.pem`` to ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.private_key is not None:
            write_private_file(data_dir / CLUSTER_CA_KEY_FILE, self.key_pem())
        write_public_file(data_dir / CLUSTER_CA_CERT_FILE, self.cert_pem)


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6addr]:port``) into host and port (``ValueError`` if not)."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _host_names(addresses: Iterable[str]) -> list[x509.GeneralName]:
    """SAN entries for the hosts of ``host:port`` addresses (IPs and DNS names)."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(split_address(a)[0] for a in addresses):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_node_cert(
    ca: ClusterCA, node: NodeIdentity | bytes, addresses: Iterable[str] = ()
) -> bytes:
    """Issue a node certificate (PEM) for ``node`` (an identity or a raw Ed25519 public key).

    The subject's common name and a ``aspen://<cluster-id>/node/<node-id>`` URI carry the
    node id; ``addresses`` (``host:port``) add IP/DNS names for tools that look at them.
    """
    if ca.private_key is None:
        raise ValueError("issuing a node certificate needs the cluster CA key")
    public_raw = node.public_raw if isinstance(node, NodeIdentity) else node
    public = Ed25519PublicKey.from_public_bytes(public_raw)
    node_id = node_id_from_public_key(public_raw)
    now = _now()
    san: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"aspen://{ca.cluster_id}/node/{node_id}"),
        *_host_names(addresses),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aspen"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca.cluster_id),
                    x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=CERT_BACKDATE_SECONDS))
        .not_valid_after(now + datetime.timedelta(days=NODE_CERT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ed25519_public(ca.cert)),
            critical=False,
        )
        .sign(ca.private_key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """What a node needs for TLS: its identity, the cluster CA, and its certificate."""

    identity: NodeIdentity
    ca: ClusterCA
    cert_pem: bytes

    @classmethod
    def issue(
        cls, ca: ClusterCA, identity: NodeIdentity, addresses: Iterable[str] = ()
    ) -> NodeCredentials:
        """Credentials with a freshly issued certificate (needs the CA key)."""
        return cls(identity, ca, issue_node_cert(ca, identity, addresses))

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.identity.node_id

    @property
    def cluster_id(self) -> str:
        """The cluster's id."""
        return self.ca.cluster_id

    def key_pem(self) -> bytes:
        """The node's private key as PEM."""
        return self.identity.private_key.private_bytes(*_PKCS8)


def _cert_usable(cert_pem: bytes, ca: ClusterCA, identity: NodeIdentity) -> bool:
    """Whether a stored node certificate is for ``identity``, from ``ca``, and not expiring."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_public = _ed25519_public(ca.cert)
        ca_public.verify(cert.signature, cert.tbs_certificate_bytes)
        same_key = _ed25519_public(cert).public_bytes(*_RAW) == identity.public_raw
    except (ValueError, InvalidSignature):
        return False
    renew_at = cert.not_valid_after_utc - datetime.timedelta(days=NODE_CERT_RENEW_DAYS)
    return same_key and _now() < renew_at


def load_node_credentials(
    data_dir: Path, identity: NodeIdentity, addresses: Iterable[str] = ()
) -> NodeCredentials | None:
    """Load this node's TLS credentials; ``None`` when ``data_dir`` has no cluster CA.

    A missing, foreign or soon-expiring ``node.pem`` is (re-)issued when the CA key is
    here; without the key that is a ``ValueError``.
    """
    if not ClusterCA.exists(data_dir):
        return None
    ca = ClusterCA.load(data_dir)
    cert_path = data_dir / NODE_CERT_FILE
    if cert_path.exists() and _cert_usable(cert_path.read_bytes(), ca, identity):
        return NodeCredentials(identity, ca, cert_path.read_bytes())
    if ca.private_key is None:
        raise ValueError(f"{cert_path} is missing or unusable and there is no CA key to issue one")
    creds = NodeCredentials.issue(ca, identity, addresses)
    write_public_file(cert_path, creds.cert_pem)
    return creds


# ---------------------------------------------------------------------------- contexts
def _base_context(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    """An ``SSLContext`` speaking TLS 1.3 only."""
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _load_chain(ctx: ssl.SSLContext, creds: NodeCredentials) -> None:
    """Load the node certificate and key from memory (``ssl`` only reads files: use an
    anonymous memory file where the OS has one, else a private temporary directory)."""
    pem = creds.cert_pem + creds.key_pem()
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("aspen-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="aspen-tls-") as tmp:
        path = Path(tmp) / "chain.pem"
        write_private_file(path, pem)
        try:
            ctx.load_cert_chain(path)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def server_context(creds: NodeCredentials, *, peers: bool = False) -> ssl.SSLContext:
    """A server context presenting the node certificate.

    With ``peers`` (the peer port) the cluster CA is the only trust anchor and a client
    certificate is asked for but optional: a connection without one may only join
    (:mod:`aspen.transport.join`); a certificate that does not verify fails the handshake.
    """
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER)
    ctx.num_tickets = 0  # no session resumption: links are long-lived
    _load_chain(ctx, creds)
    if peers:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=creds.ca.cert_pem.decode())
    return ctx


def peer_client_context(creds: NodeCredentials) -> ssl.SSLContext:
    """A context for dialing a peer: mutual TLS, the cluster CA the only trust anchor."""
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # peers are identified by their key (node id), not a name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=creds.ca.cert_pem.decode())
    _load_chain(ctx, creds)
    return ctx


def client_context() -> ssl.SSLContext:
    """A context for clients and joining nodes: TLS 1.3, no client certificate; the server
    certificate is checked after the handshake by :func:`verify_server_certificate`."""
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_node_id(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The node id of the verified peer certificate; ``None`` if the peer sent none."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return node_id_from_certificate(x509.load_der_x509_certificate(der))


def verify_server_certificate(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, ca_public_raw: bytes, *, endpoint: str = "server"
) -> str:
    """Check the server certificate was signed by the CA key ``ca_public_raw`` and is
    valid now; return the server's node id. Raises ``UnauthorizedError`` otherwise.

    The TLS handshake already proved the server holds the certificate's private key.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise UnauthorizedError(f"{endpoint} presented no TLS certificate", endpoint=endpoint)
    try:
        cert = x509.load_der_x509_certificate(der)
        Ed25519PublicKey.from_public_bytes(ca_public_raw).verify(
            cert.signature, cert.tbs_certificate_bytes
        )
        node_id = node_id_from_certificate(cert)
    except (ValueError, InvalidSignature):
        raise UnauthorizedError(
            f"{endpoint} is not a node of the cluster named by the token: its TLS "
            "certificate is not signed by the token's cluster CA key",
            endpoint=endpoint,
        ) from None
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UnauthorizedError(
            f"the TLS certificate of {endpoint} is not valid now (valid "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})",
            endpoint=endpoint,
        )
    return node_id
