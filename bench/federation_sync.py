"""Sync throughput of the click history from one cluster to another (aspen federation
sync) vs a plain ``git fetch`` over smart HTTP from the same origin forge.

Two 1-node clusters (forge + federation, no DHT: the origin's endpoint is given). The
click bundle (plugins/forge/tests/fixtures/click.bundle) is pushed to cluster A and shared;
B syncs it (signed refs, fetch, completeness walk, push into B's forge); then ``git fetch``
of the same repository from A into an empty bare repository, for comparison.

    .venv/bin/python bench/federation_sync.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from aspen.testing import local_cluster

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "plugins" / "forge" / "tests" / "fixtures" / "click.bundle"
ENV = {"ASPEN_FORGE_HTTP_LISTEN": "127.0.0.1:0"}


def _git(*args: str, cwd: Path | None = None, token: str | None = None) -> str:
    extra = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", *extra, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def main() -> None:
    """Run the comparison and print objects, MB, seconds and rates."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plugins = ["forge", "federation"]
        with (
            local_cluster(work / "a", 1, plugins=plugins, env=ENV) as a,
            local_cluster(work / "b", 1, plugins=plugins, env=ENV) as b,
        ):
            a.leader_index()
            b.leader_index()
            src = work / "click.git"
            _git("clone", "-q", "--bare", str(BUNDLE), str(src))
            objects = len(_git("rev-list", "--objects", "--all", cwd=src).split("\n")) - 1
            pack_bytes = sum(p.stat().st_size for p in (src / "objects" / "pack").glob("*.pack"))
            with a.client() as c:
                c.call("forge.repo_create", {"repo": "bench/click"})
                url = c.call("forge.repo_show", {"repo": "bench/click"})["clone_url"]
                _git("push", "-q", url, "refs/heads/*:refs/heads/*", cwd=src, token=a.token)
                c.call(
                    "federation.share", {"kind": "forge", "name": "bench/click", "mode": "public"}
                )
                a_key = c.call("federation.status", {})["cluster_key"]
                with b.client() as cb:
                    b_key = cb.call("federation.status", {})["cluster_key"]
                token = c.call(
                    "federation.grant", {"key": b_key, "kind": "forge", "name": "bench/click"}
                )["token"]
            with b.client(timeout=600) as cb:
                start = time.perf_counter()
                phases = cb.call(
                    "federation.sync",
                    {
                        "key": a_key,
                        "kind": "forge",
                        "name": "bench/click",
                        "token": token,
                        "endpoint": a.endpoints.split(",")[0],
                    },
                )["seconds"]
                synced = time.perf_counter() - start
            dst = work / "fetched.git"
            _git("init", "-q", "--bare", str(dst))
            start = time.perf_counter()
            _git("fetch", "-q", url, "refs/heads/*:refs/heads/*", cwd=dst, token=a.token)
            fetched = time.perf_counter() - start
    mb = pack_bytes / 1e6
    print(f"click: {objects} objects, pack {mb:.1f} MB")
    for name, secs in (("federation sync", synced), ("git fetch", fetched)):
        print(f"{name:16} {secs:6.2f} s  {objects / secs:8.0f} objects/s  {mb / secs:6.2f} MB/s")
    print(
        f"sync phases: fetch+verify {phases['fetch']:.2f} s, "
        f"push into B's forge {phases['push']:.2f} s"
    )
    print(f"sync / fetch time ratio: {synced / fetched:.2f}")


if __name__ == "__main__":
    main()
