"""Push, pull and clone between a working copy and a cluster repository (``pijul.*``).

Both directions send the set difference of changes in the sender's application order
(which is a dependency order) and verify every change's bytes against its hash on
receipt. A change over ``PUSH_INLINE_BYTES`` travels through the blob store (put by the
client, then named in ``pijul.put_changes``), as it comes back on a pull. A push appends
to the remote channel by compare-and-swap on its length and starts again from a fresh
read if that fails, so an interrupted push (a leader killed, a connection lost) is
simply run again.
"""

from __future__ import annotations

from typing import Any

from aspen.errors import UnavailableError
from aspen_pijul import limits
from aspen_pijul.changestore import check_size
from aspen_pijul.model.channel import Channel
from aspen_pijul.repo import Repo

__all__ = ["pull", "push", "remote_log"]


def remote_log(client: Any, repo: str, channel: str) -> list[str]:
    """Every hash of the remote channel, in its application order."""
    out: list[str] = []
    while True:
        page = client.call("pijul.log", {"repo": repo, "channel": channel, "start": len(out)})
        out += page["hashes"]
        if len(out) >= page["length"] or not page["hashes"]:
            return out


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _fetched(client: Any, item: Any) -> bytes:
    """A change of a ``pijul.get_changes`` answer: its bytes, or read from its blob."""
    if isinstance(item, bytes):
        return item
    check_size(int(item["size"]))
    return bytes(client.blobs.get_bytes(item["blob"]))


def _put_blob(client: Any, repo: str, data: bytes) -> str:
    """Put a change's bytes as a blob; its hash. At the cluster's replica count if it can,
    else (a member is down) on a majority of the voters (``pijul.quorum``)."""
    try:
        return str(client.blobs.put(data).hash)
    except UnavailableError:
        replicas = client.call("pijul.quorum", {"repo": repo})["replicas"]
        return str(client.blobs.put(data, replicas=replicas).hash)


def push(local: Repo, client: Any, repo: str, channel: str, remote_channel: str) -> int:
    """Send the changes of local ``channel`` the remote channel lacks; returns how many."""
    order = local.log(channel)
    theirs = remote_log(client, repo, remote_channel)
    have = set(theirs)
    missing = [h for h in order if h not in have]
    batch: list[bytes] = []
    size = 0
    for h in missing:
        data = local.store.get(h).to_bytes()
        if len(data) > limits.PUSH_INLINE_BYTES:
            digest = _put_blob(client, repo, data)
            client.call("pijul.put_changes", {"repo": repo, "blobs": [digest]})
            continue
        if batch and size + len(data) > limits.MAX_TRANSFER_BYTES:
            client.call("pijul.put_changes", {"repo": repo, "changes": batch})
            batch, size = [], 0
        batch.append(data)
        size += len(data)
    if batch:
        client.call("pijul.put_changes", {"repo": repo, "changes": batch})
    length = len(theirs)
    for part in _batches(missing, limits.MAX_APPEND_HASHES):
        r = client.call(
            "pijul.append",
            {"repo": repo, "channel": remote_channel, "expected": length, "hashes": part},
        )
        length = r["length"]
    return len(missing)


def pull(local: Repo, client: Any, repo: str, channel: str, remote_channel: str) -> Channel:
    """Apply the remote channel's changes local ``channel`` lacks; returns the channel."""
    ch = local.channel(channel)
    theirs = remote_log(client, repo, remote_channel)
    need = [h for h in theirs if h not in local.store]
    i = 0
    while i < len(need):
        got = client.call("pijul.get_changes", {"repo": repo, "hashes": need[i:]})["changes"]
        for h, item in zip(need[i:], got, strict=False):
            local.store.put_bytes(_fetched(client, item), h)  # verified against h
        i += len(got)
    for h in theirs:
        ch.apply(h)
    return ch
