"""Recording: a change from a working copy's files (a diff against the channel's output),
and rollback (the change that inverts another)."""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher

from aspen_pijul import limits
from aspen_pijul.errors import TooLargeError
from aspen_pijul.model.change import (
    SELF,
    AddEdges,
    AddFile,
    AddLines,
    AddName,
    Change,
    Delete,
    Edge,
    Element,
    Hunk,
    Pos,
    Revive,
)
from aspen_pijul.model.channel import Channel
from aspen_pijul.model.output import MARKER_PREFIXES, OutLine, alive_frontier, render

__all__ = ["Meta", "record", "rollback", "split_lines"]


@dataclass(frozen=True)
class Meta:
    """Who and when a change is recorded by."""

    message: str
    authors: tuple[str, ...] = ()
    timestamp: int = 0
    description: str = ""


def split_lines(data: bytes, path: str = "") -> list[bytes]:
    """A file's vertices: its lines, or the whole file as one vertex if it is binary (a NUL
    byte in its first ``BINARY_SNIFF_BYTES``). Files over ``MAX_FILE_BYTES`` are refused."""
    if len(data) > limits.MAX_FILE_BYTES:
        raise TooLargeError(
            f"{path or 'file'} is {len(data)} bytes, over MAX_FILE_BYTES={limits.MAX_FILE_BYTES}"
        )
    if not data:
        return []
    if b"\0" in data[: limits.BINARY_SNIFF_BYTES]:
        return [data]
    lines = data.splitlines(keepends=True)
    if len(lines) > limits.MAX_FILE_LINES:
        raise TooLargeError(f"{path} has {len(lines)} lines, over MAX_FILE_LINES")
    return lines


@dataclass
class _Builder:
    """Accumulates hunks, positions and contents of a change being recorded."""

    hunks: list[Hunk] = field(default_factory=list)
    contents: bytearray = field(default_factory=bytearray)
    next_pos: int = 0
    deleted: list[Element] = field(default_factory=list)
    extra_known: set[str] = field(default_factory=set)
    #: inode -> kept old vertex -> its line number in the new text.
    ranks: dict[Pos, dict[Pos, int]] = field(default_factory=dict)

    def take(self, n: int) -> int:
        p = self.next_pos
        self.next_pos += n
        return p

    def lines(self, inode: Pos, up: list[Pos], down: list[Pos], lines: list[bytes]) -> Pos:
        """Add ``lines``; returns the last new vertex."""
        spans = []
        for line in lines:
            spans.append((len(self.contents), len(line)))
            self.contents += line
        pos = self.take(len(lines))
        self.hunks.append(AddLines(pos, inode, tuple(up), tuple(down), tuple(spans)))
        return (SELF, pos + len(lines) - 1)


def _diff_file(
    ch: Channel,
    b: _Builder,
    inode: Pos,
    out: list[OutLine],
    new: list[bytes],
    forced: bool = False,
    cut: tuple[Edge, ...] = (),
) -> None:
    """Hunks turning file ``inode``'s printed lines ``out`` into ``new``.

    Normally an ordering edge is added only between kept lines the output did not already
    print next to each other; ``forced`` adds one between every pair of consecutive kept
    lines, and ``cut`` are existing edges to delete because they contradict the new order."""
    ops = SequenceMatcher(None, [o.text for o in out], new, autojunk=False).get_opcodes()
    # The new file as entries: ("old", index in out) | ("new", text) | ("marker", None).
    seq: list[tuple[str, object]] = []
    deleted: set[int] = set()
    ranks = b.ranks.setdefault(inode, {})
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            for k in range(i1, i2):
                p = out[k].pos
                if p is not None:
                    ranks[p] = j1 + k - i1
                seq.append(("old", k) if out[k].pos is not None else ("marker", None))
            continue
        for k in range(i1, i2):
            if out[k].pos is not None:
                deleted.add(k)
        seq.extend(("new", t) for t in new[j1:j2])
    g = ch.graph
    # A printed line already deleted is a zombie's deleted context: dropping it deletes
    # nothing more; keeping it revives it (below).
    gone: list[Pos] = []
    for i in sorted(deleted):
        p = out[i].pos
        if p is not None and g.vertex_alive(p):
            gone.append(p)
    del_elems: list[Element] = list(gone)
    # Deleting a line knows every change whose edges touch it: lines they inserted next to
    # it are then not zombies of this deletion.
    for v in gone:
        touching = [(u, v) for u in g.inn.get(v, ())] + [(v, x) for x in g.out.get(v, ())]
        for e in touching:
            b.extra_known |= g.edges.get(e, set())
    # Adjacent in the old output (deleted lines left out): pairs that need no new edge.
    kept = [k for k in range(len(out)) if k not in deleted]
    follows = {kept[i + 1]: kept[i] for i in range(len(kept) - 1)}
    first_kept = kept[0] if kept else None

    edges: list[Edge] = []
    cyclic: list[Pos] = []
    prev: Pos = inode  # the file's root
    prev_k: int | None = None  # index in ``out`` of ``prev``, None for root / new lines
    marker = False
    pending: list[bytes] = []

    def flush(down: list[Pos]) -> None:
        nonlocal prev, prev_k, marker, pending
        if pending:
            if prev_k is not None and not marker:  # new lines next to a kept zombie
                b.extra_known |= out[prev_k].zombie
            prev = b.lines(inode, [] if marker else [prev], down, pending)
            prev_k, marker, pending = None, False, []

    for kind, arg in seq:
        if kind == "new":
            pending.append(arg)  # type: ignore[arg-type]
            continue
        if kind == "marker":
            flush([])
            marker = True
            continue
        k = int(arg)  # type: ignore[call-overload]
        w = out[k].pos
        assert w is not None
        if pending:
            b.extra_known |= out[k].zombie
            flush([w])
        elif not marker:
            adjacent = (prev_k is None and prev == inode and k == first_kept) or (
                prev_k is not None and follows.get(k) == prev_k
            )
            zombie = out[k].zombie or (prev_k is not None and out[prev_k].zombie)
            if not adjacent or zombie or forced:
                edges.append((prev, w))
            if zombie:
                b.extra_known |= out[k].zombie
                if prev_k is not None:
                    b.extra_known |= out[prev_k].zombie
        if out[k].cyclic:
            cyclic.append(w)
        prev, prev_k, marker = w, k, False
    flush([])
    if cyclic and not any(kind == "marker" for kind, _ in seq):
        # A cyclic conflict resolved: drop alive edges that go against the new order.
        rank = {v: i for i, v in enumerate(cyclic)}
        for v in cyclic:
            for x in sorted(ch.graph.out.get(v, ())):
                if x in rank and rank[x] < rank[v] and ch.graph.edge_alive((v, x)):
                    del_elems.append((v, x))
    del_elems.extend(cut)
    # An edge asked for again after a change deleted it is revived too.
    revive: list[tuple[Element, tuple[str, ...]]] = [
        (e, tuple(sorted(g.effective_deleters(e)))) for e in edges if e in g.edges
    ]
    # A zombie's deleted context line the new text keeps is alive again.
    kept_context = [p for k in kept if (p := out[k].pos) is not None and not g.vertex_alive(p)]
    revive += [(p, tuple(sorted(g.effective_deleters(p)))) for p in kept_context]
    revive = [(e, dels) for e, dels in revive if dels]
    if revive:
        b.hunks.append(Revive(tuple(revive)))
    if edges:
        b.hunks.append(AddEdges(inode, tuple(edges)))
    if del_elems:
        b.hunks.append(Delete(tuple(del_elems)))


def record(
    ch: Channel, tree: dict[str, bytes], meta: Meta, moves: dict[str, str] | None = None
) -> Change | None:
    """The change from ``ch``'s output to the working files ``tree`` (path -> bytes of
    every tracked file), or None if there is nothing to record.

    ``moves`` maps a new path to the channel path it was moved from. Channel paths neither
    in ``tree`` nor moved are removed; paths of ``tree`` the channel lacks are added."""
    moves = dict(moves or {})
    change, checks, b = _build(ch, tree, meta, moves, {})
    if change is None or not checks:
        return change
    bad = _mismatches(ch, change, checks, tree)
    if not bad:
        return change
    # The new order contradicts edges already in the graph: say every order explicitly and
    # cut the edges that contradict it.
    redo = {path: _contradicting_edges(ch, change, inode, b.ranks[inode]) for path, inode in bad}
    change, _, _ = _build(ch, tree, meta, moves, redo)
    return change


def _zombie_file(ch: Channel, b: _Builder, inode: Pos, real: str, data: bytes | None) -> None:
    """Resolve a deleted-but-edited file (:meth:`Channel.zombie_files`) if the working copy
    says how: removed deletes its alive lines; edited revives its deleted name ``real``.
    A directory (``real`` ends in ``/``) is only passed here when something recorded
    inside it keeps it: its name is revived."""
    g = ch.graph
    if data is None:
        b.hunks.append(Delete(tuple(v for v in g.file_vertices(inode) if g.vertex_alive(v))))
    elif real.endswith("/") or [o.text for o in ch.output_lines(inode)] != split_lines(data, real):
        dead = sorted(n for n, (i, p) in g.names.items() if i == inode and p == real)
        b.hunks.append(Revive(tuple((n, tuple(sorted(g.effective_deleters(n)))) for n in dead)))


def _build(
    ch: Channel,
    tree: dict[str, bytes],
    meta: Meta,
    moves: dict[str, str],
    redo: dict[str, tuple[Edge, ...]],
) -> tuple[Change | None, list[tuple[str, Pos]], _Builder]:
    """The change, the (path, inode) of the edited files whose output must be checked, and
    the builder."""
    b = _Builder()
    checks: list[tuple[str, Pos]] = []
    table = ch.file_table()
    names = {p: inode for p, (inode, _) in table.items()}
    path_inode: dict[str, Pos] = {}
    for new_path, old_path in sorted(moves.items()):
        inode, real = table[old_path]
        elems = tuple(n for n, p in ch.graph.names_of(inode) if p == real)
        b.hunks.append(Delete(elems))
        b.hunks.append(AddName(b.take(1), inode, new_path))
        path_inode[new_path] = inode
    moved_from = set(moves.values())
    zombies = ch.zombie_files()
    kept_dirs: dict[str, Pos] = {}  # deleted directories printed back, still in the tree
    for path, inode in names.items():
        if path in moved_from:
            continue
        if inode in zombies and path.endswith("/"):
            if path in tree:
                kept_dirs[path] = path_inode[path] = inode
        elif inode in zombies:
            _zombie_file(ch, b, inode, table[path][1], tree.get(path))
            if path in tree:
                path_inode[path] = inode
        elif path not in tree:
            real = table[path][1]
            elems = tuple(n for n, p in ch.graph.names_of(inode) if p == real)
            b.hunks.append(Delete(elems))
        else:
            path_inode[path] = inode
    edited: list[str] = []
    for path in sorted(tree):
        data = tree[path]
        if len(path.encode()) > limits.MAX_PATH_BYTES:
            raise TooLargeError(f"path over MAX_PATH_BYTES: {path[:80]}…")
        lines = split_lines(data, path)
        if path not in path_inode:
            pos = b.take(2)
            b.hunks.append(AddFile(pos, path))
            if lines:
                b.lines((SELF, pos), [(SELF, pos)], [], lines)
            edited.append(path)
            continue
        inode = path_inode[path]
        out = ch.output_lines(inode)
        if [o.text for o in out] == lines:
            continue
        edited.append(path)
        _diff_file(ch, b, inode, out, lines, path in redo, redo.get(path, ()))
        if not any(ln.startswith(MARKER_PREFIXES) for ln in lines):
            checks.append((path, inode))
    for path, inode in kept_dirs.items():  # kept by recording something inside it
        if any(p.startswith(path) for p in edited):
            _zombie_file(ch, b, inode, table[path][1], b"")
    if not b.hunks:
        return None, [], b
    return _seal(ch, b.hunks, bytes(b.contents), meta, b.extra_known), checks, b


def _mismatches(
    ch: Channel, change: Change, checks: list[tuple[str, Pos]], tree: dict[str, bytes]
) -> list[tuple[str, Pos]]:
    """The checked files whose output, with ``change`` applied, is not their new text."""
    with ch.trial(change):
        return [
            (path, inode) for path, inode in checks if render(ch.output_lines(inode)) != tree[path]
        ]


def _contradicting_edges(
    ch: Channel, change: Change, inode: Pos, rank: dict[Pos, int]
) -> tuple[Edge, ...]:
    """Existing alive edges leaving a kept line (with ``change`` applied) towards a line the
    new text puts before it (``rank``: line numbers), directly or through deleted lines."""
    with ch.trial(change):
        g = ch.graph
        alive = {v for v in g.file_vertices(inode) if g.alive(v)}
        cut: list[Edge] = []
        for v in sorted(rank):
            if v[0] == change.hash:
                continue
            for x in sorted(g.out.get(v, ())):
                e = (v, x)
                if not g.edge_alive(e) or g.edges[e] == {change.hash}:
                    continue
                ahead = {x} if x in alive else alive_frontier(g, inode, alive, x)
                if any(rank.get(w, 1 << 62) < rank[v] for w in ahead):
                    cut.append(e)
        return tuple(cut)


def _seal(ch: Channel, hunks: list[Hunk], contents: bytes, meta: Meta, extra: set[str]) -> Change:
    draft = Change(
        message=meta.message,
        description=meta.description,
        authors=meta.authors,
        timestamp=meta.timestamp,
        dependencies=(),
        extra_known=(),
        hunks=tuple(hunks),
        contents=contents,
    )
    refs = draft.referenced_changes()
    extra = set(extra)
    g = ch.graph
    for x in hunks:
        if isinstance(x, Delete):
            for e in x.elements:
                if isinstance(e[0], tuple):  # deleting an edge depends on its introducers
                    refs |= g.edges.get(e, set())  # type: ignore[arg-type]
                elif e in g.names:  # deleting a name knows the file's lines it saw, so
                    # only a concurrent edit makes the file a zombie (Channel.zombie_files)
                    inode = g.names[e][0]
                    extra |= {v[0] for v in g.file_vertices(inode) if g.vertex_alive(v)}
    deps = ch.minimise(refs)
    known = tuple(sorted(extra - set(deps) - {SELF}))
    if len(meta.message.encode()) > limits.MAX_MESSAGE_BYTES:
        raise TooLargeError("message over MAX_MESSAGE_BYTES")
    return Change(
        message=draft.message,
        description=draft.description,
        authors=draft.authors,
        timestamp=draft.timestamp,
        dependencies=deps,
        extra_known=known,
        hunks=draft.hunks,
        contents=contents,
    ).sealed()


def rollback(ch: Channel, h: str, meta: Meta) -> Change | None:
    """The change that inverts change ``h`` of ``ch`` (None if nothing is left to invert)."""
    c = ch.store.get(h)
    g = ch.graph
    dels: list[Element] = []
    revives: list[tuple[Element, tuple[str, ...]]] = []
    for x in c.resolved_hunks():
        if isinstance(x, AddFile):
            dels.append((h, x.pos + 1))
        elif isinstance(x, AddName):
            dels.append((h, x.pos))
        elif isinstance(x, AddLines):
            dels.extend((h, x.pos + i) for i in range(len(x.spans)))
        elif isinstance(x, AddEdges):
            dels.extend(x.edges)
        elif isinstance(x, Delete):
            revives.extend((e, (h,)) for e in x.elements)
        elif isinstance(x, Revive):
            dels.extend(e for e, _ in x.elements)
    dels = [e for e in dels if g.alive(e)]
    hunks: list[Hunk] = []
    if dels:
        hunks.append(Delete(tuple(dels)))
    if revives:
        hunks.append(Revive(tuple(revives)))
    if not hunks:
        return None
    return _seal(ch, hunks, b"", meta, set())
