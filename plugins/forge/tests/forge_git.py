"""Helpers of the forge tests: a cluster's git URLs and the real ``git`` CLI, isolated from
the user's configuration."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from aspen.testing import LocalCluster, local_cluster, wait_for
from aspen_forge.service import HTTP_ADDRESS_FILE

#: The click history (README.md next to it says where it comes from).
CLICK_BUNDLE = Path(__file__).parent / "fixtures" / "click.bundle"
CLICK_MAIN = "2c8cd3ac958a7eb316d67f2d316c27086c4c0369"
CLICK_STABLE = "8ee83ddbf5a7a4c2eac5308c9599c5ee67ee005e"
#: Bytes that start like a pack and are not one.
GARBAGE_PACK = b"PACK\x00\x00\x00\x02garbage!"
#: The push bound the test clusters run with (small, so an oversized push is cheap).
TEST_MAX_PUSH_BYTES = 16 * 1024 * 1024


def git_env(home: Path) -> dict[str, str]:
    """An environment where git reads no user or system config and never prompts."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Forge Test",
        "GIT_AUTHOR_EMAIL": "forge@example.com",
        "GIT_COMMITTER_NAME": "Forge Test",
        "GIT_COMMITTER_EMAIL": "forge@example.com",
    }


class Git:
    """Runs ``git`` with an isolated environment; ``token`` adds a Bearer header."""

    def __init__(self, home: Path) -> None:
        self.env = git_env(home)

    def __call__(
        self, *args: str, cwd: Path | None = None, token: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        extra = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
        result = subprocess.run(
            ["git", *extra, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def refs(self, url_or_path: str, token: str | None = None) -> dict[str, str]:
        """``git ls-remote``: ref → id."""
        out = self("ls-remote", url_or_path, token=token).stdout
        return {line.split("\t")[1]: line.split("\t")[0] for line in out.splitlines() if line}


class ForgeCluster:
    """A LocalCluster whose nodes serve git; ``url(i, "acme/x")`` is node i's repo URL."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.token = cluster.token

    def http(self, i: int) -> str:
        """``http://host:port`` of node ``i`` (waits for the node to publish it)."""
        path = self.cluster.node_dir(i) / HTTP_ADDRESS_FILE
        wait_for(path.exists, timeout=30, message=f"node {i} serves git")
        return "http://" + path.read_text().strip()

    def url(self, i: int, repo: str) -> str:
        """Node ``i``'s URL of ``repo``."""
        return f"{self.http(i)}/{repo}.git"

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """An RPC through the cluster (follows the leader)."""
        with self.cluster.client() as c:
            return c.call(method, params)


@contextmanager
def forge_cluster(
    data_dir: Path, nodes: int = 3, *, index_pack: str = "auto"
) -> Iterator[ForgeCluster]:
    """A fresh ``nodes``-node cluster loading aspen-forge, git on free ports; pushes indexed
    by ``index_pack`` (``auto``: git index-pack; ``dulwich``)."""
    env = {
        "ASPEN_FORGE_HTTP_LISTEN": "127.0.0.1:0",
        "ASPEN_FORGE_MAX_PUSH_BYTES": str(TEST_MAX_PUSH_BYTES),
        "ASPEN_FORGE_INDEX_PACK": index_pack,
    }
    with local_cluster(data_dir, nodes, plugins=["forge"], env=env) as cluster:
        cluster.leader_index()
        yield ForgeCluster(cluster)


def forge_json(cli: Any, *args: str) -> Any:
    """``aspen forge ARGS --json`` through ``cli`` (a ``CliInvoker``): its answer, which
    must have succeeded."""
    result = cli("forge", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def bare_click(git: Git, where: Path) -> Path:
    """A bare clone of the click bundle (branches main and stable) at ``where``."""
    if not where.exists():
        git("clone", "-q", "--bare", str(CLICK_BUNDLE), str(where))
    return where


def pkt_line(line: bytes) -> bytes:
    """``line`` framed as a git pkt-line."""
    return b"%04x" % (len(line) + 4) + line


def receive_pack(forge: ForgeCluster, node: int, repo: str, body: bytes) -> httpx.Response:
    """POST ``body`` to node ``node``'s git-receive-pack of ``repo`` (root token)."""
    return httpx.post(
        forge.url(node, repo) + "/git-receive-pack",
        content=body,
        headers={
            "content-type": "application/x-git-receive-pack-request",
            "authorization": f"Bearer {forge.token}",
        },
        timeout=30,
    )
