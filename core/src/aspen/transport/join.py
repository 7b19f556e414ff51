"""Cluster creation and joining.

``aspen cluster init`` (:func:`init_cluster`) creates the cluster CA, this node's
certificate, a join token and a cluster root token. A new node joins with the join token
(``aspen1j.<ca-public-key>.<secret>``, see :mod:`aspen.transport.tokens`):
:func:`request_join` connects with TLS to any member's *peer* port without a client
certificate, accepts the member only if the CA key in the token signed its certificate,
and sends ``{"type": "join", "version", "cluster_id", "secret", "public_key",
"addresses": {"peer": ..., "client": ...}}``. The member (:class:`JoinService`, called by the
:class:`~aspen.transport.peer.PeerTransport` for certificate-less connections) checks the
secret in constant time, lets the node admit the newcomer, and answers with a
:class:`JoinGrant`: the CA certificate *and key*, a fresh node certificate, the join and
root tokens, and the member list; or an ``unauthorized`` error.

Trade-off of handing out the CA key: any member can issue certificates and serve joins
while others are down (no single CA node), at the price that every member's data
directory is as sensitive as the CA itself. A stolen ``cluster-ca.key`` lets its holder
mint certificates, but peers only talk to keys that are committed members (``is_member``)
and node ids derive from keys, so it can neither impersonate a member nor join without a
membership change; a stolen join token can join (that is what it is for) and so obtains
the CA key and the root token. Getting rid of either means a new cluster CA. The
alternative (only the first node holds the key, others forward joins to it) makes joins
depend on that node.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    UnauthorizedError,
    UnavailableError,
    error_from_wire,
)
from aspen.limits import (
    JOIN_TIMEOUT_SECONDS,
    MAX_ADDRESS_CHARS,
    MAX_JOIN_ADDRESSES,
    PEER_CONNECT_TIMEOUT_SECONDS,
)
from aspen.transport.datadir import ROOT_TOKEN_FILE
from aspen.transport.framed import LINK_ERRORS, FramedStream, describe_error, open_tls
from aspen.transport.identity import (
    NodeIdentity,
    load_or_create_identity,
    node_id_from_public_key,
    write_private_file,
)
from aspen.transport.ports import PEER_PORT_OFFSET as DEV_PEER_PORT_OFFSET
from aspen.transport.tls import (
    NODE_CERT_FILE,
    ClusterCA,
    NodeCredentials,
    client_context,
    issue_node_cert,
    node_id_from_certificate,
    split_address,
    verify_server_certificate,
    write_public_file,
)
from aspen.transport.tokens import (
    ClusterToken,
    new_cluster_token,
    parse_cluster_token,
    secrets_match,
)

__all__ = [
    "JOIN_PROTOCOL_VERSION",
    "JOIN_TOKEN_FILE",
    "Admit",
    "ClusterInit",
    "JoinGrant",
    "JoinService",
    "init_cluster",
    "load_join_token",
    "request_join",
]

log = logging.getLogger("aspen.transport.join")

#: The join protocol version.
JOIN_PROTOCOL_VERSION = 1
#: The cluster's join token in a data directory (mode 0600).
JOIN_TOKEN_FILE = "join-token"

#: ``await admit(node_id, addresses)``: accept the newcomer (e.g. commit it as a learner
#: with ``addresses["peer"]`` and ``addresses["client"]``) and return the member list to
#: hand it; raise an ``AspenError`` to refuse.
Admit = Callable[[str, dict[str, str]], Awaitable[list[dict[str, Any]]]]


def _write_token(data_dir: Path, name: str, token: str) -> None:
    """Write a token file (0600), replacing an existing one atomically."""
    tmp = data_dir / f"{name}.tmp"
    tmp.unlink(missing_ok=True)
    write_private_file(tmp, (token + "\n").encode())
    tmp.replace(data_dir / name)


def load_join_token(data_dir: Path) -> str | None:
    """This member's join token (``None`` on a node without a cluster)."""
    path = data_dir / JOIN_TOKEN_FILE
    return path.read_text().strip() if path.exists() else None


@dataclass(frozen=True, slots=True)
class ClusterInit:
    """What :func:`init_cluster` created."""

    credentials: NodeCredentials
    join_token: str
    root_token: str

    @property
    def cluster_id(self) -> str:
        """The new cluster's id."""
        return self.credentials.cluster_id


def init_cluster(data_dir: Path, addresses: Sequence[str] = ()) -> ClusterInit:
    """Create a cluster identity in ``data_dir``: the CA, this node's certificate, a join
    token and a root token (``aspen1.``: clients then use TLS). Refuses a data directory
    that already belongs to a cluster; a legacy ``root-token`` is replaced."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if ClusterCA.exists(data_dir):
        raise ValueError(f"{data_dir} already belongs to a cluster (it has a cluster CA)")
    identity = load_or_create_identity(data_dir)
    ca = ClusterCA.create(data_dir)
    creds = NodeCredentials.issue(ca, identity, addresses)
    write_public_file(data_dir / NODE_CERT_FILE, creds.cert_pem)
    join_token = str(new_cluster_token("join", ca.public_raw))
    root_token = str(new_cluster_token("client", ca.public_raw))
    _write_token(data_dir, JOIN_TOKEN_FILE, join_token)
    _write_token(data_dir, ROOT_TOKEN_FILE, root_token)
    return ClusterInit(creds, join_token, root_token)


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """What a member hands a joining node."""

    ca: ClusterCA
    node_cert_pem: bytes
    node_id: str
    join_token: str
    root_token: str
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cluster_id(self) -> str:
        """The joined cluster's id."""
        return self.ca.cluster_id

    def credentials(self, identity: NodeIdentity) -> NodeCredentials:
        """TLS credentials of the joined node."""
        return NodeCredentials(identity, self.ca, self.node_cert_pem)

    def save(self, data_dir: Path) -> None:
        """Store the grant: ``cluster-ca.key``/``.pem``, ``node.pem``, ``join-token``,
        ``root-token``. Refuses a data directory that already has a cluster CA."""
        if ClusterCA.exists(data_dir):
            raise ValueError(f"{data_dir} already belongs to a cluster (it has a cluster CA)")
        self.ca.save(data_dir)
        write_public_file(data_dir / NODE_CERT_FILE, self.node_cert_pem)
        _write_token(data_dir, JOIN_TOKEN_FILE, self.join_token)
        _write_token(data_dir, ROOT_TOKEN_FILE, self.root_token)


class JoinService:
    """The member side of a join: ``on_join`` for :class:`~aspen.transport.peer.PeerTransport`."""

    def __init__(
        self,
        credentials: NodeCredentials,
        join_token: str,
        root_token: str,
        admit: Admit | None = None,
    ) -> None:
        token = parse_cluster_token(join_token)
        if token is None or token.kind != "join":
            raise ValueError("the join token is not an aspen1j. token")
        if token.ca_public_raw != credentials.ca.public_raw:
            raise ValueError("the join token names another cluster CA")
        if credentials.ca.private_key is None:
            raise ValueError("serving joins needs the cluster CA key")
        self.credentials = credentials
        self.join_token = join_token
        self.root_token = root_token
        self.admit = admit
        self._secret = token.secret
        self.granted = 0
        self.refused = 0

    async def __call__(self, frame: dict[str, Any], remote: str) -> dict[str, Any]:
        """Answer one join request with a grant, or raise why it is refused."""
        try:
            public_raw, addresses = self._check(frame)
        except AspenError as exc:
            self.refused += 1
            log.warning("refused join from %s: %s", remote, exc.message)
            raise
        node_id = node_id_from_public_key(public_raw)
        members = await self.admit(node_id, addresses) if self.admit is not None else []
        ca = self.credentials.ca
        self.granted += 1
        log.info("node %s (%s, from %s) joined the cluster", node_id, addresses, remote)
        return {
            "type": "join_grant",
            "version": JOIN_PROTOCOL_VERSION,
            "cluster_id": ca.cluster_id,
            "node_id": node_id,
            "ca_cert": ca.cert_pem,
            "ca_key": ca.key_pem(),
            "node_cert": issue_node_cert(ca, public_raw, addresses.values()),
            "join_token": self.join_token,
            "root_token": self.root_token,
            "members": members,
        }

    def _check(self, frame: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Validate a join request; return the newcomer's public key and addresses."""
        if frame.get("version") != JOIN_PROTOCOL_VERSION:
            raise InvalidArgumentError(
                f"join protocol version {frame.get('version')!r} is not supported",
                supported=[JOIN_PROTOCOL_VERSION],
            )
        if frame.get("cluster_id") != self.credentials.cluster_id:
            raise UnauthorizedError("the join token is for another cluster")
        secret = frame.get("secret")
        if not isinstance(secret, str) or not secrets_match(secret, self._secret):
            raise UnauthorizedError("the join token's secret is not valid for this cluster")
        public_raw = frame.get("public_key")
        if type(public_raw) is not bytes or len(public_raw) != 32:
            raise InvalidArgumentError("'public_key' must be a raw 32-byte Ed25519 key")
        addresses = _check_address_map(frame.get("addresses"))
        try:
            for address in addresses.values():
                split_address(address)
            Ed25519PublicKey.from_public_bytes(public_raw)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        return public_raw, addresses


def _check_address_map(value: object) -> dict[str, str]:
    """``value`` as a map of at most MAX_JOIN_ADDRESSES names to host:port strings of at
    most MAX_ADDRESS_CHARS each; otherwise ``InvalidArgumentError`` naming the bound."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgumentError("'addresses' must map names to host:port strings")
    if len(value) > MAX_JOIN_ADDRESSES:
        raise InvalidArgumentError(
            f"'addresses' has {len(value)} entries: at most {MAX_JOIN_ADDRESSES} "
            f"(MAX_JOIN_ADDRESSES)",
            limit=MAX_JOIN_ADDRESSES,
        )
    for name, address in value.items():
        longest = max(len(name), len(address))
        if longest > MAX_ADDRESS_CHARS:
            raise InvalidArgumentError(
                f"join address {name!r} is {longest} characters long: at most "
                f"{MAX_ADDRESS_CHARS} (MAX_ADDRESS_CHARS)",
                limit=MAX_ADDRESS_CHARS,
            )
    return value


def _parse_join_token(token: str) -> ClusterToken:
    """Parse an ``aspen1j.`` token or raise ``InvalidArgumentError``."""
    try:
        parsed = parse_cluster_token(token)
    except ValueError as exc:
        raise InvalidArgumentError(f"malformed join token: {exc}") from None
    if parsed is None or parsed.kind != "join":
        raise InvalidArgumentError("a join token starts with 'aspen1j.' (see `aspen cluster init`)")
    return parsed


def _grant_from_frame(
    reply: dict[str, Any], token: ClusterToken, identity: NodeIdentity
) -> JoinGrant:
    """Check a member's grant against the token and our key; build the :class:`JoinGrant`."""
    try:
        ca = ClusterCA.from_pem(reply["ca_cert"], reply["ca_key"])
        if ca.public_raw != token.ca_public_raw:
            raise ValueError("the granted CA is not the one named by the join token")
        cert = x509.load_pem_x509_certificate(reply["node_cert"])
        Ed25519PublicKey.from_public_bytes(ca.public_raw).verify(
            cert.signature, cert.tbs_certificate_bytes
        )
        if node_id_from_certificate(cert) != identity.node_id:
            raise ValueError("the granted certificate is not for this node's key")
        members = reply.get("members") or []
        if not isinstance(members, list):
            raise ValueError("'members' is not a list")
        return JoinGrant(
            ca,
            reply["node_cert"],
            identity.node_id,
            str(reply["join_token"]),
            str(reply["root_token"]),
            members,
        )
    except (KeyError, TypeError, ValueError, InvalidSignature) as exc:
        raise UnauthorizedError(f"the member's join grant is not valid: {exc}") from None


async def request_join(
    token: str,
    address: str,
    identity: NodeIdentity,
    my_addresses: Mapping[str, str],
    *,
    timeout: float = JOIN_TIMEOUT_SECONDS,
) -> JoinGrant:
    """Ask the member at ``address`` (its peer port) to let this node join, announcing
    ``my_addresses`` (e.g. ``{"peer": "10.0.0.5:7380", "client": "10.0.0.5:7379"}``).

    Raises ``UnauthorizedError`` for a wrong secret or when the member is not of the
    token's cluster, ``UnavailableError`` when it cannot be reached, the member's error
    when it refuses otherwise.
    """
    parsed = _parse_join_token(token)
    host, port = split_address(address)
    try:
        tls = await open_tls(
            host,
            port,
            client_context(),
            connect_timeout=PEER_CONNECT_TIMEOUT_SECONDS,
            handshake_timeout=timeout,
        )
    except LINK_ERRORS as exc:
        raise UnavailableError(
            f"cannot reach {address} to join: {describe_error(exc)}", endpoint=address
        ) from exc
    framed = FramedStream(tls)
    try:
        verify_server_certificate(framed.ssl_object, parsed.ca_public_raw, endpoint=address)
        request = {
            "type": "join",
            "version": JOIN_PROTOCOL_VERSION,
            "cluster_id": parsed.cluster_id,
            "secret": parsed.secret,
            "public_key": identity.public_raw,
            "addresses": dict(my_addresses),
        }
        with anyio.fail_after(timeout):
            await framed.send(request)
            reply = await framed.recv()
    except AspenError:
        raise
    except LINK_ERRORS as exc:
        raise UnavailableError(
            f"joining through {address} failed: {describe_error(exc)}", endpoint=address
        ) from exc
    finally:
        await framed.aclose()
    if reply.get("type") == "error":
        error = error_from_wire(reply.get("error"))
        if error.details.get("expected") == "hello":  # a client port: it wants a hello
            raise InvalidArgumentError(
                f"{address} is a client port, not a peer port: use the member's peer port "
                f"(client + 1 by default, e.g. {host}:{port + 1}; `aspen dev up` nodes: "
                f"client + {DEV_PEER_PORT_OFFSET})",
                endpoint=address,
            )
        raise error
    if reply.get("type") != "join_grant":
        raise UnavailableError(f"{address} did not answer the join request: {sorted(reply)}")
    return _grant_from_frame(reply, parsed, identity)
