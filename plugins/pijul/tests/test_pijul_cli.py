"""``aspen pijul …`` in a real directory: the interface contract of issue 16."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aspen_pijul import limits
from aspen_pijul.cli import pijul_cli
from aspen_pijul.errors import (
    AmbiguousPrefixError,
    CorruptChangeError,
    DependedUponError,
    MissingDependencyError,
    TooLargeError,
    UnknownChangeError,
    UnrecordedChangesError,
)
from aspen_pijul.model.hashing import HASH_CHARS


@pytest.fixture
def wc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASPEN_PIJUL_AUTHOR", "tester")
    run("init")
    return tmp_path


def run(*args: str) -> str:
    """Run ``aspen pijul ARGS``; return stdout (exceptions propagate)."""
    result = CliRunner().invoke(pijul_cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_record_prints_hash_and_log_json(wc: Path) -> None:
    (wc / "a.txt").write_text("one\ntwo\n")
    run("add", "a.txt")
    h1 = run("record", "-m", "first").strip()
    assert len(h1) == HASH_CHARS
    (wc / "a.txt").write_text("one\ntwo\nthree\n")
    h2 = run("record", "-m", "second").strip()
    log = json.loads(run("log", "--json"))
    assert [e["hash"] for e in log] == [h1, h2]
    assert log[0]["message"] == "first" and log[0]["authors"] == ["tester"]
    assert set(log[0]) == {"hash", "message", "authors", "timestamp"}
    assert run("record", "-m", "nothing") == ""
    text = run("change", h2[:10])
    assert "# Dependencies" in text and h1 in text and "+ three" in text


def test_channels_fork_apply_conflict_and_resolution(wc: Path) -> None:
    f = wc / "a.txt"
    f.write_text("one\ntwo\n")
    run("add", "a.txt")
    run("record", "-m", "base")
    run("fork", "bob")
    f.write_text("one\ntwo\nalice\n")
    run("record", "-m", "alice")
    run("channel", "switch", "bob")
    assert f.read_text() == "one\ntwo\n"
    f.write_text("one\ntwo\nbob\n")
    hb = run("record", "-m", "bob").strip()
    run("channel", "switch", "main")
    run("apply", hb)
    conflicted = f.read_text()
    assert ">>>>>>> 1" in conflicted and "=======" in conflicted and "<<<<<<< 1" in conflicted
    assert run("record", "-m", "unchanged") == ""
    f.write_text("one\ntwo\nalice\nbob\n")
    res = run("record", "-m", "resolve").strip()
    credit = run("credit", "a.txt").splitlines()
    assert credit[-1].startswith(hb[:8]) and credit[-1].endswith("bob")
    run("unrecord", "--reset", res)
    assert f.read_text() == conflicted
    assert run("channel", "list").splitlines() == ["  bob", "* main"]
    run("channel", "rename", "bob", "robert")
    run("channel", "delete", "robert")
    assert run("channel", "list").splitlines() == ["* main"]


def test_unrecord_refused_while_depended_upon_and_rollback(wc: Path) -> None:
    f = wc / "a.txt"
    f.write_text("x\n")
    run("add", "a.txt")
    h1 = run("record", "-m", "a").strip()
    f.write_text("x\ny\n")
    h2 = run("record", "-m", "b").strip()
    with pytest.raises(DependedUponError):
        run("unrecord", h1)
    run("rollback", h2)
    assert f.read_text() == "x\n"
    assert len(json.loads(run("log", "--json"))) == 3


def test_unrecorded_edits_are_never_silently_overwritten(wc: Path) -> None:
    """``apply``, ``channel switch`` and ``rollback`` refuse to overwrite unrecorded edits
    of the files they change (naming them, with a record / --force hint), keep edits of
    files they do not change, and overwrite with ``--force``."""
    a, b = wc / "a.txt", wc / "b.txt"
    a.write_text("one\n")
    b.write_text("bee\n")
    run("add", "a.txt", "b.txt")
    run("record", "-m", "base")
    run("fork", "other")
    a.write_text("one\ntwo\n")
    h = run("record", "-m", "two").strip()
    run("unrecord", h)  # the edit is unrecorded again: still on disk
    assert a.read_text() == "one\ntwo\n"
    a.write_text("one\nmine\n")
    (wc / "new.txt").write_text("new\n")
    run("add", "new.txt")
    with pytest.raises(UnrecordedChangesError, match=r"a\.txt would be overwritten.*--force"):
        run("apply", h)
    assert a.read_text() == "one\nmine\n"
    assert json.loads(run("log", "--json"))[-1]["message"] == "base"
    # An edit of a file the change does not touch is kept, and so is a pending add.
    a.write_text("one\n")
    b.write_text("bee\nunrecorded\n")
    run("apply", h)
    assert a.read_text() == "one\ntwo\n"
    assert b.read_text() == "bee\nunrecorded\n"
    # Switching to a channel that prints a.txt differently: refused while a.txt is edited.
    a.write_text("one\ntwo\nthree\n")
    with pytest.raises(UnrecordedChangesError, match=r"a\.txt"):
        run("channel", "switch", "other")
    assert run("channel", "list").splitlines() == ["* main", "  other"]
    # Rolling back the change that made a.txt: refused likewise.
    with pytest.raises(UnrecordedChangesError, match=r"a\.txt"):
        run("rollback", h)
    run("channel", "switch", "--force", "other")
    assert a.read_text() == "one\n" and b.read_text() == "bee\nunrecorded\n"
    assert (wc / "new.txt").read_text() == "new\n"
    recorded = run("record", "-m", "b and new").strip()
    assert "new.txt" in run("change", recorded) and "+ unrecorded" in run("change", recorded)


def test_directories_are_entities(wc: Path) -> None:
    """``add DIR`` tracks the directory itself (an empty one is recorded and comes back),
    ``move DIR NEW`` moves it with everything under it in one change, and a directory
    deleted while a concurrent change adds a file in it is printed back as a conflict."""
    import shutil

    (wc / "docs" / "guide").mkdir(parents=True)
    (wc / "docs" / "guide" / "a.txt").write_text("a\n")
    (wc / "empty").mkdir()
    run("add", ".")
    paths = json.loads((wc / ".aspen-pijul" / "tracked.json").read_text())["paths"]
    assert paths == ["docs/", "docs/guide/", "docs/guide/a.txt", "empty/"]
    run("record", "-m", "dirs")
    run("fork", "other")
    run("move", "docs", "manual")
    moved = run("record", "-m", "move docs").strip()
    assert (wc / "manual/guide/a.txt").read_text() == "a\n" and not (wc / "docs").exists()
    assert len(json.loads(run("log", "--json"))) == 2
    for path in ("manual/", "manual/guide/", "manual/guide/a.txt"):
        assert f"is now '{path}'" in run("change", moved)
    run("channel", "switch", "other")
    assert (wc / "docs/guide/a.txt").read_text() == "a\n" and not (wc / "manual").exists()
    shutil.rmtree(wc / "empty")
    run("record", "-m", "drop empty")
    assert not (wc / "empty").exists()
    run("channel", "switch", "main")
    assert (wc / "empty").is_dir() and not any((wc / "empty").iterdir())
    # Channel "deleted" deletes manual/ while, concurrently, main adds a file in it.
    run("fork", "deleted")
    run("channel", "switch", "deleted")
    shutil.rmtree(wc / "manual")
    run("record", "-m", "delete manual")
    run("channel", "switch", "main")
    (wc / "manual" / "guide" / "c.txt").write_text("c\n")
    run("add", "manual/guide/c.txt")
    concurrent = run("record", "-m", "add c").strip()
    run("channel", "switch", "deleted")
    assert not (wc / "manual").exists()
    result = CliRunner().invoke(pijul_cli, ["apply", concurrent], catch_exceptions=False)
    assert "conflict: manual/guide/ had files added or edited" in result.stderr
    assert (wc / "manual/guide/c.txt").read_text() == "c\n"
    assert run("record", "-m", "unchanged") == ""
    (wc / "manual/guide/c.txt").write_text("c\nkept\n")
    run("record", "-m", "keep it")
    result = CliRunner().invoke(pijul_cli, ["reset"], catch_exceptions=False)
    assert "conflict" not in result.stderr
    assert (wc / "manual/guide/c.txt").read_text() == "c\nkept\n"


def test_move_remove_and_reset(wc: Path) -> None:
    (wc / "a.txt").write_text("x\n")
    (wc / "b.txt").write_text("y\n")
    run("add", "a.txt", "b.txt")
    run("record", "-m", "two files")
    run("move", "a.txt", "sub/c.txt")
    run("remove", "b.txt")
    run("record", "-m", "move and remove")
    (wc / "sub/c.txt").write_text("changed\n")
    run("reset")
    assert (wc / "sub/c.txt").read_text() == "x\n"
    assert not (wc / "a.txt").exists()
    assert "b.txt" not in run("credit", "sub/c.txt")


def test_bad_input_is_typed(wc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = wc / "a.txt"
    f.write_text("x\n")
    run("add", "a.txt")
    hashes = set()
    for i in range(33):  # 33 hashes over 32 first characters: two share one
        f.write_text(f"x\n{i}\n")
        hashes.add(run("record", "-m", str(i)).strip())
    first = sorted(hashes)
    shared = next(a[0] for a, b in itertools.pairwise(first) if a[0] == b[0])
    monkeypatch.setattr(limits, "MIN_PREFIX_CHARS", 1)
    with pytest.raises(AmbiguousPrefixError, match="ambiguous"):
        run("change", shared)
    with pytest.raises(UnknownChangeError):
        run("change", "ZZZZZZZZ")
    # Corrupt stored bytes are refused when read.
    h = sorted(hashes)[0]
    stored = wc / ".aspen-pijul" / "changes" / h
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(CorruptChangeError):
        run("change", h)


def test_missing_dependency_and_huge_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASPEN_PIJUL_AUTHOR", "tester")
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        monkeypatch.chdir(d)
        run("init")
    monkeypatch.chdir(one)
    (one / "a.txt").write_text("x\n")
    run("add", "a.txt")
    run("record", "-m", "a")
    (one / "a.txt").write_text("x\ny\n")
    h2 = run("record", "-m", "b").strip()
    monkeypatch.chdir(two)
    with pytest.raises(MissingDependencyError):
        run("apply", str(one / ".aspen-pijul" / "changes" / h2))
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    (two / "big.txt").write_bytes(b"z" * 101)
    run("add", "big.txt")
    with pytest.raises(TooLargeError, match="MAX_FILE_BYTES"):
        run("record", "-m", "big")


def test_binary_file_is_one_vertex(wc: Path) -> None:
    f = wc / "img.bin"
    f.write_bytes(b"\x00\x01\n\x02\n")
    run("add", "img.bin")
    run("record", "-m", "bin")
    f.write_bytes(b"\x00\x01\n\x03\n")
    h = run("record", "-m", "bin2").strip()
    text = run("change", h)
    assert text.count("\n+ ") == 1
    run("reset")
    assert f.read_bytes() == b"\x00\x01\n\x03\n"


def test_file_edited_inside_a_deleted_directory_is_reported(wc: Path) -> None:
    (wc / "dir").mkdir()
    (wc / "dir/a.txt").write_text("one\n")
    (wc / "dir/b.txt").write_text("two\n")
    run("add", "dir/a.txt", "dir/b.txt")
    run("record", "-m", "dir")
    run("fork", "bob")
    run("remove", "dir/a.txt", "dir/b.txt")
    run("record", "-m", "delete dir")
    run("channel", "switch", "bob")
    (wc / "dir/a.txt").write_text("one\nbob\n")
    hb = run("record", "-m", "bob edits").strip()
    run("channel", "switch", "main")
    assert not (wc / "dir").exists() or not any((wc / "dir").iterdir())
    result = CliRunner().invoke(pijul_cli, ["apply", hb], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "conflict: dir/a.txt was edited while a concurrent change deleted it" in result.stderr
    assert (wc / "dir/a.txt").read_text() == "one\nbob\n"
    assert not (wc / "dir/b.txt").exists()
    assert run("record", "-m", "unchanged") == ""
