"""``aspen pijul remote add / push / pull / clone`` against a real node, and the
``pijul.channel_update`` event a push publishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.aspen_plugins("pijul")


def test_push_clone_pull_through_the_cli(
    node: Any, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*args: str) -> str:
        result = cli("pijul", *args)
        assert result.exit_code == 0, result.output
        return str(result.stdout)

    monkeypatch.setenv("ASPEN_PIJUL_AUTHOR", "alice")
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    monkeypatch.chdir(alice)
    run("init")
    (alice / "poem.txt").write_text("roses\n")
    run("add", "poem.txt")
    h1 = run("record", "-m", "first").strip()
    run("remote", "add", "origin", "poems")
    run("push")
    monkeypatch.chdir(tmp_path)
    run("clone", "poems", str(bob))
    assert (bob / "poem.txt").read_text() == "roses\n"
    monkeypatch.chdir(alice)
    (alice / "poem.txt").write_text("roses\nviolets\n")
    h2 = run("record", "-m", "second").strip()
    run("push")
    monkeypatch.chdir(bob)
    run("pull")
    assert (bob / "poem.txt").read_text() == "roses\nviolets\n"
    assert [e["hash"] for e in json.loads(run("log", "--json"))] == [h1, h2]
    with node.client() as c:
        events = c.events.read(0, match="pijul.channel_update:poems:main")["events"]
    assert [e["payload"]["hashes"] for e in events] == [[h1], [h2]]
