"""Periodic mirrors: a remote resource synced again every so often, by the leader only.

A mirror is a record in the cluster (``/_aspen/federation/mirrors/<id>``): the remote
cluster's key, the resource (kind and name), the endpoint if one was given, the interval,
the read token the remote granted (sealed with the same key as the cluster identity),
when it is next due and the last result. Every node runs :func:`mirror_loop`; only the
Raft leader acts, and since the schedule lives in KV a new leader carries on where the old
one stopped. A failing mirror backs off (the interval doubled per failure in a row, up to
``MIRROR_MAX_BACKOFF_SECONDS``); ``status --json`` lists every mirror with its last result.

Mirrors also react to gossip (:class:`MirrorWake`): when the origin cluster tells us the
resource changed (the journal event ``federation.gossip``: ``ref.updated`` /
``repo.created`` of a mirrored repository, ``channel.updated`` of a mirrored channel,
``blob.available`` of a pin under a mirrored prefix), the leader runs that mirror after
``MIRROR_GOSSIP_DEBOUNCE_SECONDS`` (a burst is one run) instead of waiting for its
interval; a failing mirror still waits out its back-off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from typing import Any

import anyio
import msgpack

from aspen.errors import AspenError, InvalidArgumentError, NotFoundError
from aspen.kv import paging
from aspen_federation import limits
from aspen_federation.identity import key_id

__all__ = [
    "MIRRORS",
    "MirrorWake",
    "add_mirror",
    "backoff",
    "gossip_matches",
    "list_mirrors",
    "mirror_id",
    "mirror_loop",
    "remove_mirror",
    "run_due",
    "runs_now",
]

log = logging.getLogger("aspen_federation")

#: ``mirrors/<id>`` -> a mirror's record.
MIRRORS = b"/_aspen/federation/mirrors/"
_AAD = b"aspen-federation/mirror-token/v1"
#: What a ``federation.gossip`` event says: ``(sender key hex, kind, subject)``.
Gossip = tuple[str, str, str]


def mirror_id(remote: bytes, kind: str, name: str) -> str:
    """A mirror's id: the same remote resource is one mirror."""
    return hashlib.sha256(f"{remote.hex()}\0{kind}\0{name}".encode()).hexdigest()[:16]


def backoff(every: float, failures: int) -> float:
    """Seconds until the next try after ``failures`` failures in a row."""
    if failures <= 0:
        return every
    return float(min(every * 2 ** min(failures, 32), limits.MIRROR_MAX_BACKOFF_SECONDS))


def _seal(token: str, sealing: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce + AESGCM(sealing).encrypt(nonce, token.encode(), _AAD)


def _unseal(blob: bytes, sealing: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(sealing).decrypt(blob[:12], blob[12:], _AAD).decode()


def _pack(record: dict[str, Any]) -> bytes:
    return msgpack.packb(record, use_bin_type=True)


def _public(mid: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as listed: no token."""
    shown = {k: v for k, v in record.items() if k != "token"}
    return {"id": mid, **shown, "key_id": key_id(bytes.fromhex(record["key"]))}


async def add_mirror(
    service: Any,
    remote: bytes,
    kind: str,
    name: str,
    token: str,
    endpoint: str | None,
    every: float,
) -> dict[str, Any]:
    """Add (or replace) the mirror of ``kind`` ``name`` of cluster ``remote``; due now."""
    if every < limits.MIRROR_MIN_SECONDS:
        raise InvalidArgumentError(
            f"--every under MIRROR_MIN_SECONDS ({limits.MIRROR_MIN_SECONDS})"
        )
    mid = mirror_id(remote, kind, name)
    key = MIRRORS + mid.encode()
    existing = await service.node.call("kv.range", {"key": key})
    if not existing["kvs"]:
        await service._bound(MIRRORS, limits.MAX_MIRRORS, "MAX_MIRRORS")
    record = {
        "key": remote.hex(),
        "kind": kind,
        "name": name,
        "endpoint": endpoint or "",
        "every": float(every),
        "token": _seal(token, service._sealing),
        "next_run": 0.0,
        "failures": 0,
        "last": {},
    }
    await service.node.call("kv.put", {"key": key, "value": _pack(record)})
    return _public(mid, record)


async def _records(service: Any) -> list[tuple[str, dict[str, Any], int]]:
    """``(id, record, mod_revision)`` of every mirror."""
    found, _, _ = await paging.collect(
        service.node.call, MIRRORS, most=limits.MAX_MIRRORS, local=True
    )
    return [
        (
            bytes(kv["key"])[len(MIRRORS) :].decode(),
            dict(msgpack.unpackb(kv["value"], raw=False)),
            int(kv["mod_revision"]),
        )
        for kv in found
    ]


async def list_mirrors(service: Any) -> list[dict[str, Any]]:
    """Every mirror with its schedule and last result (never its token)."""
    return [_public(mid, record) for mid, record, _ in await _records(service)]


async def remove_mirror(service: Any, mid: str) -> dict[str, Any]:
    """Remove mirror ``mid`` (``not_found`` if there is none)."""
    got = await service.node.call("kv.delete", {"key": MIRRORS + mid.encode()})
    if not got.get("deleted"):
        raise NotFoundError(f"no mirror {mid}")
    return {"id": mid, "removed": True}


async def _run_one(service: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Sync what ``record`` names, as ``federation.sync`` would."""
    from aspen_federation.rpc import parse_resource
    from aspen_federation.sync import pull_forge, pull_resource

    remote = bytes.fromhex(record["key"])
    token = _unseal(bytes(record["token"]), service._sealing)
    endpoint = record["endpoint"] or None
    kind, name, channel = record["kind"], record["name"], ""
    if kind == "pijul":
        from aspen_federation.kinds import split_channel

        name, channel = split_channel(name)
    resource = parse_resource(kind, name)
    if kind == "forge":
        return await pull_forge(service, remote, resource, token, endpoint)
    return await pull_resource(service, remote, resource, channel, token, endpoint)


async def run_due(
    service: Any, now: float | None = None, poked: frozenset[Gossip] = frozenset()
) -> int:
    """Run every mirror that is due, or that ``poked`` gossip is about and is not backing
    off after a failure, recording each result; how many ran."""
    ran = 0
    for mid, record, revision in await _records(service):
        moment = time.time() if now is None else now
        if not runs_now(record, moment, poked):
            continue
        ran += 1
        try:
            result = await _run_one(service, record)
            record["failures"] = 0
            record["last"] = {"at": int(time.time()), "ok": True, "result": _summary(result)}
        except (AspenError, OSError, ValueError) as exc:
            record["failures"] = int(record["failures"]) + 1
            message = getattr(exc, "message", str(exc))
            record["last"] = {"at": int(time.time()), "ok": False, "error": str(message)[:500]}
            log.info("federation: mirror %s failed: %s", mid, message)
        record["next_run"] = time.time() + backoff(float(record["every"]), record["failures"])
        key = MIRRORS + mid.encode()
        # not if it was removed or replaced meanwhile
        compare = {"key": key, "target": "mod_revision", "op": "==", "value": revision}
        await service.node.call(
            "kv.txn",
            {
                "compare": [compare],
                "success": [{"put": {"key": key, "value": _pack(record)}}],
                "failure": [],
            },
        )
    return ran


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The small part of a sync's answer a mirror keeps."""
    keep = ("refs", "revision", "keys", "blobs", "fetched", "length", "appended")
    out = {k: result[k] for k in keep if k in result}
    if isinstance(out.get("refs"), dict):
        out["refs"] = len(out["refs"])
    return out


def runs_now(record: dict[str, Any], now: float, poked: frozenset[Gossip]) -> bool:
    """Whether a mirror runs now: it is due, or gossip says its resource changed and it
    is not backing off after a failure."""
    if record["next_run"] <= now:
        return True
    return record["failures"] == 0 and any(gossip_matches(record, g) for g in poked)


def gossip_matches(record: dict[str, Any], gossip: Gossip) -> bool:
    """Whether ``gossip`` from the origin says the mirrored resource changed."""
    sender, kind, subject = gossip
    if sender != record["key"]:
        return False
    name = record["name"]
    if record["kind"] == "forge":
        return kind in ("ref.updated", "repo.created") and subject == name
    if record["kind"] == "pijul":
        return kind == "channel.updated" and subject == name
    if record["kind"] == "blob":
        return kind == "blob.available" and subject.startswith(name)
    return False


class MirrorWake:
    """Gossip heard on the leader that may make a mirror run early (in memory, bounded by
    ``MIRROR_GOSSIP_PENDING``; a lost one only means waiting for the interval)."""

    def __init__(self) -> None:
        self.pending: set[Gossip] = set()
        self._event = anyio.Event()

    def on_event(self, event: dict[str, Any]) -> None:
        """Note a ``federation.gossip`` journal event."""
        payload = event.get("payload")
        if not isinstance(payload, dict) or len(self.pending) >= limits.MIRROR_GOSSIP_PENDING:
            return
        gossip = (str(payload.get("sender")), str(payload.get("kind")), str(payload.get("subject")))
        self.pending.add(gossip)
        self._event.set()

    async def next(self, timeout: float) -> frozenset[Gossip]:
        """The gossip heard within ``timeout`` (collected for the debounce once any came)."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        if self._event.is_set():
            await anyio.sleep(limits.MIRROR_GOSSIP_DEBOUNCE_SECONDS)
        heard, self.pending = frozenset(self.pending), set()
        self._event = anyio.Event()
        return heard


async def mirror_loop(service: Any) -> None:
    """On the leader, run the mirrors that are due every ``MIRROR_POLL_SECONDS``, and
    those gossip is about soon after it arrives."""
    from aspen_federation.follow import follow_on_leader
    from aspen_federation.inbox import GOSSIP_EVENT

    wake = MirrorWake()
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_on_leader, service.node, [GOSSIP_EVENT], wake.on_event)
        while True:
            poked = await wake.next(limits.MIRROR_POLL_SECONDS)
            if not service.node.is_leader:
                continue
            with contextlib.suppress(AspenError):
                await run_due(service, poked=poked)
