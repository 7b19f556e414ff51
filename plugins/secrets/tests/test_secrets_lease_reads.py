"""Secrets on a 3-node cluster whose nodes run with ``--lease-reads``
(``ASPEN_LEASE_READS=true``), formed by joins as ``aspen dev up`` forms one: the leader
holds a read lease once the cluster is formed (a membership change restarts the lease,
it does not end it for the term), and hvac sees every acknowledged write at once,
through the leader and through the followers, for KV v2 and transit alike."""

from __future__ import annotations

import base64
from typing import Any

import hvac
import pytest

import aspen
from aspen.testing import LocalCluster, wait_for
from aspen_secrets.service import HTTP_ADDRESS_FILE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.aspen_plugins("secrets"),
    pytest.mark.aspen_cluster(nodes=3, env={"ASPEN_LEASE_READS": "true"}),
]


@pytest.fixture(autouse=True)
def _secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's HTTP API on a free port, no key files from the environment."""
    monkeypatch.setenv("ASPEN_SECRETS_HTTP_LISTEN", "127.0.0.1:0")
    for var in ("ASPEN_SECRETS_ROOT_KEY_FILE", "ASPEN_SECRETS_SECRETS_FILE"):
        monkeypatch.delenv(var, raising=False)


def _call(c: LocalCluster, i: int, method: str) -> Any:
    with aspen.connect(c.client_endpoint(i), token=c.token, timeout=5) as client:
        return client.call(method)


def _vaults(c: LocalCluster) -> dict[int, hvac.Client]:
    """An hvac client per node, once every node's keyring is open."""
    for i in range(1, c.nodes + 1):
        wait_for(
            lambda i=i: _call(c, i, "secrets.status")["state"] == "ready",
            timeout=30,
            message=f"node {i} opens the keyring",
            ignore=(Exception,),
        )
    return {
        i: hvac.Client(
            url="http://" + (c.node_dir(i) / HTTP_ADDRESS_FILE).read_text().strip(),
            token=c.token,
            timeout=30,
        )
        for i in range(1, c.nodes + 1)
    }


def test_a_cluster_formed_by_joins_reads_from_the_lease_and_sees_every_write(
    cluster: LocalCluster,
) -> None:
    c = cluster
    vaults = _vaults(c)
    leader = c.leader_index()
    assert len(_call(c, leader, "cluster.status")["conf"]["voters"]) == 3
    wait_for(
        lambda: _call(c, leader, "cluster.status")["raft"]["lease"],
        timeout=30,
        message="the leader of a cluster formed by joins holds a read lease",
    )
    followers = [i for i in vaults if i != leader]

    for n in range(5):  # each write is seen at once by the next read, on every node
        writer = vaults[followers[n % 2]]  # forwarded to the leader
        writer.secrets.kv.v2.create_or_update_secret(path="lease/k", secret={"n": n})
        for i, vault in vaults.items():
            answer = vault.secrets.kv.v2.read_secret_version(
                path="lease/k", raise_on_deleted_version=True
            )
            assert answer["data"]["data"] == {"n": n}, f"node {i} after write {n}"

    plaintext = base64.b64encode(b"lease-read transit").decode()
    vaults[leader].secrets.transit.create_key(name="lk")
    first = vaults[leader].secrets.transit.encrypt_data(name="lk", plaintext=plaintext)
    assert first["data"]["ciphertext"].startswith("vault:v1:")
    vaults[followers[0]].secrets.transit.rotate_key(name="lk")
    after = vaults[leader].secrets.transit.encrypt_data(name="lk", plaintext=plaintext)
    assert after["data"]["ciphertext"].startswith("vault:v2:")  # the rotation, seen at once
    for vault in vaults.values():
        for ciphertext in (first, after):
            opened = vault.secrets.transit.decrypt_data(
                name="lk", ciphertext=ciphertext["data"]["ciphertext"]
            )
            assert opened["data"]["plaintext"] == plaintext
