"""One node's federation service: the cluster identity, the discovery backend, the
periodic announcement, and the trust and share records in the cluster."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import msgpack

from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from aspen.kv import paging
from aspen_federation import keys, limits
from aspen_federation.announce import Announcement, AnnouncementError
from aspen_federation.discovery import Discovery
from aspen_federation.gossip import GossipInbox
from aspen_federation.identity import (
    ClusterKey,
    IdentityDocument,
    key_id,
    seal,
    sealing_key,
    unseal,
)
from aspen_federation.trust import LEVELS, MODES, may_read

__all__ = ["FederationService"]

log = logging.getLogger("aspen_federation")


def _pack(record: dict[str, Any]) -> bytes:
    return msgpack.packb(record, use_bin_type=True)


def _unpack(data: bytes) -> dict[str, Any]:
    return dict(msgpack.unpackb(data, raw=False))


class FederationService:
    """The federation state of one node (see the module docstring)."""

    def __init__(self, node: Any, config: dict[str, Any], discovery: Discovery | None) -> None:
        self.node = node
        self.config = config
        self.discovery = discovery
        secret_file = config.get("root_key_file")
        secret = Path(secret_file).read_bytes() if secret_file else str(node.token).encode()
        self._sealing = sealing_key(secret)
        self._key: ClusterKey | None = None
        self._document: IdentityDocument | None = None
        self.last_published = 0
        self.inbox = GossipInbox(self.trust_level)
        #: When this node last heard from each remote cluster (a verified announcement,
        #: gossip, a sync): node-local, bounded by MAX_PEERS.
        self.last_seen: dict[bytes, int] = {}
        #: The leader's gossip sender (:class:`aspen_federation.outbox.GossipOutbox`),
        #: set at startup; ``None`` sends nothing.
        self.outbox: Any = None
        #: This node's federation inbox (``host:port``), announced as ``http://…``.
        self.inbox_address = ""

    # -- identity ----------------------------------------------------------------------

    async def identity(self) -> tuple[ClusterKey, IdentityDocument]:
        """The cluster's key and document, created on first use (a follower's attempt
        raises ``not_leader`` with the leader's endpoint, so a client retries there)."""
        if self._key is not None and self._document is not None:
            return self._key, self._document
        got = await self.node.call("kv.range", {"key": keys.IDENTITY})
        if got["kvs"]:
            key, doc = unseal(got["kvs"][0]["value"], self._sealing)
        else:
            key = ClusterKey.generate()
            name = self.config.get("name") or f"aspen-{key.id[:8]}"
            doc = IdentityDocument.create(key, name, self.config.get("description") or "")
            await self.node.call(
                "kv.txn",
                {
                    "compare": [
                        {"key": keys.IDENTITY, "target": "create_revision", "op": "==", "value": 0}
                    ],
                    "success": [
                        {"put": {"key": keys.IDENTITY, "value": seal(key, doc, self._sealing)}}
                    ],
                },
            )
            got = await self.node.call("kv.range", {"key": keys.IDENTITY})
            key, doc = unseal(got["kvs"][0]["value"], self._sealing)
        self._key, self._document = key, doc
        return key, doc

    def endpoints(self) -> list[str]:
        """The endpoints this cluster announces: configured, else this node's."""
        configured = self.config.get("endpoints") or ""
        found = [e.strip() for e in configured.split(",") if e.strip()]
        return found or [str(self.node.endpoint)]

    async def announcement(self) -> Announcement:
        """This cluster's current announcement, freshly signed."""
        key, doc = await self.identity()
        shares = await self.public_shares()
        return Announcement.create(key, doc.name, self.announced_endpoints(), shares)

    def announced_endpoints(self) -> list[str]:
        """The RPC endpoints, then the federation inbox's URL (``[federation] inbox_url``,
        else ``http://`` + where it listens) when this node serves one."""
        inbox = self.config.get("inbox_url") or (
            f"http://{self.inbox_address}" if self.inbox_address else ""
        )
        return self.endpoints() + ([inbox] if inbox else [])

    def gossip(self, kind: str, subject: str, only: bytes = b"") -> None:
        """Queue gossip for trusted peers (nothing when this node sends none)."""
        if self.outbox is not None:
            self.outbox.enqueue(kind, subject, only)

    async def publish(self) -> int:
        """Publish the announcement into the DHT; how many nodes stored it."""
        discovery = self._require_discovery()
        key, _ = await self.identity()
        ann = await self.announcement()
        stored = await discovery.publish(key, ann.encode(check=True))
        self.last_published = int(time.time())
        return stored

    async def discover(self, public: bytes) -> Announcement:
        """The verified announcement of cluster ``public`` (``not_found`` if none)."""
        value = await self._require_discovery().lookup(public)
        if value is None:
            raise NotFoundError(f"no announcement found for cluster {key_id(public)}")
        try:
            announcement = Announcement.decode(value, expected_key=public)
        except AnnouncementError as exc:
            raise NotFoundError(f"cluster {key_id(public)}: {exc.message}") from None
        self.seen(public)
        return announcement

    def seen(self, public: bytes) -> None:
        """Note that a remote cluster was just heard from (verified)."""
        self.last_seen.pop(public, None)
        self.last_seen[public] = int(time.time())
        while len(self.last_seen) > limits.MAX_PEERS:
            del self.last_seen[next(iter(self.last_seen))]

    def _require_discovery(self) -> Discovery:
        if self.discovery is None:
            raise UnavailableError(
                "the DHT is off on this node: set [federation] dht_listen "
                "(ASPEN_FEDERATION_DHT_LISTEN)"
            )
        return self.discovery

    async def republish_loop(self) -> None:
        """On the leader, publish now and every ``republish_seconds``."""
        interval = float(self.config.get("republish_seconds") or limits.REPUBLISH_SECONDS)
        while True:
            if self.node.is_leader and self.discovery is not None:
                try:
                    await self.publish()
                except AspenError as exc:
                    log.info("federation: announcement not published: %s", exc)
                    await anyio.sleep(min(interval, limits.CONTACT_PING_SECONDS))
                    continue
                await anyio.sleep(interval)
            else:
                with contextlib.suppress(AspenError):
                    await self.identity()
                await anyio.sleep(min(interval, limits.CONTACT_PING_SECONDS))

    # -- trust ---------------------------------------------------------------------------

    async def set_trust(self, public: bytes, level: str, name: str = "") -> dict[str, Any]:
        """Record ``level`` for a remote cluster (and drop a pending request of it)."""
        if level not in LEVELS:
            raise InvalidArgumentError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        existing = await self.node.call("kv.range", {"key": keys.peer(public)})
        if not existing["kvs"]:
            await self._bound(keys.PEERS, limits.MAX_PEERS, "MAX_PEERS")
        record = {"level": level, "name": name, "updated": int(time.time())}
        if level == "blocked":
            await self.revoke_grants(public)
        await self.node.call(
            "kv.txn",
            {
                "success": [
                    {"put": {"key": keys.peer(public), "value": _pack(record)}},
                    {"delete": {"key": keys.request(public)}},
                ]
            },
        )
        return {"cluster_key": public.hex(), "key_id": key_id(public), **record}

    async def record_grant(self, public: bytes, token_id: str, resource: str) -> None:
        """Remember a read token granted to ``public`` (to revoke it if it is blocked)."""
        await self._bound(keys.grants(public), limits.MAX_GRANTS_PER_PEER, "MAX_GRANTS_PER_PEER")
        record = {"resource": resource, "granted": int(time.time())}
        await self.node.call(
            "kv.put", {"key": keys.grants(public) + token_id.encode(), "value": _pack(record)}
        )

    async def revoke_grants(self, public: bytes) -> int:
        """Revoke every token granted to ``public``; how many."""
        prefix = keys.grants(public)
        records, _, _ = await paging.collect(
            self.node.call, prefix, most=limits.MAX_GRANTS_PER_PEER, local=True
        )
        for kv in records:
            await self._revoke_grant(public, kv["key"], kv["key"][len(prefix) :].decode())
        return len(records)

    async def revoke_unshared(self, resource: str, mode: str, allowed: frozenset[bytes]) -> int:
        """Revoke the grants for ``resource`` held by clusters that may no longer read it
        under ``mode`` and ``allowed`` (an unshare, a narrowed allow-list); how many. The
        tokens are revoked in the cluster's revocation list, so they are refused at once."""
        records, _, _ = await paging.collect(
            self.node.call,
            keys.GRANTS,
            most=limits.MAX_PEERS * limits.MAX_GRANTS_PER_PEER,
            local=True,
        )
        revoked = 0
        for kv in records:
            if _unpack(kv["value"]).get("resource") != resource:
                continue
            holder, _, token_id = kv["key"][len(keys.GRANTS) :].decode().partition("/")
            public = bytes.fromhex(holder)
            if may_read(await self.trust_level(public), mode, allowed, public):
                continue
            await self._revoke_grant(public, kv["key"], token_id)
            revoked += 1
        return revoked

    async def _revoke_grant(self, holder: bytes, record_key: bytes, token_id: str) -> None:
        """Revoke one granted token, forget its record, tell its holder (gossip)."""
        with contextlib.suppress(NotFoundError):
            await self.node.call("token.revoke", {"id": token_id})
        await self.node.call("kv.delete", {"key": record_key})
        self.gossip("token.revoked", token_id, only=holder)

    async def trust_level(self, public: bytes) -> str:
        """A remote cluster's level (``public`` when unknown)."""
        got = await self.node.call("kv.range", {"key": keys.peer(public)})
        return str(_unpack(got["kvs"][0]["value"])["level"]) if got["kvs"] else "public"

    async def peers(self) -> list[dict[str, Any]]:
        """Every known remote cluster, with its trust level (at most MAX_PEERS)."""
        records, _, _ = await paging.collect(
            self.node.call, keys.PEERS, most=limits.MAX_PEERS, local=True
        )
        out = []
        for kv in records:
            public = bytes.fromhex(kv["key"][len(keys.PEERS) :].decode())
            out.append(
                {
                    "cluster_key": public.hex(),
                    "key_id": key_id(public),
                    **_unpack(kv["value"]),
                    "last_seen": self.last_seen.get(public, 0),
                }
            )
        return out

    async def request_trust(self, document: bytes) -> dict[str, Any]:
        """Queue a remote cluster's signed identity for an operator to accept or reject."""
        doc = IdentityDocument.decode(document)
        if await self.trust_level(doc.key) == "blocked":
            # answer as for any request: a blocked cluster learns nothing
            return {"queued": True}
        existing = await self.node.call("kv.range", {"key": keys.request(doc.key)})
        if not existing["kvs"]:
            await self._bound(keys.REQUESTS, limits.MAX_TRUST_REQUESTS, "MAX_TRUST_REQUESTS")
            await self._bound_bytes(
                keys.REQUESTS,
                limits.MAX_TRUST_REQUESTS,
                limits.MAX_TRUST_REQUEST_QUEUE_BYTES - len(document),
                "MAX_TRUST_REQUEST_QUEUE_BYTES",
            )
        record = {"document": document, "received": int(time.time())}
        await self.node.call("kv.put", {"key": keys.request(doc.key), "value": _pack(record)})
        return {"queued": True}

    async def requests(self) -> list[dict[str, Any]]:
        """Pending trust requests, each a verified identity document."""
        records, _, _ = await paging.collect(
            self.node.call, keys.REQUESTS, most=limits.MAX_TRUST_REQUESTS, local=True
        )
        out = []
        for kv in records:
            record = _unpack(kv["value"])
            out.append(
                {
                    **IdentityDocument.decode(record["document"]).to_json(),
                    "received": record["received"],
                }
            )
        return out

    async def answer_request(self, public: bytes, accept: bool) -> dict[str, Any]:
        """Accept (the cluster becomes ``trusted``) or reject (the request is dropped)."""
        got = await self.node.call("kv.range", {"key": keys.request(public)})
        if not got["kvs"]:
            raise NotFoundError(f"no pending trust request from cluster {key_id(public)}")
        doc = IdentityDocument.decode(_unpack(got["kvs"][0]["value"])["document"])
        if accept:
            return await self.set_trust(public, "trusted", doc.name)
        await self.node.call("kv.delete", {"key": keys.request(public)})
        return {"cluster_key": public.hex(), "rejected": True}

    # -- shares --------------------------------------------------------------------------

    async def set_share(self, resource: str, mode: str, allow: list[bytes]) -> dict[str, Any]:
        """Set a resource's federation mode (and allow-list)."""
        if mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if len(allow) > limits.MAX_ALLOW_LIST:
            raise InvalidArgumentError(f"allow-list over MAX_ALLOW_LIST ({limits.MAX_ALLOW_LIST})")
        existing = await self.node.call("kv.range", {"key": keys.share(resource)})
        if mode == "disabled":
            await self.node.call("kv.delete", {"key": keys.share(resource)})
        else:
            if not existing["kvs"]:
                await self._bound(keys.SHARES, limits.MAX_SHARES, "MAX_SHARES")
            record = {"mode": mode, "allow": allow, "updated": int(time.time())}
            await self.node.call("kv.put", {"key": keys.share(resource), "value": _pack(record)})
            if not existing["kvs"] and resource.startswith("forge:"):
                self.gossip("repo.created", resource.partition(":")[2])
        revoked = await self.revoke_unshared(resource, mode, frozenset(allow))
        return {
            "resource": resource,
            "mode": mode,
            "allow": [a.hex() for a in allow],
            "revoked": revoked,
        }

    async def share(self, resource: str) -> tuple[str, frozenset[bytes]]:
        """A resource's mode and allow-list (``disabled`` when not shared)."""
        got = await self.node.call("kv.range", {"key": keys.share(resource)})
        if not got["kvs"]:
            return "disabled", frozenset()
        record = _unpack(got["kvs"][0]["value"])
        return str(record["mode"]), frozenset(bytes(a) for a in record["allow"])

    async def blob_shares_of(self, pin: str) -> list[tuple[str, frozenset[bytes]]]:
        """Mode and allow-list of every blob share whose prefix ``pin`` starts with."""
        records, _, _ = await paging.collect(
            self.node.call, keys.share("blob:"), most=limits.MAX_SHARES, local=True
        )
        out = []
        for kv in records:
            prefix = bytes(kv["key"])[len(keys.share("blob:")) :].decode()
            if pin.startswith(prefix):
                record = _unpack(kv["value"])
                out.append((str(record["mode"]), frozenset(bytes(a) for a in record["allow"])))
        return out

    async def public_shares(self) -> list[str]:
        """The first resources shared publicly (for the announcement)."""
        records, _, _ = await paging.collect(
            self.node.call, keys.SHARES, most=limits.MAX_ANNOUNCED_SHARES * 4, local=True
        )
        out = []
        for kv in records:
            if _unpack(kv["value"])["mode"] == "public":
                kind, _, name = kv["key"][len(keys.SHARES) :].decode().partition("/")
                out.append(f"{kind}:{name}")
        return out[: limits.MAX_ANNOUNCED_SHARES]

    async def check_not_blocked(self, remote: bytes) -> None:
        """Refuse to deal with a blocked cluster at all."""
        if await self.trust_level(remote) == "blocked":
            raise NotFoundError(f"cluster {key_id(remote)} is blocked")

    async def check_read(self, remote: bytes, resource: str) -> None:
        """Raise ``unauthorized``-like ``not_found`` unless ``remote`` may read ``resource``
        (a refused cluster cannot tell a hidden resource from a missing one)."""
        level = await self.trust_level(remote)
        mode, allowed = await self.share(resource)
        if not may_read(level, mode, allowed, remote):
            raise NotFoundError(f"{resource} is not shared with cluster {key_id(remote)}")

    # -- helpers -------------------------------------------------------------------------

    async def _bound(self, prefix: bytes, most: int, name: str) -> None:
        records, truncated, _ = await paging.collect(self.node.call, prefix, most=most, local=True)
        if truncated or len(records) >= most:
            raise ResourceExhaustedError(f"over {name} ({most})")

    async def _bound_bytes(self, prefix: bytes, most: int, room: int, name: str) -> None:
        """Refuse when the values under ``prefix`` (at most ``most``) hold over ``room``
        bytes."""
        records, _, _ = await paging.collect(self.node.call, prefix, most=most, local=True)
        if sum(len(kv["value"]) for kv in records) > room:
            raise ResourceExhaustedError(f"over {name}")

    async def status(self) -> dict[str, Any]:
        """What ``aspen federation status --json`` prints."""
        key, doc = await self.identity()
        discovery = self.discovery
        return {
            "cluster_key": key.public.hex(),
            "key_id": key.id,
            "name": doc.name,
            "description": doc.description,
            "created": doc.created,
            "endpoints": self.endpoints(),
            "dht_listen": discovery.listen_port() if discovery else 0,
            "dht_nodes": discovery.node_count() if discovery else 0,
            "last_published": self.last_published,
            "peers": await self.peers(),
            "inbox": next((e for e in self.announced_endpoints() if "://" in e), ""),
            "gossip": {
                "sent": dict(self.outbox.stats) if self.outbox is not None else {},
                "refused": dict(self.inbox.refused),
            },
            "mirrors": await self._mirrors(),
        }

    async def _mirrors(self) -> list[dict[str, Any]]:
        """The periodic mirrors and their last results (see :mod:`mirror`)."""
        from aspen_federation.mirror import list_mirrors

        return await list_mirrors(self)
