"""The graph of a channel, kept as sets keyed by the changes that contributed each part.

Applying a change adds its contributions; unrecording it removes exactly those. Nothing
depends on the order changes were applied in, so independent changes commute and the
graph of a channel is a function of its change set.

An element (vertex, name, edge) is *alive* when every change that deleted it has been
cancelled by a change that revived it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aspen_pijul.model.change import (
    AddEdges,
    AddFile,
    AddLines,
    AddName,
    Change,
    Delete,
    Edge,
    Element,
    Pos,
    Revive,
)

__all__ = ["Graph"]


def _discard(d: dict[Any, set[Any]], key: Any, value: Any) -> None:
    s = d.get(key)
    if s is not None:
        s.discard(value)
        if not s:
            del d[key]


@dataclass
class Graph:
    """Vertices, names, edges and relabels of every file of a channel."""

    #: inode -> change that introduced the file.
    inodes: dict[Pos, str] = field(default_factory=dict)
    #: name element -> (inode, path).
    names: dict[Pos, tuple[Pos, str]] = field(default_factory=dict)
    #: line vertex -> (inode, content bytes).
    vertices: dict[Pos, tuple[Pos, bytes]] = field(default_factory=dict)
    #: edge -> changes that introduced it.
    edges: dict[Edge, set[str]] = field(default_factory=dict)
    #: element -> changes that deleted it.
    deleters: dict[Element, set[str]] = field(default_factory=dict)
    #: element -> {reviving change: deleters it cancels}.
    revivers: dict[Element, dict[str, frozenset[str]]] = field(default_factory=dict)
    #: inode -> its line vertices (derived from ``vertices``).
    by_inode: dict[Pos, set[Pos]] = field(default_factory=lambda: defaultdict(set))
    #: adjacency (derived from ``edges``).
    out: dict[Pos, set[Pos]] = field(default_factory=lambda: defaultdict(set))
    inn: dict[Pos, set[Pos]] = field(default_factory=lambda: defaultdict(set))
    #: Counts every apply/remove; ``touched[inode]`` is the count when a change last
    #: touched that file's lines or edges (``touched_all``: an element whose file was not
    #: found), so a file's printed text may be cached until its count moves (derived).
    clock: int = 0
    touched: dict[Pos, int] = field(default_factory=dict)
    touched_all: int = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, giving a graph pickled before the touch counts had them."""
        state.setdefault("clock", 0)
        state.setdefault("touched", {})
        state.setdefault("touched_all", 0)
        self.__dict__.update(state)

    def file_stamp(self, inode: Pos) -> int:
        """The clock when file ``inode``'s printed text last may have changed."""
        return max(self.touched.get(inode, 0), self.touched_all)

    def _inode_of(self, v: Pos) -> Pos | None:
        vertex = self.vertices.get(v)
        if vertex is not None:
            return vertex[0]
        return v if v in self.inodes else None

    def _touch(self, el: Element) -> None:
        """Note that the file holding vertex, edge or name ``el`` changed."""
        if isinstance(el[0], tuple):  # an edge
            inode = self._inode_of(el[0]) or self._inode_of(el[1])  # type: ignore[arg-type]
        elif el in self.names:
            return  # a name: the file table, not the file's text
        else:
            inode = self._inode_of(el)  # type: ignore[arg-type]
        if inode is None:
            self.touched_all = self.clock
        else:
            self.touched[inode] = self.clock

    # -- mutation -------------------------------------------------------------------------

    def _add_edge(self, e: Edge, by: str) -> None:
        self.edges.setdefault(e, set()).add(by)
        self.out[e[0]].add(e[1])
        self.inn[e[1]].add(e[0])

    def _remove_edge(self, e: Edge, by: str) -> None:
        _discard(self.edges, e, by)
        if e not in self.edges:
            self.out[e[0]].discard(e[1])
            self.inn[e[1]].discard(e[0])

    def apply(self, change: Change) -> None:
        """Add ``change``'s contributions."""
        h = change.hash
        self.clock += 1
        for x in change.resolved_hunks():
            if isinstance(x, AddFile):
                self.inodes[(h, x.pos)] = h
                self.names[(h, x.pos + 1)] = ((h, x.pos), x.path)
            elif isinstance(x, AddName):
                self.names[(h, x.pos)] = (x.inode, x.path)
            elif isinstance(x, AddLines):
                self.touched[x.inode] = self.clock
                ids = [(h, x.pos + i) for i in range(len(x.spans))]
                for v, span in zip(ids, x.spans, strict=True):
                    self.vertices[v] = (x.inode, change.line(span))
                    self.by_inode[x.inode].add(v)
                for u in x.up:
                    self._add_edge((u, ids[0]), h)
                for a, b in itertools.pairwise(ids):
                    self._add_edge((a, b), h)
                for d in x.down:
                    self._add_edge((ids[-1], d), h)
            elif isinstance(x, AddEdges):
                for e in x.edges:
                    self._add_edge(e, h)
                    self._touch(e)
            elif isinstance(x, Delete):
                for el in x.elements:
                    self.deleters.setdefault(el, set()).add(h)
                    self._touch(el)
            elif isinstance(x, Revive):
                for el, cancels in x.elements:
                    self.revivers.setdefault(el, {})[h] = frozenset(cancels)
                    self._touch(el)

    def remove(self, change: Change) -> None:
        """Remove exactly ``change``'s contributions (the inverse of :meth:`apply`)."""
        h = change.hash
        self.clock += 1
        hunks = change.resolved_hunks()
        for x in hunks:  # note the files touched while every vertex is still known
            if isinstance(x, AddLines):
                self.touched[x.inode] = self.clock
            elif isinstance(x, AddEdges):
                for e in x.edges:
                    self._touch(e)
            elif isinstance(x, (Delete, Revive)):
                for el in x.elements if isinstance(x, Delete) else (e for e, _ in x.elements):
                    self._touch(el)
        for x in hunks:
            if isinstance(x, AddFile):
                self.inodes.pop((h, x.pos), None)
                self.names.pop((h, x.pos + 1), None)
            elif isinstance(x, AddName):
                self.names.pop((h, x.pos), None)
            elif isinstance(x, AddLines):
                ids = [(h, x.pos + i) for i in range(len(x.spans))]
                for v in ids:
                    self.vertices.pop(v, None)
                    _discard(self.by_inode, x.inode, v)
                for u in x.up:
                    self._remove_edge((u, ids[0]), h)
                for a, b in itertools.pairwise(ids):
                    self._remove_edge((a, b), h)
                for d in x.down:
                    self._remove_edge((ids[-1], d), h)
            elif isinstance(x, AddEdges):
                for e in x.edges:
                    self._remove_edge(e, h)
            elif isinstance(x, Delete):
                for el in x.elements:
                    _discard(self.deleters, el, h)
            elif isinstance(x, Revive):
                for el, _ in x.elements:
                    r = self.revivers.get(el)
                    if r is not None:
                        r.pop(h, None)
                        if not r:
                            del self.revivers[el]

    # -- queries --------------------------------------------------------------------------

    def effective_deleters(self, el: Element) -> set[str]:
        """The deleters of ``el`` no reviver has cancelled."""
        dels = self.deleters.get(el)
        if not dels:
            return set()
        cancelled: set[str] = set()
        for cancels in self.revivers.get(el, {}).values():
            cancelled |= cancels
        return dels - cancelled

    def alive(self, el: Element) -> bool:
        """Whether ``el`` is alive (present and not effectively deleted)."""
        return not self.effective_deleters(el)

    def vertex_alive(self, v: Pos) -> bool:
        """Whether line vertex ``v`` exists and is alive."""
        return v in self.vertices and self.alive(v)

    def edge_alive(self, e: Edge) -> bool:
        """Whether edge ``e`` exists and is alive."""
        return e in self.edges and self.alive(e)

    def file_names(self) -> dict[str, list[Pos]]:
        """Alive path -> inodes named so (more than one is a name conflict), sorted."""
        out: dict[str, list[Pos]] = {}
        for n, (inode, path) in self.names.items():
            if inode in self.inodes and self.alive(n):
                out.setdefault(path, []).append(inode)
        return {p: sorted(set(i)) for p, i in sorted(out.items())}

    def names_of(self, inode: Pos) -> list[tuple[Pos, str]]:
        """Alive name elements of ``inode``, sorted by path."""
        return sorted(
            ((n, p) for n, (i, p) in self.names.items() if i == inode and self.alive(n)),
            key=lambda t: (t[1], t[0]),
        )

    def file_vertices(self, inode: Pos) -> list[Pos]:
        """Every vertex (alive or not) of file ``inode``."""
        return sorted(self.by_inode.get(inode, ()))

    def canonical(self) -> tuple[Any, ...]:
        """A comparable, order-independent form of the whole graph."""
        return (
            tuple(sorted(self.inodes.items())),
            tuple(sorted(self.names.items())),
            tuple(sorted(self.vertices.items())),
            tuple(sorted((e, tuple(sorted(s))) for e, s in self.edges.items())),
            tuple(sorted((repr(e), tuple(sorted(s))) for e, s in self.deleters.items())),
            tuple(
                sorted(
                    (repr(e), tuple(sorted((h, tuple(sorted(c))) for h, c in r.items())))
                    for e, r in self.revivers.items()
                )
            ),
        )
