"""Helpers the federation tests share: reading a synced KV prefix, a sync in a thread."""

from __future__ import annotations

import threading
from typing import Any

import aspen
from aspen.errors import NotFoundError


def synced_kv(cluster: Any, origin: str, prefix: str) -> dict[bytes, bytes] | None:
    """The KV prefix as last synced from cluster ``origin`` (hex key), through
    ``federation.kv_read`` page by page (None: nothing synced yet)."""
    out: dict[bytes, bytes] = {}
    params: dict[str, Any] = {"key": origin, "name": prefix}
    with cluster.client() as c:
        while True:
            try:
                got = c.call("federation.kv_read", params)
            except NotFoundError:
                return None
            out.update({bytes(kv["key"]): bytes(kv["value"]) for kv in got["kvs"]})
            if not got["more"]:
                return out
            params["after"] = bytes(got["kvs"][-1]["key"])


def sync_in_thread(
    cluster: Any, index: int, params: dict[str, Any]
) -> tuple[threading.Thread, list[Any]]:
    """Start ``federation.sync`` with ``params`` on node ``index`` of ``cluster`` in a
    thread (to kill that node under it); the thread and the list its outcome (the answer
    or the exception) lands in."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            with aspen.connect(
                cluster.client_endpoint(index), token=cluster.token, timeout=120
            ) as c:
                outcome.append(c.call("federation.sync", params))
        except Exception as exc:  # the node is killed under it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome
