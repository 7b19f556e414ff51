"""``aspen pijul remote add / push / pull / clone`` against a real node, and the
``pijul.channel_update`` event a push publishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from aspen.errors import InvalidArgumentError

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

    # A pull does not overwrite bob's unrecorded edit of a file it changes: it is refused,
    # naming the file; recorded, the edit and the pulled change meet as a conflict state.
    monkeypatch.chdir(alice)
    (alice / "poem.txt").write_text("roses\nviolets\nalice\n")
    run("record", "-m", "third")
    run("push")
    monkeypatch.chdir(bob)
    (bob / "poem.txt").write_text("roses\nviolets\nbob\n")
    refused = cli("pijul", "pull")
    assert refused.exit_code != 0
    assert "unrecorded changes to poem.txt would be overwritten" in refused.output
    assert (bob / "poem.txt").read_text() == "roses\nviolets\nbob\n"
    run("record", "-m", "bob's line")
    run("pull")
    merged = (bob / "poem.txt").read_text()
    assert "alice" in merged and "bob" in merged and ">>>>>>>" in merged


def _lines(tag: str, total: int) -> str:
    """About ``total`` bytes of distinct text lines."""
    return "".join(f"{tag} line {i:08d} {'x' * 60}\n" for i in range(total // 80))


def test_changes_over_the_old_cap_live_in_the_blob_store(
    node: Any, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2 MiB change (put as a blob by the client) and a 300 KiB one (made a blob by the
    node) round-trip through push and clone; KV keeps only a small record of each, and a
    record pointing at damaged bytes is refused when read, by a clone and by the node."""
    from aspen_pijul import limits

    def run(*args: str) -> str:
        result = cli("pijul", *args)
        assert result.exit_code == 0, result.output
        return str(result.stdout)

    monkeypatch.setenv("ASPEN_PIJUL_AUTHOR", "alice")
    alice, bob, carol = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    alice.mkdir()
    monkeypatch.chdir(alice)
    run("init")
    big, medium = _lines("big", 2 * 1024 * 1024), _lines("medium", 300 * 1024)
    (alice / "big.txt").write_text(big)
    run("add", "big.txt")
    h1 = run("record", "-m", "big").strip()
    (alice / "medium.txt").write_text(medium)
    run("add", "medium.txt")
    h2 = run("record", "-m", "medium").strip()
    run("remote", "add", "origin", "poems")
    run("push")
    monkeypatch.chdir(tmp_path)
    run("clone", "poems", str(bob))
    assert (bob / "big.txt").read_text() == big
    assert (bob / "medium.txt").read_text() == medium

    with node.client() as c:
        records = {}
        for h in (h1, h2):
            kv = c.kv.get(f"/_aspen/pijul/poems/c/{h}")
            assert kv is not None and len(kv.value) < 1024
            records[h] = msgpack.unpackb(kv.value, raw=False)
            assert records[h]["size"] > limits.INLINE_CHANGE_BYTES
            assert f"pijul/poems/{h}" in c.blobs.stat(records[h]["blob"])["pins"]
        assert records[h1]["size"] > 900 * 1024  # the old cap
        # Point h2's record at damaged bytes (a valid blob of other bytes).
        data = bytearray(c.blobs.get_bytes(records[h2]["blob"]))
        data[len(data) // 2] ^= 0x01
        damaged = c.blobs.put(bytes(data))
        c.kv.put(
            f"/_aspen/pijul/poems/c/{h2}",
            msgpack.packb({"size": len(data), "blob": damaged.hash}),
        )
        with pytest.raises(InvalidArgumentError, match=f"stored change {h2} is refused"):
            c.call(
                "pijul.append",
                {"repo": "poems", "channel": "other", "expected": 0, "hashes": [h1, h2]},
            )
    result = cli("pijul", "clone", "poems", str(carol))
    assert result.exit_code != 0
    assert f"stored change {h2} is refused" in result.output
