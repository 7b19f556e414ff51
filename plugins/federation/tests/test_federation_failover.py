"""kill -9 of the puller's leader during a sync of the click history: nothing partial is
visible, and the sync run again (on the new leader) completes with A's exact refs and
objects, ``git fsck`` clean."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from federation_support import sync_in_thread

from aspen.testing import local_cluster, wait_for

BUNDLE = Path(__file__).parents[2] / "forge" / "tests" / "fixtures" / "click.bundle"
ENV = {"ASPEN_FORGE_HTTP_LISTEN": "127.0.0.1:0"}
PLUGINS = ["forge", "federation"]


def _git(*args: str, cwd: Path | None = None, token: str | None = None) -> str:
    extra = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(
        ["git", *extra, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"git {args}: {done.stdout}{done.stderr}"
    return done.stdout


def test_kill_the_pullers_leader_during_a_sync(tmp_path: Path) -> None:
    with (
        local_cluster(tmp_path / "a", 1, plugins=PLUGINS, env=ENV) as a,
        local_cluster(tmp_path / "b", 3, plugins=PLUGINS, env=ENV) as b,
    ):
        a.leader_index()
        leader = b.leader_index()
        src = tmp_path / "click.git"
        _git("clone", "-q", "--bare", str(BUNDLE), str(src))
        with a.client() as c:
            c.call("forge.repo_create", {"repo": "pallets/click"})
            a_url = c.call("forge.repo_show", {"repo": "pallets/click"})["clone_url"]
            _git("push", "-q", a_url, "refs/heads/*:refs/heads/*", cwd=src, token=a.token)
            c.call("federation.share", {"kind": "forge", "name": "pallets/click", "mode": "public"})
            a_status = c.call("federation.status", {})
            with b.client() as cb:
                b_key = cb.call("federation.status", {})["cluster_key"]
            grant = {"key": b_key, "kind": "forge", "name": "pallets/click"}
            token = c.call("federation.grant", grant)["token"]
            a_refs = c.call("forge.repo_show", {"repo": "pallets/click"})["refs"]
        params = {
            "key": a_status["cluster_key"],
            "kind": "forge",
            "name": "pallets/click",
            "token": token,
            "endpoint": a.endpoints.split(",")[0],
        }
        staging = b.node_dir(leader) / "federation" / "staging"
        thread, outcome = sync_in_thread(b, leader, params)
        wait_for(staging.exists, timeout=60, message="the sync started fetching")
        b.kill(leader)
        thread.join(timeout=120)
        assert outcome, "the first sync never returned"
        namespace = f"refs/remotes/{a_status['key_id']}/"

        def mirrored() -> dict[str, str]:
            with b.client() as cb:
                refs = cb.call("forge.repo_show", {"repo": "pallets/click"})["refs"]
            return {k: v for k, v in refs.items() if k.startswith(namespace)}

        expected = {namespace + k[5:]: v for k, v in a_refs.items()}
        # the killed sync landed whole or not at all
        assert mirrored() in ({}, expected)
        with b.client(timeout=120) as cb:
            cb.call("federation.sync", params)
        assert mirrored() == expected
        with b.client() as cb:
            b_url = cb.call("forge.repo_show", {"repo": "pallets/click"})["clone_url"]
        clone = tmp_path / "clone.git"
        _git("init", "-q", "--bare", str(clone))
        _git("fetch", "-q", b_url, f"+{namespace}*:{namespace}*", cwd=clone, token=b.token)
        _git("fsck", "--strict", cwd=clone)
        count = len(_git("rev-list", "--objects", "--all", cwd=clone).split())
        assert count == len(_git("rev-list", "--objects", "--all", cwd=src).split())
