"""Capability tokens on a real 3-node cluster: every line of issue 12's interface contract,
a follower-forwarded write, and revocation seen on all three nodes."""

from __future__ import annotations

import json

import pytest

import aspen
from aspen.errors import AspenError, UnauthorizedError
from aspen.testing import LocalCluster, free_port, wait_for
from aspen.testing.cli import CliInvoker

pytestmark = pytest.mark.slow

#: Seconds a condition on the cluster may take.
DEADLINE = 30.0


def _cli(cluster: LocalCluster, token: str, endpoint: str | None = None) -> CliInvoker:
    """The real ``aspen`` CLI (in-process) with ``token`` as ASPEN_TOKEN."""
    env = {"ASPEN_ENDPOINT": endpoint or cluster.endpoints, "ASPEN_TOKEN": token}
    return CliInvoker(None, {**env, "ASPEN_LOAD_PLUGINS": ""})


def _refused_everywhere(cluster: LocalCluster, token: str) -> bool:
    """Whether every node refuses ``token`` (at hello or on a read)."""
    for i in range(1, cluster.nodes + 1):
        try:
            with aspen.connect(cluster.client_endpoint(i), token=token, timeout=5) as c:
                c.kv.get("/app/x", serializable=True)
            return False
        except UnauthorizedError as exc:
            assert "revoked" in exc.message
    return True


def test_token_contract_on_three_nodes(cluster: LocalCluster) -> None:
    root = _cli(cluster, cluster.token)
    made = root(
        "token", "create", "--cap", "kv:read:/app/", "--cap", "kv:write:/app/",
        "--ttl", "10m", "--name", "app", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    created = json.loads(made.output)
    assert set(created) >= {"id", "token"}
    scoped = _cli(cluster, created["token"])

    # the token works as ASPEN_TOKEN: a put under /app/ succeeds, others name the capability
    assert scoped("kv", "put", "/app/x", "1").exit_code == 0
    other = scoped("kv", "put", "/other", "1")
    assert other.exit_code != 0 and "kv:write:/other" in other.output
    member = cluster.node_id(1)
    removed = scoped("cluster", "remove", member)
    assert removed.exit_code != 0 and "cluster:admin" in removed.output

    # attenuation is offline: the endpoint is a closed port
    offline = _cli(cluster, "", endpoint=f"127.0.0.1:{free_port()}")
    narrowed = offline("token", "attenuate", created["token"], "--cap", "kv:read:/app/")
    assert narrowed.exit_code == 0, narrowed.output
    reader_token = narrowed.output.strip()
    reader = _cli(cluster, reader_token)
    refused = reader("kv", "put", "/app/y", "1")
    assert refused.exit_code != 0 and "kv:write:/app/y" in refused.output
    got = reader("kv", "get", "/app/x")
    assert got.exit_code == 0 and "1" in got.output

    # a write through a follower is forwarded with the caller's authority
    leader = cluster.leader_index()
    follower = next(i for i in range(1, 4) if i != leader)
    with aspen.connect(cluster.client_endpoint(follower), token=created["token"]) as c:
        c.kv.put("/app/via-follower", b"f")
        with pytest.raises(UnauthorizedError, match="kv:write:/other"):
            c.kv.put("/other", b"f")
    with cluster.client() as c:
        assert c.kv.get("/app/via-follower").value == b"f"
        assert c.kv.get("/other") is None

    # a token created by the scoped token for less than it holds (and only that)
    child_made = scoped("token", "create", "--cap", "kv:read:/app/x", "--json")
    assert child_made.exit_code == 0, child_made.output
    child = json.loads(child_made.output)
    wider = scoped("token", "create", "--cap", "kv:read:/", "--json")
    assert wider.exit_code != 0 and "kv:read:/" in wider.output

    # list shows issued tokens, never their text
    listed = root("token", "list", "--json")
    assert listed.exit_code == 0
    tokens = {t["id"]: t for t in json.loads(listed.output)}
    assert {created["id"], child["id"]} <= set(tokens)
    assert created["token"] not in listed.output and child["token"] not in listed.output
    assert tokens[child["id"]]["ancestors"] == [created["id"]]

    # revoke: the token, its attenuation and the token it created, on every node
    revoked = root("token", "revoke", created["id"])
    assert revoked.exit_code == 0, revoked.output
    for token in (created["token"], reader_token, child["token"]):
        wait_for(
            lambda token=token: _refused_everywhere(cluster, token),
            timeout=DEADLINE,
            message="the revoked token is refused on every node",
        )
    listed = json.loads(root("token", "list", "--json").output)
    assert all(t["revoked"] for t in listed if t["id"] in (created["id"], child["id"]))

    # the denials and the create/revoke are in the audit log
    audit = root("token", "audit", "--json")
    assert audit.exit_code == 0
    events = {(r["event"], r["token"]) for r in json.loads(audit.output)}
    assert ("revoke", created["id"]) in events or ("denied", created["id"]) in events


def test_bad_tokens_are_refused_with_typed_errors(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        made = c.call("token.create", {"capabilities": ["kv:read:/"], "ttl": 1})
    text = made["token"]
    head, body = text.rsplit(".", 1)
    forged = head + "." + body[:60] + ("A" if body[60] != "A" else "B") + body[61:]
    other_cluster = "aspen1c.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA." + text.split(".", 2)[2]
    cases = {
        "forged": (forged, "signature"),
        "truncated": (text[: len(text) - 40], "signature|malformed"),
        "expired": (text, "expired"),
    }
    wait_for(lambda: _expired(cluster, text), timeout=DEADLINE, message="the 1 s token expires")
    for token, pattern in cases.values():
        with pytest.raises(UnauthorizedError, match=pattern):
            _get(cluster, token)
    # another cluster's CA key: the client's TLS pin already refuses the server
    with pytest.raises(AspenError):
        _get(cluster, other_cluster)
    bad_cap = _cli(cluster, cluster.token)("token", "create", "--cap", "kv:read:/a b")
    assert bad_cap.exit_code != 0 and "scope" in bad_cap.output
    with cluster.client() as c:  # the node is unharmed
        c.kv.put("/still", b"up")


def _get(cluster: LocalCluster, token: str) -> None:
    """Read a key on node 1 with ``token``."""
    with aspen.connect(cluster.client_endpoint(1), token=token, timeout=5) as c:
        c.kv.get("/x")


def _expired(cluster: LocalCluster, token: str) -> bool:
    """Whether node 1 refuses ``token`` as expired."""
    try:
        _get(cluster, token)
    except UnauthorizedError as exc:
        return "expired" in exc.message
    return False
