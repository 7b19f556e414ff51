"""Pull sync of a Pijul channel from a remote cluster.

The origin (``federation.pijul_state``) signs the channel's state: its length and a
SHA-256 over its log (the change hashes in application order). The puller reads the log
with the ``pijul:read:REPO`` token the origin granted and checks it against that digest,
fetches the changes its copy lacks (``pijul.get_changes``, bounded per request; a change
the origin keeps in its blob store in pieces, ``federation.pijul_change``), stores
them with the local ``pijul.put_changes`` (which verifies every change against its hash)
after checking each is the change the signed log names, then appends them, in the
origin's order (a dependency order), to the channel ``remotes.<cluster id>.<channel>``
of the same repository (``pijul.append``: a compare-and-swap on the channel's length,
dependencies checked). Local channels are never touched. A tampered change or log stops
the sync before anything is appended; stored but unappended changes are invisible (a
channel is its log) and make a re-run cheaper; a re-run with nothing new appends nothing.

Visibility: more than ``PIJUL_SYNC_BATCH`` missing changes are appended in several
``pijul.append`` steps (one is one ``kv.txn`` of two puts per change, so aspen-pijul
bounds it by ``MAX_APPEND_HASHES`` under the core's ``MAX_TXN_OPS``; Pijul has no channel
rename to swap a staged channel in). Between steps the remote channel shows a **prefix of
the origin's log**, in the origin's order: every change's dependencies come before it, so
each prefix is a valid channel state, never a mix of two logs; the next step or the next
sync carries it on to the signed length.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aspen.errors import InvalidArgumentError, ResourceExhaustedError
from aspen_federation import limits
from aspen_federation.identity import key_id
from aspen_federation.signedstate import SignedState, SignedStateError

__all__ = ["change_piece", "local_channel", "log_digest", "pijul_state", "pull_pijul"]


def local_channel(cluster_id: str, channel: str) -> str:
    """The local channel a remote cluster's channel is synced into (``/`` is not allowed
    in a Pijul channel name)."""
    return f"remotes.{cluster_id}.{channel}"


def log_digest(hashes: list[str]) -> str:
    """The SHA-256 over a channel's log."""
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


async def _log(call: Any, repo: str, channel: str, most: int) -> list[str]:
    """A channel's log (its first ``most`` hashes), page by page."""
    out: list[str] = []
    while len(out) < most:
        page = await call(
            "pijul.log",
            {
                "repo": repo,
                "channel": channel,
                "start": len(out),
                "limit": min(limits.PIJUL_LOG_PAGE, most - len(out)),
            },
        )
        out += [str(h) for h in page["hashes"]]
        if len(out) >= int(page["length"]) or not page["hashes"]:
            break
    return out[:most]


async def pijul_state(service: Any, resource: str, channel: str) -> SignedState:
    """The origin side: ``channel`` of the shared repository, signed."""
    from aspen_federation.sync import require_shared

    await require_shared(service, resource)
    repo = resource.partition(":")[2]
    hashes = await _log(service.node.call, repo, channel, limits.PIJUL_SYNC_MAX_CHANGES + 1)
    if len(hashes) > limits.PIJUL_SYNC_MAX_CHANGES:
        raise ResourceExhaustedError(
            f"channel over PIJUL_SYNC_MAX_CHANGES ({limits.PIJUL_SYNC_MAX_CHANGES}) changes"
        )
    key, _ = await service.identity()
    state = {"channel": channel, "length": len(hashes), "digest": log_digest(hashes)}
    return SignedState.create(key, resource, state)


async def _fetch_changes(client: Any, repo: str, hashes: list[str]) -> list[bytes]:
    """The bytes of ``hashes`` from the origin (it may answer fewer per request; a change
    it keeps in its blob store is read in pieces with ``federation.pijul_change``)."""
    out: list[bytes] = []
    while len(out) < len(hashes):
        want = hashes[len(out) : len(out) + limits.PIJUL_SYNC_BATCH]
        got = (await client.call("pijul.get_changes", {"repo": repo, "hashes": want}))["changes"]
        if not got:
            raise InvalidArgumentError("the origin answered no change")
        for item in got:
            if isinstance(item, bytes):
                out.append(item)
            else:
                out.append(await _fetch_large(client, repo, hashes[len(out)], int(item["size"])))
    return out


async def _fetch_large(client: Any, repo: str, change: str, size: int) -> bytes:
    """A change the origin keeps in its blob store, in ``PIJUL_CHANGE_PIECE_BYTES`` pieces."""
    if size > limits.PIJUL_MAX_CHANGE_BYTES:
        raise ResourceExhaustedError(
            f"change {change} over PIJUL_MAX_CHANGE_BYTES ({limits.PIJUL_MAX_CHANGE_BYTES})"
        )
    data = bytearray()
    while len(data) < size:
        params = {"kind": "pijul", "name": repo, "hash": change, "offset": len(data)}
        piece = bytes((await client.call("federation.pijul_change", params))["data"])
        if not piece:
            raise InvalidArgumentError(f"the origin answered no bytes of change {change}")
        data += piece
    if len(data) != size:
        raise InvalidArgumentError(f"change {change}: {len(data)} bytes, not {size}")
    return bytes(data)


async def change_piece(service: Any, resource: str, change: str, offset: int) -> dict[str, Any]:
    """The origin side: up to ``PIJUL_CHANGE_PIECE_BYTES`` of a change of the shared
    repository, from ``offset`` (read from wherever the repository keeps it)."""
    from aspen_federation.sync import require_shared

    await require_shared(service, resource)
    repo = resource.partition(":")[2]
    node = service.node
    item = (await node.call("pijul.get_changes", {"repo": repo, "hashes": [change]}))["changes"]
    if not item:
        raise InvalidArgumentError(f"change {change} is not readable")
    if isinstance(item[0], bytes):
        data = item[0]
        return {"data": data[offset : offset + limits.PIJUL_CHANGE_PIECE_BYTES], "size": len(data)}
    size = int(item[0]["size"])
    length = max(0, min(limits.PIJUL_CHANGE_PIECE_BYTES, size - offset))
    pieces = [p async for p in node.blobs.open(str(item[0]["blob"]), offset, length)]
    return {"data": b"".join(pieces), "size": size}


async def _store(service: Any, repo: str, hashes: list[str], data: list[bytes]) -> None:
    """Store the fetched changes with the local ``pijul.put_changes`` (which verifies each
    against its hash), checking each is the change the signed log names: small ones
    inline, ``PIJUL_PUT_REQUEST_BYTES`` per request, larger ones through the blob store."""
    call = service.node.call

    async def put(params: dict[str, Any], expected: list[str]) -> None:
        stored = (await call("pijul.put_changes", {"repo": repo, **params}))["hashes"]
        if list(stored) != expected:
            raise SignedStateError("a fetched change is not the change its log names")

    batch: list[tuple[str, bytes]] = []
    size = 0
    for change, body in zip(hashes, data, strict=True):
        if len(body) > limits.PIJUL_PUT_REQUEST_BYTES:
            ref = await service.node.blobs.put(body)
            await put({"blobs": [ref.hash]}, [change])
            continue
        if batch and size + len(body) > limits.PIJUL_PUT_REQUEST_BYTES:
            await put({"changes": [b for _, b in batch]}, [h for h, _ in batch])
            batch, size = [], 0
        batch.append((change, body))
        size += len(body)
    if batch:
        await put({"changes": [b for _, b in batch]}, [h for h, _ in batch])


async def pull_pijul(
    service: Any, remote: bytes, resource: str, channel: str, token: str, endpoint: str
) -> dict[str, Any]:
    """Sync ``channel`` of the shared Pijul repository ``resource`` of cluster ``remote``."""
    import aspen

    call = service.node.call
    repo = resource.partition(":")[2]
    cluster_id = key_id(remote)
    target = local_channel(cluster_id, channel)
    async with aspen.aconnect(endpoint, token=token) as client:
        wire = await client.call(
            "federation.pijul_state", {"kind": "pijul", "name": repo, "channel": channel}
        )
        signed = SignedState.verified(wire, key=remote, resource=resource)
        service.seen(remote)
        state = signed.state
        if state.get("channel") != channel:
            raise SignedStateError(f"signed state is for channel {state.get('channel')!r}")
        length = int(state["length"])
        theirs = await _log(client.call, repo, channel, length)
        if len(theirs) != length or log_digest(theirs) != state["digest"]:
            raise SignedStateError(f"the log of {resource}:{channel} does not match its signature")
        ours = await _log(call, repo, target, limits.PIJUL_SYNC_MAX_CHANGES + 1)
        if theirs[: len(ours)] != ours:
            raise InvalidArgumentError(
                f"channel {target} is not a prefix of the origin's {channel}: sync refused"
            )
        missing = theirs[len(ours) :]
        for start in range(0, len(missing), limits.PIJUL_SYNC_BATCH):
            part = missing[start : start + limits.PIJUL_SYNC_BATCH]
            await _store(service, repo, part, await _fetch_changes(client, repo, part))
    appended = len(ours)
    for start in range(0, len(missing), limits.PIJUL_SYNC_BATCH):
        part = missing[start : start + limits.PIJUL_SYNC_BATCH]
        answer = await call(
            "pijul.append", {"repo": repo, "channel": target, "expected": appended, "hashes": part}
        )
        appended = int(answer["length"])
    return {
        "resource": resource,
        "cluster_key": remote.hex(),
        "channel": target,
        "length": appended,
        "appended": len(missing),
    }
