"""Joining a cluster over the peer port: real TLS, a pinned CA key, the join secret."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_transport_peer import Node, cluster, running, wait_until

from aspen import errors
from aspen.transport.identity import NodeIdentity, load_or_create_identity
from aspen.transport.join import JoinService, init_cluster, load_join_token, request_join
from aspen.transport.peer import PeerTransport
from aspen.transport.tls import ClusterCA, NodeCredentials, load_node_credentials
from aspen.transport.tokens import ClusterToken, new_cluster_token, parse_cluster_token


@pytest.fixture(params=["uvloop", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Joins run on the node's loop: asyncio, on uvloop or not."""
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


def member_with_joins(
    data_dir: Path,
) -> tuple[Node, JoinService, list[tuple[str, dict[str, str]]]]:
    """A founding member made by ``init_cluster`` that serves joins and admits everyone."""
    init = init_cluster(data_dir, ["127.0.0.1:0"])
    node = Node(init.credentials, {init.credentials.node_id})
    admitted: list[tuple[str, dict[str, str]]] = []

    async def admit(node_id: str, addresses: dict[str, str]) -> list[dict[str, Any]]:
        admitted.append((node_id, addresses))
        node.members.add(node_id)
        return [{"id": m} for m in sorted(node.members)]

    service = JoinService(init.credentials, init.join_token, init.root_token, admit)
    node.make(on_join=service)
    return node, service, admitted


@pytest.mark.anyio
async def test_join_grant_lets_the_new_node_talk_as_a_member(tmp_path: Path) -> None:
    a, service, admitted = member_with_joins(tmp_path / "a")
    join_token = load_join_token(tmp_path / "a")
    assert join_token is not None
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    me = load_or_create_identity(new_dir)
    assert a.transport is not None
    async with running(a.transport):
        mine = {"peer": "127.0.0.1:7100", "client": "127.0.0.1:7101"}
        grant = await request_join(join_token, a.address, me, mine)
        assert grant.node_id == me.node_id and grant.cluster_id == a.creds.cluster_id
        assert admitted == [(me.node_id, mine)]
        assert grant.members == [{"id": m} for m in sorted({a.id, me.node_id})]
        assert grant.root_token == (tmp_path / "a" / "root-token").read_text().strip()
        grant.save(new_dir)
        creds = load_node_credentials(new_dir, me)
        assert creds is not None and creds.ca.private_key is not None  # may issue certs too
        assert load_join_token(new_dir) == join_token
        joined = Node(creds, {a.id})
        t_new = joined.make()
        async with running(t_new):
            t_new.send(a.id, a.address, {"from": "new"})
            await wait_until(lambda: a.received == [(me.node_id, {"from": "new"})])
            a.transport.send(me.node_id, joined.address, {"to": "new"})
            await wait_until(lambda: joined.received == [(a.id, {"to": "new"})])
    assert service.granted == 1 and a.transport.stats()["joins"] == 1


@pytest.mark.anyio
async def test_wrong_join_secret_is_refused(tmp_path: Path, caplog) -> None:
    a, service, admitted = member_with_joins(tmp_path / "a")
    wrong = str(new_cluster_token("join", a.creds.ca.public_raw))  # right cluster, new secret
    assert a.transport is not None
    with caplog.at_level(logging.WARNING, "aspen.transport.join"):
        async with running(a.transport):
            with anyio.fail_after(5), pytest.raises(errors.UnauthorizedError, match="secret"):
                await request_join(wrong, a.address, NodeIdentity.generate(), {})
    assert admitted == [] and service.refused == 1
    assert "refused join" in caplog.text


@pytest.mark.anyio
async def test_join_token_of_another_cluster_does_not_trust_the_member(tmp_path: Path) -> None:
    a, service, _ = member_with_joins(tmp_path / "a")
    other = str(new_cluster_token("join", ClusterCA.generate().public_raw))
    assert a.transport is not None
    async with running(a.transport):
        with anyio.fail_after(5), pytest.raises(errors.UnauthorizedError, match="cluster CA"):
            await request_join(other, a.address, NodeIdentity.generate(), {})
    assert service.refused == 0 and service.granted == 0  # the secret was never sent


@pytest.mark.anyio
async def test_join_requests_are_validated(tmp_path: Path) -> None:
    a, service, _ = member_with_joins(tmp_path / "a")
    token = parse_cluster_token(service.join_token)
    assert token is not None
    good = {
        "type": "join",
        "version": 1,
        "cluster_id": a.creds.cluster_id,
        "secret": token.secret,
        "public_key": NodeIdentity.generate().public_raw,
        "addresses": {},
    }
    bad_frames = [
        ({"version": 9}, errors.InvalidArgumentError),
        ({"cluster_id": "0" * 16}, errors.UnauthorizedError),
        ({"secret": None}, errors.UnauthorizedError),
        ({"public_key": b"short"}, errors.InvalidArgumentError),
        ({"addresses": {"peer": "no-port"}}, errors.InvalidArgumentError),
        ({"addresses": {f"a{i}": "h:1" for i in range(100)}}, errors.InvalidArgumentError),
        ({"addresses": ["h:1"]}, errors.InvalidArgumentError),
    ]
    for change, error in bad_frames:
        with pytest.raises(error):
            await service({**good, **change}, "test")
    # the message names the bound that was crossed (a long address is not "too many")
    long_address = {"addresses": {"peer": "a" * 300 + ":7380"}}
    with pytest.raises(errors.InvalidArgumentError, match=r"at most 256 \(MAX_ADDRESS_CHARS\)"):
        await service({**good, **long_address}, "test")
    many = {"addresses": {f"a{i}": "h:1" for i in range(100)}}
    with pytest.raises(errors.InvalidArgumentError, match=r"at most 16 \(MAX_JOIN_ADDRESSES\)"):
        await service({**good, **many}, "test")
    grant = await service(good, "test")
    assert grant["type"] == "join_grant"


@pytest.mark.anyio
async def test_join_errors_and_misuse(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="aspen1j"):
        await request_join("aspen_legacy", "127.0.0.1:1", NodeIdentity.generate(), {})
    client_token = str(new_cluster_token("client", ClusterCA.generate().public_raw))
    with pytest.raises(errors.InvalidArgumentError, match="aspen1j"):
        await request_join(client_token, "127.0.0.1:1", NodeIdentity.generate(), {})
    join_token = str(new_cluster_token("join", ClusterCA.generate().public_raw))
    with pytest.raises(errors.UnavailableError, match="cannot reach"):
        await request_join(join_token, "127.0.0.1:1", NodeIdentity.generate(), {})
    (member,) = cluster(1)
    with pytest.raises(ValueError, match="another cluster"):
        JoinService(member.creds, join_token, "root")
    public_only = NodeCredentials(
        member.creds.identity, ClusterCA.from_pem(member.creds.ca.cert_pem), member.creds.cert_pem
    )
    own = str(ClusterToken("join", member.creds.ca.public_raw, "s" * 43))
    with pytest.raises(ValueError, match="CA key"):
        JoinService(public_only, own, "root")


@pytest.mark.anyio
async def test_member_without_join_service_refuses_joins(tmp_path: Path) -> None:
    init = init_cluster(tmp_path / "a")
    node = Node(init.credentials, {init.credentials.node_id})
    transport: PeerTransport = node.make()  # no on_join
    async with running(transport):
        with anyio.fail_after(5), pytest.raises(errors.UnauthorizedError, match="certificate"):
            await request_join(init.join_token, node.address, NodeIdentity.generate(), {})
