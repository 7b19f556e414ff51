"""Leases and capability tokens on a real node: ``lease:write`` lets a scoped token revoke
or keep alive only leases whose every key it may write, and ``lease.ttl`` only leases whose
every key it may read (docs/tokens.md, Leases); the root token is unchanged."""

from __future__ import annotations

from typing import Any

import pytest

import aspen
from aspen.errors import UnauthorizedError
from aspen.node.runner import NodeThread

APP = ["lease:write", "lease:read", "kv:write:/app/", "kv:read:/app/"]
OTHER = ["lease:write", "lease:read", "kv:write:/other/", "kv:read:/other/"]


def _token(node: NodeThread, caps: list[str]) -> str:
    """A capability token of ``caps``, created with the root token."""
    with node.client() as c:
        return str(c.call("token.create", {"capabilities": caps})["token"])


def _lease_with(client: Any, *keys: str) -> int:
    """A lease granted by ``client`` with ``keys`` attached (each put by ``client``)."""
    lease = client.lease.grant(60)
    for key in keys:
        client.kv.put(key, b"v", lease=lease.id)
    return int(lease.id)


def test_scoped_token_acts_only_on_leases_within_its_prefixes(running_node: NodeThread) -> None:
    app, other = _token(running_node, APP), _token(running_node, OTHER)
    with (
        aspen.connect(running_node.endpoint, token=app) as a,
        aspen.connect(running_node.endpoint, token=other) as o,
    ):
        theirs = _lease_with(o, "/other/x", "/other/y")
        for call, capability in (
            (lambda: a.lease.revoke(theirs), "kv:write:/other/x"),
            (lambda: a.lease.keepalive(theirs), "kv:write:/other/x"),
            (lambda: a.lease.ttl(theirs, keys=True), "kv:read:/other/x"),
        ):
            with pytest.raises(UnauthorizedError) as info:
                call()
            assert info.value.details["capability"] == capability
            assert capability in info.value.message
        assert o.kv.get("/other/x").value == b"v"  # nothing was deleted

        # a lease mixing both prefixes: neither scoped token may revoke it, root may
        mixed = _lease_with(o, "/other/z")
        a.kv.put("/app/z", b"v", lease=mixed)
        with pytest.raises(UnauthorizedError):
            a.lease.revoke(mixed)
        with pytest.raises(UnauthorizedError) as info:
            o.lease.revoke(mixed)
        assert info.value.details["capability"] == "kv:write:/app/z"
        assert a.kv.get("/app/z").value == b"v" and o.kv.get("/other/z").value == b"v"

        # its own leases: keepalive, ttl and revoke work (an empty lease too)
        mine = _lease_with(a, "/app/x", "/app/y")
        assert a.lease.keepalive(mine) > 0
        assert sorted(a.lease.ttl(mine, keys=True).keys) == [b"/app/x", b"/app/y"]
        a.lease.revoke(mine)
        assert a.kv.get("/app/x") is None
        a.lease.revoke(a.lease.grant(60).id)
        o.lease.revoke(theirs)
        assert o.kv.get("/other/x") is None

    with running_node.client() as root:
        root.lease.revoke(mixed)
        assert root.kv.get("/app/z") is None and root.kv.get("/other/z") is None


def test_token_created_from_a_scoped_token_is_bounded_the_same(
    running_node: NodeThread,
) -> None:
    app = _token(running_node, APP)
    with aspen.connect(running_node.endpoint, token=app) as a:
        narrow = a.call("token.create", {"capabilities": ["lease:write", "kv:write:/app/narrow/"]})[
            "token"
        ]
        lease = _lease_with(a, "/app/wide")
    with aspen.connect(running_node.endpoint, token=narrow) as n:
        with pytest.raises(UnauthorizedError) as info:
            n.lease.revoke(lease)
        assert info.value.details["capability"] == "kv:write:/app/wide"
