"""A 3-node cluster of real ``aspen node start`` processes, each with its own HTTP API:
secrets written through one node are read through another (followers forward writes to
the leader), every node's ``sys/leader`` names the leader's HTTP API, killing the leader
with SIGKILL loses nothing acknowledged, and no secret material is found in clear in any
file of any data directory."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import hvac
import pytest

import aspen
from aspen.errors import AspenError
from aspen.testing import LocalCluster, wait_for
from aspen_secrets.service import HTTP_ADDRESS_FILE

pytestmark = [pytest.mark.slow, pytest.mark.aspen_plugins("secrets")]

SECRET_VALUES = ["s3cret-cluster-value-a91f", "s3cret-after-failover-77c2"]
TRANSIT_PLAINTEXT = b"transit-plaintext-marker-5be0"


@pytest.fixture(autouse=True)
def _secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's HTTP API on a free port, and no key files from the environment (node
    processes inherit it); `cluster` (the aspen.testing fixture) starts after this."""
    monkeypatch.setenv("ASPEN_SECRETS_HTTP_LISTEN", "127.0.0.1:0")
    for var in ("ASPEN_SECRETS_ROOT_KEY_FILE", "ASPEN_SECRETS_SECRETS_FILE"):
        monkeypatch.delenv(var, raising=False)


def _status(c: LocalCluster, i: int, call: str = "secrets.status") -> dict[str, Any] | None:
    try:
        with aspen.connect(c.client_endpoint(i), token=c.token, timeout=2) as client:
            return client.call(call)
    except (AspenError, OSError):
        return None


def _urls(c: LocalCluster) -> dict[int, str]:
    """Node index → ``http://host:port`` once every node's keyring is open."""
    for i in range(1, c.nodes + 1):
        wait_for(
            lambda i=i: (s := _status(c, i)) and s["state"] == "ready",
            timeout=30,
            message=f"node {i} opens the keyring",
        )
    return {
        i: "http://" + (c.node_dir(i) / HTTP_ADDRESS_FILE).read_text().strip()
        for i in range(1, c.nodes + 1)
    }


def _vault(url: str, token: str) -> hvac.Client:
    return hvac.Client(url=url, token=token, timeout=30)


def _read(client: hvac.Client, path: str) -> dict[str, Any]:
    answer = client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    return answer["data"]["data"]


def _leader_url_seen(urls: dict[int, str], nodes: set[int], leader: int) -> None:
    """Wait until ``sys/leader`` of every node in ``nodes`` names ``leader``'s HTTP API."""
    for i in nodes:
        wait_for(
            lambda i=i: (
                httpx.get(f"{urls[i]}/v1/sys/leader").json()["leader_address"] == urls[leader]
            ),
            timeout=30,
            message=f"node {i} names the leader's HTTP address",
        )


def test_three_nodes_replicate_survive_kill9_and_keep_secrets_sealed(cluster: LocalCluster) -> None:
    c = cluster
    urls = _urls(c)
    alive = {1, 2, 3}
    leader = c.leader_index(among=alive)
    followers = sorted(alive - {leader})
    vaults = {i: _vault(url, c.token) for i, url in urls.items()}

    # health: the leader is active, followers are standbys (429 unless standbyok)
    assert httpx.get(f"{urls[leader]}/v1/sys/health").status_code == 200
    assert httpx.get(f"{urls[followers[0]]}/v1/sys/health").status_code == 429
    assert httpx.get(f"{urls[followers[0]]}/v1/sys/health?standbyok=true").status_code == 200
    _leader_url_seen(urls, alive, leader)
    assert httpx.get(f"{urls[followers[0]]}/v1/sys/leader").json()["is_self"] is False

    # a write through a follower is forwarded to the leader; every node reads it
    vaults[followers[0]].secrets.kv.v2.create_or_update_secret(
        path="app/db", secret={"password": SECRET_VALUES[0]}
    )
    for i in alive:
        assert _read(vaults[i], "app/db") == {"password": SECRET_VALUES[0]}
    # mounts made through one node are served by the others
    vaults[followers[1]].sys.enable_secrets_engine("kv", path="team", options={"version": "2"})
    vaults[leader].secrets.kv.v2.create_or_update_secret(
        path="x", secret={"v": "1"}, mount_point="team"
    )
    assert vaults[followers[1]].secrets.kv.v2.read_secret_version(
        path="x", mount_point="team", raise_on_deleted_version=True
    )["data"]["data"] == {"v": "1"}

    # transit and pki through a follower (their state is written by the leader)
    vault = vaults[followers[1]]
    vault.secrets.transit.create_key(name="k1")
    plaintext = __import__("base64").b64encode(TRANSIT_PLAINTEXT).decode()
    ciphertext = vault.secrets.transit.encrypt_data(name="k1", plaintext=plaintext)["data"][
        "ciphertext"
    ]
    decrypted = vaults[leader].secrets.transit.decrypt_data(name="k1", ciphertext=ciphertext)
    assert decrypted["data"]["plaintext"] == plaintext
    root = vault.secrets.pki.generate_root(type="internal", common_name="cluster test root")
    assert "private_key" not in root["data"]
    vault.secrets.pki.create_or_update_role(
        "web", extra_params={"allowed_domains": ["example.com"], "allow_subdomains": True}
    )
    issued = vault.secrets.pki.generate_certificate("web", common_name="a.example.com")
    assert "PRIVATE KEY" in issued["data"]["private_key"]

    # kill -9 the leader: everything acknowledged is still there, and writes go on
    os.kill(c.procs[leader - 1].pid, signal.SIGKILL)
    c.procs[leader - 1].wait(10)
    alive.discard(leader)
    new_leader = c.leader_index(among=alive)
    assert new_leader != leader
    survivor = vaults[sorted(alive - {new_leader})[0]]

    def write_after_failover() -> bool:
        survivor.secrets.kv.v2.create_or_update_secret(path="after", secret={"v": SECRET_VALUES[1]})
        return True

    wait_for(write_after_failover, timeout=30, ignore=(hvac.exceptions.VaultError,))
    _leader_url_seen(urls, alive, new_leader)
    for i in alive:
        assert _read(vaults[i], "app/db") == {"password": SECRET_VALUES[0]}
        assert _read(vaults[i], "after") == {"v": SECRET_VALUES[1]}
        again = vaults[i].secrets.transit.decrypt_data(name="k1", ciphertext=ciphertext)
        assert again["data"]["plaintext"] == plaintext

    # nothing secret in clear in any file of any data directory (the killed node's too);
    # PEM private keys are looked for in the store (the node's own TLS keys are PEM files)
    c.down()
    markers = [v.encode() for v in SECRET_VALUES] + [TRANSIT_PLAINTEXT]
    markers.append(issued["data"]["private_key"].splitlines()[1].encode())
    scanned = 0
    for i in range(1, c.nodes + 1):
        for path in c.node_dir(i).rglob("*"):
            if not path.is_file():
                continue
            content = path.read_bytes()
            scanned += 1
            in_store = "db" in path.relative_to(c.node_dir(i)).parts
            for marker in [*markers, b"PRIVATE KEY"] if in_store else markers:
                assert marker not in content, f"{marker!r} in clear in {path}"
    assert scanned >= 6
