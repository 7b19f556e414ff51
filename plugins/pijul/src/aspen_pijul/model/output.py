"""A file's text from the graph, with Pijul-style conflict markers.

Alive vertices are ordered by the edges between them, deleted vertices being transparent.
Where the order is total the text is plain; vertices incomparable with their neighbours
form an *order conflict* whose sides (the connected groups) are printed between
``>>>>>>>``, ``=======`` and ``<<<<<<<`` in a fixed order (by their smallest vertex).
Strongly connected vertices (a *cyclic conflict*) are collapsed into one node before
anything is ordered and printed as a conflict of single lines, so cycles are never walked.
An alive line whose own context was deleted by a change that did not know it is a
*zombie*, printed between markers until a change that knows the deletion connects it;
the deleted context lines it is attached to are brought back with it, inside the same
markers (as Pijul does), so the conflict shows what the line was written next to.
Everything is sorted, so the same graph always prints the same bytes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from aspen_pijul.model.change import Pos
from aspen_pijul.model.graph import Graph
from aspen_pijul.model.hashing import short

__all__ = ["OutLine", "alive_frontier", "output_file", "render"]

OPEN = b">>>>>>>"
SEP = b"======="
CLOSE = b"<<<<<<<"
MARKER_PREFIXES = (OPEN, SEP, CLOSE)


@dataclass(frozen=True)
class OutLine:
    """One printed line: a vertex's text, or a marker (``pos is None``).

    ``zombie`` holds the deletions that make the vertex a zombie (empty if none);
    ``cyclic`` says the vertex is part of a cyclic conflict."""

    text: bytes
    pos: Pos | None
    zombie: frozenset[str] = frozenset()
    cyclic: bool = False


# Tokens of the emission: ("line", pos) | ("open", labels) | ("sep", labels) | ("close", "")
Token = tuple[str, object]


def alive_frontier(
    g: Graph,
    inode: Pos,
    alive: set[Pos],
    start: Pos,
    memo: dict[Pos, frozenset[Pos]] | None = None,
) -> set[Pos]:
    """The alive vertices reached from ``start`` through alive edges and deleted vertices
    (``memo``: the known frontiers of some deleted vertices)."""
    found: set[Pos] = set()
    seen = {start}
    stack = [start]
    while stack:
        u = stack.pop()
        for w in g.out.get(u, ()):
            if w in seen or not g.edge_alive((u, w)):
                continue
            seen.add(w)
            if w in alive:
                found.add(w)
            elif memo is not None and w in memo:
                found |= memo[w]
            elif g.vertices.get(w, (None,))[0] == inode:
                stack.append(w)
    return found


def _alive_successors(g: Graph, inode: Pos, alive: set[Pos]) -> dict[Pos, set[Pos]]:
    """For each alive vertex, the alive vertices it reaches through deleted ones."""
    memo: dict[Pos, frozenset[Pos]] = {}
    succ: dict[Pos, set[Pos]] = {}
    for v in sorted(alive):
        res: set[Pos] = set()
        for w in g.out.get(v, ()):
            if not g.edge_alive((v, w)):
                continue
            if w in alive:
                res.add(w)
            elif g.vertices.get(w, (None,))[0] == inode:
                if w not in memo:
                    memo[w] = frozenset(alive_frontier(g, inode, alive, w, memo))
                res |= memo[w]
        res.discard(v)
        succ[v] = res
    return succ


def _sccs(nodes: list[Pos], succ: dict[Pos, set[Pos]]) -> list[list[Pos]]:
    """Strongly connected components (iterative Tarjan), each sorted."""
    index: dict[Pos, int] = {}
    low: dict[Pos, int] = {}
    on: set[Pos] = set()
    stack: list[Pos] = []
    comps: list[list[Pos]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(succ[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(succ[w]))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp))
    return comps


class _Emitter:
    """Emission of the condensed DAG, recursively splitting conflicts into sides."""

    def __init__(self, comps: list[list[Pos]], csucc: list[set[int]]) -> None:
        n = len(comps)
        indeg = [0] * n
        for s in csucc:
            for t in s:
                indeg[t] += 1
        heap = [(comps[i][0], i) for i in range(n) if indeg[i] == 0]
        heapq.heapify(heap)
        order: list[int] = []
        while heap:
            _, i = heapq.heappop(heap)
            order.append(i)
            for t in csucc[i]:
                indeg[t] -= 1
                if indeg[t] == 0:
                    heapq.heappush(heap, (comps[t][0], t))
        # Re-index by topological rank: bit i is the i-th node in order.
        rank = {c: r for r, c in enumerate(order)}
        self.comps = [comps[c] for c in order]
        self.succ = [{rank[t] for t in csucc[c]} for c in order]
        self.desc = [0] * n
        for r in range(n - 1, -1, -1):
            d = 0
            for t in self.succ[r]:
                d |= (1 << t) | self.desc[t]
            self.desc[r] = d
        self.anc = [0] * n
        for r in range(n):
            for t in self.succ[r]:
                self.anc[t] |= (1 << r) | self.anc[r]
        self.tokens: list[Token] = []

    @staticmethod
    def _bits(mask: int) -> list[int]:
        out = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out

    def _node(self, r: int) -> None:
        comp = self.comps[r]
        if len(comp) == 1:
            self.tokens.append(("line", comp[0]))
            return
        for i, v in enumerate(comp):  # a cyclic conflict: one side per line
            self.tokens.append(("open" if i == 0 else "sep", ("cyclic", (v[0],))))
            self.tokens.append(("cline", v))
        self.tokens.append(("close", ""))

    def emit(self, mask: int) -> None:
        """Emit the nodes of ``mask`` (topologically closed between two cuts)."""
        members = self._bits(mask)
        if len(members) == 1:
            self._node(members[0])
            return
        n = len(members)
        cuts = {r for r in members if bin((self.anc[r] | self.desc[r]) & mask).count("1") == n - 1}
        if not cuts:
            self._region(mask, no_cut=True)
            return
        segment = 0
        for r in members:  # members are in topological order
            if r in cuts:
                if segment:
                    self._region(segment)
                    segment = 0
                self._node(r)
            else:
                segment |= 1 << r
        if segment:
            self._region(segment)

    def _components(self, mask: int) -> list[int]:
        comps: list[int] = []
        remaining = mask
        while remaining:
            low = remaining & -remaining
            comp = low
            frontier = low
            while frontier:
                grow = 0
                for r in self._bits(frontier):
                    grow |= (self.anc[r] | self.desc[r]) & mask
                frontier = grow & ~comp
                comp |= grow
            comps.append(comp)
            remaining &= ~comp
        return comps

    def _key(self, mask: int) -> Pos:
        return min(self.comps[r][0] for r in self._bits(mask))

    def _region(self, mask: int, no_cut: bool = False) -> None:
        sides = self._components(mask)
        if len(sides) == 1:
            if not no_cut:
                self.emit(mask)
                return
            sides = self._by_source(mask)
        sides.sort(key=self._key)
        for i, side in enumerate(sides):
            labels = tuple(sorted({v[0] for r in self._bits(side) for v in self.comps[r]}))
            self.tokens.append(("open" if i == 0 else "sep", ("", labels)))
            self.emit(side)
        self.tokens.append(("close", ""))

    def _by_source(self, mask: int) -> list[int]:
        """Split a connected region without cuts: each node goes with its smallest source."""
        members = self._bits(mask)
        sources = [r for r in members if not self.anc[r] & mask]
        groups: dict[int, int] = {s: 1 << s for s in sources}
        for r in members:
            if r in groups:
                continue
            mine = [s for s in sources if self.anc[r] >> s & 1]
            best = min(mine, key=lambda s: self.comps[s][0])
            groups[best] |= 1 << r
        return list(groups.values())


def _zombies(
    g: Graph, alive: set[Pos], known: Callable[[str], frozenset[str]]
) -> dict[Pos, frozenset[str]]:
    """Alive vertices whose own context was deleted by a change that did not know them,
    not since connected by a change that knows that deletion: vertex -> those deleters."""
    out: dict[Pos, frozenset[str]] = {}
    for w in alive:
        intro = w[0]
        offending: set[str] = set()
        ctx = [(u, (u, w)) for u in g.inn.get(w, ())] + [(x, (w, x)) for x in g.out.get(w, ())]
        for x, e in ctx:
            if intro not in g.edges.get(e, ()) or x not in g.vertices or x in alive:
                continue
            for d in g.effective_deleters(x):
                if intro not in known(d) and d != intro:
                    offending.add(d)
        if not offending:
            continue
        for _, e in ctx:
            if not g.edge_alive(e):
                continue
            for r in g.edges[e]:
                if r != intro:
                    offending -= known(r) | {r}
        if offending:
            out[w] = frozenset(offending)
    return out


def _zombie_context(
    g: Graph, inode: Pos, zombies: dict[Pos, frozenset[str]]
) -> dict[Pos, frozenset[str]]:
    """The deleted lines a zombie is attached to (by an edge of the change that inserted
    it) whose deletion made it one: deleted vertex -> those deleters."""
    out: dict[Pos, set[str]] = {}
    for w, offending in zombies.items():
        intro = w[0]
        ctx = [(u, (u, w)) for u in g.inn.get(w, ())] + [(x, (w, x)) for x in g.out.get(w, ())]
        for x, e in ctx:
            if intro not in g.edges.get(e, ()) or g.vertices.get(x, (None,))[0] != inode:
                continue
            dels = g.effective_deleters(x) & offending
            if dels:
                out.setdefault(x, set()).update(dels)
    return {x: frozenset(d) for x, d in out.items()}


def output_file(g: Graph, inode: Pos, known: Callable[[str], frozenset[str]]) -> list[OutLine]:
    """The printed lines of file ``inode``; ``known(h)`` is what change ``h`` knew."""
    alive = {v for v in g.file_vertices(inode) if g.alive(v)}
    if not alive:
        return []
    zombies = _zombies(g, alive, known)
    if zombies:  # their deleted context is printed with them
        context = _zombie_context(g, inode, zombies)
        zombies.update(context)
        alive |= context.keys()
    succ = _alive_successors(g, inode, alive)
    nodes = sorted(alive)
    comps = _sccs(nodes, succ)
    comps.sort(key=lambda c: c[0])
    where = {v: i for i, c in enumerate(comps) for v in c}
    csucc = [set() for _ in comps]  # type: list[set[int]]
    for v in nodes:
        for w in succ[v]:
            if where[v] != where[w]:
                csucc[where[v]].add(where[w])
    em = _Emitter(comps, csucc)
    em.emit((1 << len(comps)) - 1)
    return _render_tokens(g, em.tokens, zombies)


def _marker(kind: bytes, number: int, labels: tuple[str, tuple[str, ...]] | None) -> bytes:
    if labels is None:
        return b"%s %d\n" % (kind, number)
    tag, hashes = labels
    words = ([tag] if tag else []) + [short(h) for h in hashes]
    return b"%s %d [%s]\n" % (kind, number, " ".join(words).encode())


def _render_tokens(
    g: Graph, tokens: list[Token], zombies: dict[Pos, frozenset[str]]
) -> list[OutLine]:
    # Wrap each run of zombie lines (not split by a marker) in its own markers.
    wrapped: list[Token] = []
    run: list[Pos] = []

    def flush() -> None:
        if run:
            dels = tuple(sorted(set().union(*(zombies[v] for v in run))))
            wrapped.append(("open", ("zombie", dels)))
            wrapped.extend(("line", v) for v in run)
            wrapped.append(("close", ""))
            run.clear()

    for t in tokens:
        if t[0] == "line" and t[1] in zombies:
            run.append(t[1])  # type: ignore[arg-type]
            continue
        flush()
        wrapped.append(t)
    flush()

    lines: list[OutLine] = []
    stack: list[int] = []
    counter = 0
    for kind, arg in wrapped:
        if kind == "open":
            counter += 1
            stack.append(counter)
            lines.append(OutLine(_marker(OPEN, counter, arg), None))  # type: ignore[arg-type]
        elif kind == "sep":
            lines.append(OutLine(_marker(SEP, stack[-1], arg), None))  # type: ignore[arg-type]
        elif kind == "close":
            lines.append(OutLine(_marker(CLOSE, stack.pop(), None), None))
        else:
            v: Pos = arg  # type: ignore[assignment]
            text = g.vertices[v][1]
            lines.append(OutLine(text, v, zombies.get(v, frozenset()), kind == "cline"))
    # A line without its newline gets one unless it is the file's last line.
    for i, ol in enumerate(lines[:-1]):
        if not ol.text.endswith(b"\n"):
            lines[i] = OutLine(ol.text + b"\n", ol.pos, ol.zombie, ol.cyclic)
    return lines


def render(lines: list[OutLine]) -> bytes:
    """The bytes of a printed file."""
    return b"".join(ol.text for ol in lines)
