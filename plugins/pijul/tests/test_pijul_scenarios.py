"""Scenarios from the Pijul manual's behaviours, in our own words and data."""

from __future__ import annotations

import pytest

from aspen_pijul.errors import DependedUponError
from aspen_pijul.model.change import AddEdges, Change, Pos
from aspen_pijul.model.sandbox import Sandbox


def _base(s: Sandbox) -> str:
    c = s.record("main", {"poem.txt": "roses\nviolets\nsugar\n"}, "first")
    assert c is not None
    return c.hash


def _two_party_conflict() -> Sandbox:
    """Alice and Bob each add a line at the same place; main has both changes."""
    s = Sandbox()
    _base(s)
    s.pull("bob", "main")
    s.edit("main", "poem.txt", "roses\nviolets\nred\nsugar\n", author="alice")
    s.edit("bob", "poem.txt", "roses\nviolets\nblue\nsugar\n", author="bob")
    s.pull("main", "bob")
    return s


def test_record_and_output_round_trip() -> None:
    s = Sandbox()
    _base(s)
    assert s.text("main", "poem.txt") == "roses\nviolets\nsugar\n"
    assert s.record("main", {"poem.txt": "roses\nviolets\nsugar\n"}) is None


def test_two_party_order_conflict_and_resolution_travels() -> None:
    s = _two_party_conflict()
    s.pull("bob", "main")
    a, b = s.text("main", "poem.txt"), s.text("bob", "poem.txt")
    assert a == b
    assert ">>>>>>> 1" in a and "=======" in a and "<<<<<<< 1" in a
    assert a.index("roses") < a.index(">>>>>>>") < a.index("red") < a.index("sugar")
    # Recording the conflicted file unchanged records nothing.
    assert s.record("main", {"poem.txt": a}) is None
    # Removing the markers records a resolution, which resolves the conflict everywhere.
    res = s.edit("main", "poem.txt", "roses\nviolets\nred\nblue\nsugar\n")
    s.pull("bob", "main")
    assert s.text("bob", "poem.txt") == "roses\nviolets\nred\nblue\nsugar\n"
    # Unrecording the resolution brings the conflict back.
    s.channel("bob").unrecord(res)
    assert s.text("bob", "poem.txt") == b


def test_three_party_conflict_has_three_sides_in_fixed_order() -> None:
    s = Sandbox()
    _base(s)
    for who, word in (("alice", "one"), ("bob", "two"), ("carol", "three")):
        s.pull(who, "main")
        s.edit(who, "poem.txt", f"roses\n{word}\nviolets\nsugar\n", author=who)
    for x in ("alice", "bob", "carol"):
        for y in ("alice", "bob", "carol"):
            s.pull(x, y)
    texts = {s.text(x, "poem.txt") for x in ("alice", "bob", "carol")}
    assert len(texts) == 1
    (t,) = texts
    assert t.count("=======") == 2 and t.count(">>>>>>>") == 1


def test_zombie_line_and_its_resolution() -> None:
    s = Sandbox()
    _base(s)
    s.pull("bob", "main")
    s.edit("main", "poem.txt", "roses\n", author="alice")  # deletes violets, sugar
    s.edit("bob", "poem.txt", "roses\nviolets\nhoney\nsugar\n", author="bob")
    s.pull("main", "bob")
    t = s.text("main", "poem.txt")
    # The deleted lines honey was written between come back with it, as the zombie.
    assert t.startswith("roses\n>>>>>>> 1 [zombie ")
    assert t.endswith("\nviolets\nhoney\nsugar\n<<<<<<< 1\n")
    assert s.record("main", {"poem.txt": t}) is None
    s.edit("main", "poem.txt", "roses\nhoney\n")
    assert s.text("main", "poem.txt") == "roses\nhoney\n"
    s.pull("bob", "main")
    assert s.text("bob", "poem.txt") == "roses\nhoney\n"


@pytest.mark.parametrize("kept", ["roses\nviolets\nhoney\nsugar\n", "roses\nhoney\nsugar\n"])
def test_zombie_context_in_every_order_and_kept_by_a_resolution(kept: str) -> None:
    """A line inserted where a concurrent change deleted its neighbours brings them back
    as a zombie conflict, identically whichever change a channel applied first; a
    resolution keeping some of them revives exactly those, everywhere it travels, and
    unrecording it brings the conflict back."""
    s = Sandbox()
    _base(s)
    s.pull("bob", "main")
    delete = s.edit("main", "poem.txt", "roses\n", author="alice")
    insert = s.edit("bob", "poem.txt", "roses\nviolets\nhoney\nsugar\n", author="bob")
    s.pull("carol", "bob")  # carol: the insertion first, then the deletion
    s.pull("carol", "main")
    s.pull("main", "bob")  # main: the deletion first
    assert s.channel("carol").order.index(insert) < s.channel("carol").order.index(delete)
    t = s.text("main", "poem.txt")
    assert s.text("carol", "poem.txt") == t
    assert "violets\nhoney\nsugar\n<<<<<<<" in t
    resolution = s.edit("main", "poem.txt", kept)
    assert s.text("main", "poem.txt") == kept
    s.pull("carol", "main")
    assert s.text("carol", "poem.txt") == kept
    s.channel("carol").unrecord(resolution)
    assert s.text("carol", "poem.txt") == t


def test_unrecord_refused_while_depended_upon() -> None:
    s = Sandbox()
    first = _base(s)
    s.edit("main", "poem.txt", "roses\nviolets\nsugar\nhoney\n")
    with pytest.raises(DependedUponError):
        s.channel("main").unrecord(first)


def test_double_deletion_then_unrecord_keeps_line_deleted() -> None:
    s = Sandbox()
    _base(s)
    s.pull("bob", "main")
    a = s.edit("main", "poem.txt", "roses\nsugar\n", author="alice")
    s.edit("bob", "poem.txt", "roses\nsugar\n", author="bob")
    s.pull("main", "bob")
    assert s.text("main", "poem.txt") == "roses\nsugar\n"
    s.channel("main").unrecord(a)
    assert s.text("main", "poem.txt") == "roses\nsugar\n"


def test_rollback_inverts_and_rollback_of_rollback_restores() -> None:
    s = Sandbox()
    _base(s)
    e = s.edit("main", "poem.txt", "roses\nsugar\nhoney\n")
    r = s.rollback("main", e)
    assert r is not None
    assert s.text("main", "poem.txt") == "roses\nviolets\nsugar\n"
    s.rollback("main", r)
    assert s.text("main", "poem.txt") == "roses\nsugar\nhoney\n"


def _edges_change(s: Sandbox, channel: str, edges: list[tuple[Pos, Pos]], who: str) -> str:
    """Record a change that only adds ordering edges (as a resolution made elsewhere)."""
    ch = s.channel(channel)
    inode = ch.file_inodes()["poem.txt"]
    c = Change(
        message=f"order by {who}",
        authors=(who,),
        timestamp=1,
        dependencies=ch.minimise({e[0][0] for e in edges} | {e[1][0] for e in edges}),
        extra_known=(),
        hunks=(AddEdges(inode, tuple(edges)),),
        contents=b"",
    ).sealed()
    s.store.put(c)
    ch.apply(c.hash)
    return c.hash


def _pos_of(s: Sandbox, channel: str, text: bytes) -> Pos:
    ch = s.channel(channel)
    inode = ch.file_inodes()["poem.txt"]
    (pos,) = [ol.pos for ol in ch.output_lines(inode) if ol.text == text and ol.pos]
    return pos


def test_cyclic_conflict_is_collapsed_and_resolvable() -> None:
    s = _two_party_conflict()
    red, blue = _pos_of(s, "main", b"red\n"), _pos_of(s, "main", b"blue\n")
    _edges_change(s, "main", [(red, blue)], "alice")
    _edges_change(s, "main", [(blue, red)], "bob")
    t = s.text("main", "poem.txt")
    assert "cyclic" in t and t.index("roses") < t.index("red") < t.index("sugar")
    assert s.record("main", {"poem.txt": t}) is None
    s.edit("main", "poem.txt", "roses\nviolets\nblue\nred\nsugar\n")
    assert s.text("main", "poem.txt") == "roses\nviolets\nblue\nred\nsugar\n"


def test_file_add_move_remove() -> None:
    s = Sandbox()
    _base(s)
    s.record("main", {"poem.txt": "roses\nviolets\nsugar\n", "b.txt": "x\n"})
    s.record(
        "main",
        {"verse.txt": "roses\nviolets\nsugar\n", "b.txt": "x\n"},
        moves={"verse.txt": "poem.txt"},
    )
    assert sorted(s.channel("main").output()) == ["b.txt", "verse.txt"]
    s.record("main", {"verse.txt": "roses\n"})
    assert s.channel("main").output() == {"verse.txt": b"roses\n"}


def test_two_names_for_one_file_and_its_resolution() -> None:
    s = Sandbox()
    s.record("main", {"a.txt": "text\n"})
    s.pull("bob", "main")
    s.record("main", {"b.txt": "text\n"}, moves={"b.txt": "a.txt"}, author="alice")
    s.record("bob", {"c.txt": "text\n"}, moves={"c.txt": "a.txt"}, author="bob")
    s.pull("main", "bob")
    assert s.channel("main").output() == {"b.txt": b"text\n", "c.txt": b"text\n"}
    s.record("main", {"b.txt": "text\n"})  # keep one name
    s.pull("bob", "main")
    assert s.channel("bob").output() == {"b.txt": b"text\n"}


def test_renames_colliding_on_one_name() -> None:
    s = Sandbox()
    s.record("main", {"a.txt": "from a\n", "b.txt": "from b\n"})
    s.pull("bob", "main")
    s.record("main", {"z.txt": "from a\n", "b.txt": "from b\n"}, moves={"z.txt": "a.txt"})
    s.record("bob", {"a.txt": "from a\n", "z.txt": "from b\n"}, moves={"z.txt": "b.txt"})
    s.pull("main", "bob")
    s.pull("bob", "main")
    out = s.channel("main").output()
    assert out == s.channel("bob").output()
    alias = next(p for p in out if p.startswith("z.txt.~"))
    assert sorted(out.values()) == [b"from a\n", b"from b\n"] and "z.txt" in out
    # Resolve by renaming the second file; the conflict is gone everywhere.
    s.record("main", {"z.txt": out["z.txt"], "y.txt": out[alias]}, moves={"y.txt": alias})
    s.pull("bob", "main")
    assert sorted(s.channel("bob").output()) == ["y.txt", "z.txt"]


def test_clone_by_replay_equals_source() -> None:
    s = Sandbox()
    _base(s)
    s.edit("main", "poem.txt", "roses\nred\nsugar\n")
    s.pull("clone", "main")
    assert s.channel("clone").output() == s.channel("main").output()
    assert s.channel("clone").graph.canonical() == s.channel("main").graph.canonical()


def _edited_inside_deleted_directory() -> Sandbox:
    """Alice deletes directory ``dir/`` (both its files); Bob, concurrently, adds a line to
    ``dir/a.txt``; main has both changes."""
    s = Sandbox()
    s.record("main", {"dir/a.txt": "one\n", "dir/b.txt": "two\n", "top.txt": "top\n"})
    s.pull("bob", "main")
    s.record("main", {"top.txt": "top\n"}, author="alice")
    s.edit("bob", "dir/a.txt", "one\nbob's line\n", author="bob")
    s.pull("main", "bob")
    return s


def test_file_edited_inside_a_deleted_directory_is_a_conflict() -> None:
    s = _edited_inside_deleted_directory()
    main = s.channel("main")
    # The edited file is kept and shown at its old name, as a file-tree conflict; the
    # untouched one stays deleted. Both orders of the same changes print the same.
    assert main.output() == {"dir/a.txt": b"one\nbob's line\n", "top.txt": b"top\n"}
    assert list(main.zombie_files().values()) == ["dir/a.txt"]
    s.pull("bob", "main")
    assert s.channel("bob").output() == main.output()
    # Recording it unchanged records nothing: the conflict stays.
    assert s.record("main", main.output()) is None
    # Removing it resolves the conflict by deleting the file, everywhere.
    res = s.record("main", {"top.txt": "top\n"})
    assert res is not None
    assert main.output() == {"top.txt": b"top\n"} and main.zombie_files() == {}
    s.pull("bob", "main")
    assert s.channel("bob").output() == {"top.txt": b"top\n"}
    # Unrecording the resolution brings the conflict back.
    main.unrecord(res.hash)
    assert list(main.zombie_files().values()) == ["dir/a.txt"]


def test_file_edited_inside_a_deleted_directory_kept_by_editing_it() -> None:
    s = _edited_inside_deleted_directory()
    s.edit("main", "dir/a.txt", "one\nbob's line\nkept\n")
    main = s.channel("main")
    assert main.zombie_files() == {}
    assert main.output()["dir/a.txt"] == b"one\nbob's line\nkept\n"
    assert s.record("main", main.output()) is None
    s.pull("bob", "main")
    assert s.channel("bob").output() == main.output()


def test_file_edited_then_deleted_in_sequence_stays_deleted() -> None:
    """Only a concurrent edit keeps a deleted file: one deleted after its edits (or by
    rolling back its creation after them) is gone."""
    s = Sandbox()
    add = s.record("main", {"dir/a.txt": "one\n", "b.txt": "x\n"})
    assert add is not None
    s.edit("main", "dir/a.txt", "one\ntwo\n", author="bob")
    s.edit("main", "dir/a.txt", "zero\none\ntwo\n")
    s.record("main", {"b.txt": "x\n"})
    assert s.channel("main").output() == {"b.txt": b"x\n"}
    s.pull("bob", "main")
    assert s.channel("bob").zombie_files() == {}
    t = Sandbox()
    t.record("main", {"a.txt": "one\n"})
    first = t.channel("main").order[0]
    t.edit("main", "a.txt", "one\ntwo\n")
    t.rollback("main", first)
    assert t.channel("main").output() == {}


def test_directory_moved_as_one_then_deleted_while_a_file_is_added_in_it() -> None:
    """Directories are entities (paths ending in ``/``): an empty one is kept, a move
    renames it with its files in one change, and one deleted while a concurrent change
    adds a file in it is printed back (at the name the file is under) as a file-tree
    conflict, identically in both orders; recording unchanged keeps the conflict,
    recording something inside keeps the directory, removing the file removes it."""
    s = Sandbox()
    s.record("main", {"dir/": "", "dir/a.txt": "one\n", "empty/": "", "top.txt": "t\n"})
    moves = {"new/": "dir/", "new/a.txt": "dir/a.txt"}
    s.record(
        "main", {"new/": "", "new/a.txt": "one\n", "empty/": "", "top.txt": "t\n"}, moves=moves
    )
    assert set(s.channel("main").output()) == {"empty/", "new/", "new/a.txt", "top.txt"}
    s.pull("bob", "main")
    s.record("main", {"empty/": "", "top.txt": "t\n"}, author="alice")  # deletes new/
    bob = {"new/": "", "new/a.txt": "one\n", "new/b.txt": "bee\n", "empty/": "", "top.txt": "t\n"}
    s.record("bob", bob, author="bob")
    s.pull("carol", "bob")
    s.pull("carol", "main")
    s.pull("main", "bob")
    main = s.channel("main")
    assert main.output() == {"empty/": b"", "new/": b"", "new/b.txt": b"bee\n", "top.txt": b"t\n"}
    assert list(main.zombie_files().values()) == ["new/"]
    assert s.channel("carol").output() == main.output()
    assert s.record("main", main.output()) is None
    removed = s.record("carol", {"empty/": "", "top.txt": "t\n"})
    assert removed is not None and s.channel("carol").output() == {"empty/": b"", "top.txt": b"t\n"}
    kept = {**main.output(), "new/b.txt": b"bee\nkept\n"}
    s.record("main", kept)
    assert main.output() == kept and main.zombie_files() == {}
