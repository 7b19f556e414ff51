"""``aspen.client.leader.LeaderCaller`` against a real node: a call made where this node
leads stays in-process; one refused with ``not_leader`` goes over a real connection to the
leader the refusal names; with no leader named it is ``unavailable``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aspen.client.leader import LeaderCaller
from aspen.errors import NotLeaderError, UnavailableError
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """One real node (the leader of its one-node cluster)."""
    config = NodeConfig(data_dir=tmp_path_factory.mktemp("node"), listen="127.0.0.1:0")
    with NodeThread(config) as running:
        yield running


class Follower:
    """What a follower's ``NodeAPI`` answers a write: ``not_leader`` naming ``leader``."""

    def __init__(self, leader: str, token: str) -> None:
        self.leader = leader
        self.token = token
        self.calls = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.calls += 1
        raise NotLeaderError("this node is not the leader", leader=self.leader)


def _put_and_close(caller: LeaderCaller, key: bytes) -> Any:
    async def run() -> Any:
        try:
            return await caller.call("kv.put", {"key": key, "value": b"v"})
        finally:
            await caller.close()

    return run


def test_on_the_leader_the_call_stays_in_process(node: NodeThread) -> None:
    caller = LeaderCaller(node.node)
    node.call(_put_and_close(caller, b"/leader/here"))
    with node.client() as c:
        assert c.kv.get(b"/leader/here").value == b"v"


def test_a_refused_call_goes_to_the_leader_it_names(node: NodeThread) -> None:
    follower = Follower(node.endpoint, node.token)
    caller = LeaderCaller(follower, max_clients=1)
    node.call(_put_and_close(caller, b"/leader/forwarded"))
    assert follower.calls == 1
    with node.client() as c:
        assert c.kv.get(b"/leader/forwarded").value == b"v"


def test_no_leader_known_is_unavailable(node: NodeThread) -> None:
    caller = LeaderCaller(Follower("", node.token))
    with pytest.raises(UnavailableError, match="no leader is known"):
        node.call(_put_and_close(caller, b"/leader/none"))
