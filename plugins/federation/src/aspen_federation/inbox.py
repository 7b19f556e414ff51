"""The federation inbox: where other clusters deliver signed gossip and trust requests.

A remote cluster holds no token of ours before we trust it, so the inbox is an HTTP
listener (``[federation] inbox_listen``, through the core's hardened ``node.serve_http``)
that authenticates by signature instead: every message is signed by its sender's cluster
key. Two routes, msgpack bodies of at most ``MAX_INBOX_BODY_BYTES``:

* ``POST /federation/v1/gossip``: a list of at most ``GOSSIP_BATCH_MESSAGES`` encoded
  :class:`~aspen_federation.gossip.GossipMessage`; each is admitted on its own
  (:class:`~aspen_federation.gossip.GossipInbox`: rate per delivering host, then global,
  then signature, trust, freshness, duplicates). The answer lists each outcome.
* ``POST /federation/v1/trust``: one :class:`~aspen_federation.trustreq.TrustRequest`:
  rate per delivering host first, then the signatures, the recipient (us) and the date,
  then a per-sender budget; a blocked sender is dropped silently (it is answered as any
  other); the request joins the bounded queue for ``aspen federation requests``.

Answers are msgpack ``{"ok": …}`` or ``{"error": {code, message, details}}`` (an
:class:`~aspen.errors.AspenError`'s wire form; :func:`post` rebuilds it).

The cluster announces the inbox in its DHT announcement as an endpoint that is a URL
(``http://host:port``), after its RPC endpoints (:func:`inbox_url`).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import anyio
import msgpack

from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    error_from_wire,
)
from aspen_federation import limits
from aspen_federation.identity import key_id
from aspen_federation.ratelimit import GossipLimiter
from aspen_federation.trustreq import TrustRequest

if TYPE_CHECKING:
    from aspen_federation.service import FederationService

__all__ = [
    "GOSSIP_PATH",
    "TRUST_PATH",
    "Inbox",
    "admit_gossip",
    "inbox_url",
    "post",
    "resource_of",
    "send_trust_request",
]

GOSSIP_PATH = "/federation/v1/gossip"
TRUST_PATH = "/federation/v1/trust"
#: The event an admitted gossip message becomes (subject: the sender's key id).
GOSSIP_EVENT = "federation.gossip"
#: Which kind of resource each gossip kind is about (the event payload's ``resource``).
_RESOURCE_KIND = {
    "repo.created": "forge",
    "ref.updated": "forge",
    "channel.updated": "pijul",
    "blob.available": "blob",
    "token.revoked": "token",
}
_STATUS = {
    "invalid_argument": 400,
    "unauthorized": 401,
    "not_found": 404,
    "resource_exhausted": 429,
    "not_leader": 503,
    "unavailable": 503,
}


def resource_of(kind: str, subject: str) -> str:
    """The resource a gossip message is about: ``ref.updated`` + ``acme/w`` ->
    ``forge:acme/w``; ``channel.updated`` + ``acme/w:main`` -> ``pijul:acme/w``."""
    if kind == "channel.updated":
        subject = subject.rpartition(":")[0] or subject
    return f"{_RESOURCE_KIND.get(kind, 'unknown')}:{subject}"


def inbox_url(endpoints: list[str] | tuple[str, ...]) -> str | None:
    """The inbox URL among an announcement's endpoints (the one with a scheme), if any."""
    return next((e for e in endpoints if "://" in e), None)


async def admit_gossip(
    service: FederationService, data: bytes, peer: bytes | None
) -> dict[str, Any]:
    """Admit one gossip message (``peer``: who delivered it, for the per-peer budget) and
    publish it to the event journal as ``federation.gossip``: subject the sender's key id,
    payload ``{sender, kind, subject, resource, seq}``."""
    msg = await service.inbox.receive(data, peer)
    if msg is None:
        return {"accepted": False, "duplicate": True}
    service.seen(msg.sender)
    payload = {
        "sender": msg.sender.hex(),
        "kind": msg.kind,
        "subject": msg.subject,
        "resource": resource_of(msg.kind, msg.subject),
        "seq": msg.seq,
    }
    await service.node.events.publish(GOSSIP_EVENT, key_id(msg.sender), payload)
    return {"accepted": True, "duplicate": False}


async def remote_inbox(service: FederationService, remote: bytes) -> str:
    """``remote``'s inbox URL, from its verified DHT announcement."""
    announcement = await service.discover(remote)
    url = inbox_url(announcement.endpoints)
    if url is None:
        raise UnavailableError(f"cluster {key_id(remote)} announces no federation inbox")
    return url


async def send_trust_request(service: FederationService, remote: bytes) -> dict[str, Any]:
    """Send this cluster's signed identity to cluster ``remote`` (found through the DHT):
    it lands in that cluster's queue of trust requests."""
    url = await remote_inbox(service, remote)
    key, doc = await service.identity()
    body = TrustRequest.create(key, doc, remote).encode()
    answer = await anyio.to_thread.run_sync(post, url, TRUST_PATH, body)
    return {"cluster_key": remote.hex(), "key_id": key_id(remote), "inbox": url, **answer}


class Inbox:
    """The inbox's state on one node (its trust-request budgets) and its ASGI app."""

    def __init__(self, service: FederationService) -> None:
        self.service = service
        #: Per delivering host, then global: checked before any signature.
        self.hosts = GossipLimiter()
        #: Per verified sender cluster (a few requests a minute).
        self.senders = GossipLimiter(
            peer_rate=limits.TRUST_REQUEST_SENDER_RATE,
            peer_burst=limits.TRUST_REQUEST_SENDER_BURST,
            max_peers=limits.MAX_PEERS,
        )

    async def gossip(self, body: bytes, host: bytes) -> list[dict[str, Any]]:
        """Admit each message of a batch on its own; one outcome per message."""
        batch = _unpack(body)
        if not isinstance(batch, list) or len(batch) > limits.GOSSIP_BATCH_MESSAGES:
            raise InvalidArgumentError(
                f"a gossip batch is a list of at most GOSSIP_BATCH_MESSAGES "
                f"({limits.GOSSIP_BATCH_MESSAGES}) messages"
            )
        out: list[dict[str, Any]] = []
        for data in batch:
            try:
                if not isinstance(data, bytes):
                    raise InvalidArgumentError("a gossip message must be bytes")
                out.append(await admit_gossip(self.service, data, host))
            except AspenError as exc:
                out.append({"accepted": False, "error": exc.to_wire()})
        return out

    async def trust_request(self, body: bytes, host: bytes) -> dict[str, Any]:
        """Queue a remote cluster's trust request (see the module docstring)."""
        request = TrustRequest.parse(body)
        if not self.hosts.admit(host):
            raise ResourceExhaustedError("trust requests over this host's or the global budget")
        key, _ = await self.service.identity()
        doc = request.verified(key.public)
        if await self.service.trust_level(doc.key) == "blocked":
            return {"queued": True}  # a blocked cluster learns nothing
        if not self.senders.admit(doc.key):
            raise ResourceExhaustedError(
                f"trust requests from cluster {key_id(doc.key)} over TRUST_REQUEST_SENDER_RATE"
            )
        return await self.service.request_trust(request.document)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app."""
        if scope["type"] != "http":
            return
        routes = {GOSSIP_PATH: self.gossip, TRUST_PATH: self.trust_request}
        route = routes.get(scope["path"])
        try:
            if route is None or scope["method"] != "POST":
                raise InvalidArgumentError(f"POST {GOSSIP_PATH} or {TRUST_PATH}")
            body = await _read_body(receive)
            host = str((scope.get("client") or ("?", 0))[0]).encode()
            answer: dict[str, Any] = {"ok": await route(body, host)}
            status = 200
        except AspenError as exc:
            answer, status = {"error": exc.to_wire()}, _STATUS.get(exc.code, 500)
        data = msgpack.packb(answer, use_bin_type=True)
        headers = [
            (b"content-type", b"application/msgpack"),
            (b"content-length", b"%d" % len(data)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Any) -> bytes:
    """The request body, refused over MAX_INBOX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.MAX_INBOX_BODY_BYTES:
            raise InvalidArgumentError(
                f"body over MAX_INBOX_BODY_BYTES ({limits.MAX_INBOX_BODY_BYTES})"
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidArgumentError(f"malformed body: {exc}") from None


def post(url: str, path: str, body: bytes) -> Any:
    """POST ``body`` to a remote inbox (blocking: run it in a worker thread); its ``ok``
    answer, or the :class:`AspenError` it answered raised; ``unavailable`` when it cannot
    be reached."""
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/msgpack"},
    )
    try:
        with urllib.request.urlopen(request, timeout=limits.GOSSIP_SEND_TIMEOUT_SECONDS) as got:
            data = got.read(limits.MAX_INBOX_BODY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        data = exc.read(limits.MAX_INBOX_BODY_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise UnavailableError(f"federation inbox {url} unreachable: {exc}") from None
    answer = _unpack(data)
    if isinstance(answer, dict) and "error" in answer:
        raise error_from_wire(answer["error"])
    if not isinstance(answer, dict) or "ok" not in answer:
        raise InvalidArgumentError(f"federation inbox {url}: malformed answer")
    return answer["ok"]
