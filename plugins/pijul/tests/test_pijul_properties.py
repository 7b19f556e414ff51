"""Property tests of the model over random multi-party histories (forks, edits, conflicts,
resolutions, unrecords, rollbacks, a directory added and deleted)."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aspen_pijul.errors import CorruptChangeError, DependedUponError, TooLargeError
from aspen_pijul.model.change import Change
from aspen_pijul.model.channel import Channel
from aspen_pijul.model.output import MARKER_PREFIXES, output_file, render
from aspen_pijul.model.sandbox import Sandbox

PARTIES = ("alice", "bob", "carol")
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _state(ch: Channel) -> tuple[object, dict[str, bytes]]:
    return ch.graph.canonical(), ch.output()


def _random_edit(rng: random.Random, text: bytes, counter: list[int]) -> bytes:
    lines = text.splitlines(keepends=True)
    if rng.random() < 0.5:  # resolve: drop the markers
        lines = [ln for ln in lines if not ln.startswith(MARKER_PREFIXES)]
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.5 or not lines:
            counter[0] += 1
            word = f"w{counter[0]}\n" if rng.random() < 0.8 else rng.choice(["x\n", "y\n"])
            lines.insert(rng.randint(0, len(lines)), word.encode())
        elif op < 0.8:
            del lines[rng.randrange(len(lines))]
        else:
            rng.shuffle(lines)
    return b"".join(lines)


def _history(seed: int, steps: int) -> tuple[Sandbox, list[str]]:
    """A random history; returns the sandbox and every recorded change (in record order)."""
    rng = random.Random(seed)
    s = Sandbox()
    counter = [0]
    recorded: list[str] = []
    first = s.record("alice", {"f.txt": "a\nb\nc\n", "g.txt": "1\n2\n"}, "base")
    assert first is not None
    recorded.append(first.hash)
    for p in PARTIES[1:]:
        s.pull(p, "alice")
    for _ in range(steps):
        who = rng.choice(PARTIES)
        ch = s.channel(who)
        kind = rng.random()
        if kind < 0.1:  # a directory: added with a file in it, or deleted with its files
            files = ch.output()
            if "d/" in files:
                files = {p: d for p, d in files.items() if not p.startswith("d/")}
            else:
                counter[0] += 1
                files |= {"d/": b"", f"d/h{counter[0]}.txt": b"h\n"}
            c = s.record(who, files, author=who)
            if c is not None:
                recorded.append(c.hash)
        elif kind < 0.55:
            files = ch.output()
            path = "f.txt" if rng.random() < 0.8 else "g.txt"
            new = files[path] = _random_edit(rng, files.get(path, b""), counter)
            c = s.record(who, dict(files), author=who)
            if c is not None:
                recorded.append(c.hash)
                # record-then-output round-trips (markers the user kept print again)
                if not any(ln.startswith(MARKER_PREFIXES) for ln in new.splitlines()):
                    assert ch.output()[path] == new, (ch.output()[path], new)
        elif kind < 0.8:
            s.pull(who, rng.choice(PARTIES))
        elif kind < 0.9 and len(ch.order) > 1:
            h = rng.choice(ch.order[1:])
            with contextlib.suppress(DependedUponError):
                ch.unrecord(h)
        elif len(ch.order) > 1:
            r = s.rollback(who, rng.choice(ch.order[1:]))
            if r is not None:
                recorded.append(r)
    return s, recorded


def _topological(rng: random.Random, ch: Channel) -> list[str]:
    left = set(ch.applied)
    order: list[str] = []
    while left:
        ready = sorted(h for h in left if all(d not in left for d in ch.store.get(h).dependencies))
        h = rng.choice(ready)
        order.append(h)
        left.discard(h)
    return order


@PROPS
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 14), order_seed=st.integers(0, 99))
def test_any_topological_order_gives_same_graph_and_bytes(
    seed: int, steps: int, order_seed: int
) -> None:
    s, _ = _history(seed, steps)
    rng = random.Random(order_seed)
    for ch in s.channels.values():
        other = Channel.replay("x", s.store, _topological(rng, ch))
        assert _state(other) == _state(ch)
    # Channels with the same change set print the same bytes.
    a, b = s.channel("alice"), s.channel("bob")
    s.pull("alice", "bob")
    s.pull("bob", "alice")
    assert _state(a) == _state(b)


@PROPS
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 14))
def test_incremental_equals_replay(seed: int, steps: int) -> None:
    s, _ = _history(seed, steps)
    for ch in s.channels.values():
        assert _state(Channel.replay("r", s.store, ch.order)) == _state(ch)
        # the printed text a channel keeps per file is what printing afresh gives
        fresh = {p: render(output_file(ch.graph, i, ch.known)) for p, i in ch.file_inodes().items()}
        assert fresh == ch.output()


@PROPS
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 14))
def test_apply_then_unrecord_is_identity(seed: int, steps: int) -> None:
    s, recorded = _history(seed, steps)
    ch = s.channel("alice")
    for h in recorded:
        if h in ch.applied or any(d not in ch.applied for d in s.store.get(h).dependencies):
            continue
        before = _state(ch)
        ch.apply(h)
        ch.unrecord(h)
        assert _state(ch) == before


@PROPS
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 8), data=st.data())
def test_one_byte_change_to_stored_change_is_detected(
    seed: int, steps: int, data: st.DataObject
) -> None:
    s, recorded = _history(seed, steps)
    h = data.draw(st.sampled_from(recorded))
    raw = bytearray(s.store.get(h).to_bytes())
    assert Change.from_bytes(bytes(raw), h).hash == h
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises((CorruptChangeError, TooLargeError)):
        Change.from_bytes(bytes(raw), h)


@PROPS
@given(
    size=st.integers(1, 8),
    cut=st.tuples(st.integers(0, 8), st.integers(1, 4)),
    at=st.integers(0, 9),
    first=st.sampled_from(["alice", "bob"]),
)
def test_zombie_brings_back_the_deleted_context(
    size: int, cut: tuple[int, int], at: int, first: str
) -> None:
    """Alice deletes a run of lines while Bob inserts one line among them: whichever is
    applied first, the merged file prints the deleted neighbours of Bob's line back with
    it inside the zombie markers; recording that unchanged records nothing, and removing
    the markers (keeping the lines) records a resolution that prints exactly that."""
    base = [f"l{i}\n" for i in range(size)]
    lo = min(cut[0], size - 1)
    hi = min(size, lo + cut[1])
    at = min(at, size)
    s = Sandbox()
    s.record("alice", {"f.txt": "".join(base)})
    s.pull("bob", "alice")
    s.edit("alice", "f.txt", "".join(base[:lo] + base[hi:]), author="alice")
    s.edit("bob", "f.txt", "".join([*base[:at], "new\n", *base[at:]]), author="bob")
    second = "bob" if first == "alice" else "alice"
    s.pull("carol", first)
    s.pull("carol", second)
    s.pull("alice", "bob")
    text = s.text("alice", "f.txt")
    assert s.text("carol", "f.txt") == text
    neighbours = {i for i in (at - 1, at) if 0 <= i < size}
    if neighbours & set(range(lo, hi)):  # Bob's line was written next to a deleted line
        lines = text.splitlines(keepends=True)
        opened = next(i for i, ln in enumerate(lines) if ln.startswith(">>>>>>>"))
        closed = next(i for i, ln in enumerate(lines) if ln.startswith("<<<<<<<"))
        block = lines[opened + 1 : closed]
        assert "new\n" in block and "zombie" in lines[opened]
        for i in neighbours & set(range(lo, hi)):
            assert base[i] in block
    else:
        assert "zombie" not in text and "new\n" in text
    assert s.record("alice", {"f.txt": text}) is None
    resolved = "".join(
        ln for ln in text.splitlines(keepends=True) if not ln.encode().startswith(MARKER_PREFIXES)
    )
    s.record("alice", {"f.txt": resolved})
    assert s.text("alice", "f.txt") == resolved
    s.pull("carol", "alice")
    assert s.text("carol", "f.txt") == resolved
