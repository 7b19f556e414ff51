"""A channel: a set of changes, the order it applied them, and the graph they make."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from aspen_pijul import limits
from aspen_pijul.errors import DependedUponError, MissingDependencyError, TooLargeError
from aspen_pijul.model.change import Change, Pos
from aspen_pijul.model.graph import Graph
from aspen_pijul.model.hashing import resolve_prefix, short
from aspen_pijul.model.output import OutLine, output_file, render

__all__ = ["ChangeStore", "Channel", "MemoryStore"]


class ChangeStore(Protocol):
    """Where changes are found by hash."""

    def get(self, h: str) -> Change:
        """The change ``h`` (raise :class:`~aspen_pijul.errors.UnknownChangeError`)."""

    def __contains__(self, h: object) -> bool: ...

    def hashes(self) -> Iterable[str]:
        """Every stored hash."""


class MemoryStore:
    """A change store in memory (tests, and the working copy's loaded changes)."""

    def __init__(self, changes: Iterable[Change] = ()) -> None:
        self._changes: dict[str, Change] = {c.hash: c for c in changes}

    def put(self, change: Change) -> None:
        """Store ``change`` (sealed)."""
        self._changes[change.hash] = change

    def get(self, h: str) -> Change:
        """The change ``h``."""
        from aspen_pijul.errors import UnknownChangeError

        try:
            return self._changes[h]
        except KeyError:
            raise UnknownChangeError(f"no change {h}") from None

    def __contains__(self, h: object) -> bool:
        return h in self._changes

    def hashes(self) -> Iterable[str]:
        """Every stored hash."""
        return self._changes.keys()


class Channel:
    """Changes applied in an order; the graph depends only on the set."""

    def __init__(self, name: str, store: ChangeStore) -> None:
        self.name = name
        self.store = store
        self.order: list[str] = []
        self.applied: set[str] = set()
        self.graph = Graph()
        self._dependents: dict[str, set[str]] = {}
        self._known: dict[str, frozenset[str]] = {}
        #: inode -> (graph clock when printed, printed lines): see :meth:`output_lines`.
        self._printed: dict[Pos, tuple[int, list[OutLine]]] = {}

    # -- knowledge ------------------------------------------------------------------------

    def _closure(self, h: str, with_known: bool) -> frozenset[str]:
        seen: set[str] = set()
        stack = [h]
        while stack:
            x = stack.pop()
            if x not in self.store:
                continue
            c = self.store.get(x)
            nxt = list(c.dependencies) + (list(c.extra_known) if with_known else [])
            for d in nxt:
                if d not in seen:
                    seen.add(d)
                    if len(seen) > limits.MAX_HISTORY_WALK:
                        raise TooLargeError("dependency walk over MAX_HISTORY_WALK")
                    stack.append(d)
        return frozenset(seen)

    def known(self, h: str) -> frozenset[str]:
        """The changes ``h`` knew: its dependencies and extra-known, transitively."""
        k = self._known.get(h)
        if k is None:
            k = self._known[h] = self._closure(h, True)
        return k

    def ancestors(self, h: str) -> frozenset[str]:
        """``h``'s dependencies, transitively."""
        return self._closure(h, False)

    def minimise(self, deps: Iterable[str]) -> tuple[str, ...]:
        """``deps`` without those implied by another one, sorted."""
        ds = set(deps)
        implied: set[str] = set()
        for d in ds:
            implied |= self.ancestors(d)
        return tuple(sorted(ds - implied))

    # -- apply / unrecord -----------------------------------------------------------------

    def apply(self, h: str) -> list[str]:
        """Apply ``h`` and, first, its missing dependencies; returns what was applied."""
        done: list[str] = []
        stack: list[tuple[str, bool]] = [(h, False)]
        while stack:
            x, ready = stack.pop()
            if x in self.applied:
                continue
            if x not in self.store:
                raise MissingDependencyError(f"change {x} is missing (a dependency of {h})")
            c = self.store.get(x)
            missing = [d for d in c.dependencies if d not in self.applied]
            if ready or not missing:
                if missing:
                    raise MissingDependencyError(f"{x} depends on missing {missing[0]}")
                self._apply_one(c)
                done.append(x)
                continue
            stack.append((x, True))
            stack.extend((d, False) for d in sorted(missing, reverse=True))
        return done

    def _apply_one(self, c: Change) -> None:
        self.graph.apply(c)
        self.order.append(c.hash)
        self.applied.add(c.hash)
        for d in c.dependencies:
            self._dependents.setdefault(d, set()).add(c.hash)

    @contextmanager
    def trial(self, change: Change) -> Iterator[None]:
        """Apply ``change`` (not stored) to the graph for the duration of the block."""
        known: set[str] = set()
        for d in change.dependencies + change.extra_known:
            known |= {d} | self.known(d)
        self._known[change.hash] = frozenset(known)
        self.graph.apply(change)
        try:
            yield
        finally:
            self.graph.remove(change)
            self._known.pop(change.hash, None)

    def dependents(self, h: str) -> set[str]:
        """Changes of this channel that depend directly on ``h``."""
        return set(self._dependents.get(h, ()))

    def unrecord(self, h: str) -> None:
        """Remove ``h``; refused while another change of the channel depends on it."""
        if h not in self.applied:
            from aspen_pijul.errors import UnknownChangeError

            raise UnknownChangeError(f"change {h} is not in channel {self.name!r}")
        users = self.dependents(h)
        if users:
            raise DependedUponError(
                f"cannot unrecord {h}: {len(users)} change(s) depend on it, "
                f"e.g. {sorted(users)[0]}",
                dependents=sorted(users),
            )
        c = self.store.get(h)
        self.graph.remove(c)
        self.order.remove(h)
        self.applied.discard(h)
        for d in c.dependencies:
            s = self._dependents.get(d)
            if s is not None:
                s.discard(h)
                if not s:
                    del self._dependents[d]

    def snapshot(self) -> tuple[object, ...]:
        """Picklable state (a derived cache; :meth:`restore` takes it back)."""
        return (self.order, self.graph, self._dependents)

    def restore(self, state: tuple[object, ...]) -> None:
        """Adopt a :meth:`snapshot`."""
        order, graph, dependents = state
        self.order = list(order)  # type: ignore[call-overload]
        self.applied = set(self.order)
        self.graph = graph  # type: ignore[assignment]
        self._dependents = dependents  # type: ignore[assignment]
        self._printed = {}

    def fork(self, name: str) -> Channel:
        """A new channel with the same changes in the same order."""
        return Channel.replay(name, self.store, self.order)

    @staticmethod
    def replay(name: str, store: ChangeStore, order: Iterable[str]) -> Channel:
        """A channel built by applying ``order`` from scratch."""
        ch = Channel(name, store)
        for h in order:
            ch.apply(h)
        return ch

    def resolve(self, prefix: str) -> str:
        """The channel change named by a hash or unique prefix."""
        return resolve_prefix(prefix, self.applied)

    # -- output ---------------------------------------------------------------------------

    def file_table(self) -> dict[str, tuple[Pos, str]]:
        """Printed path -> (file, the name it has in the graph).

        File-tree conflicts are states too: a file with two names is printed at both; when
        two files share a name, the one with the smallest inode keeps it and each other is
        printed at ``NAME.~HASH8`` (its introducing change), until a change renames or
        removes one. A file edited while a concurrent change deleted it (or its
        directory) is printed at its old name (see :meth:`zombie_files`)."""
        table: dict[str, tuple[Pos, str]] = {}
        names = self.graph.file_names()
        for inode, path in self.zombie_files().items():
            names.setdefault(path, []).append(inode)
        for path, inodes in sorted(names.items()):
            inodes.sort()
            table[path] = (inodes[0], path)
            for inode in inodes[1:]:
                table[f"{path}.~{short(inode[0])}"] = (inode, path)
        return table

    def zombie_files(self) -> dict[Pos, str]:
        """File-tree conflicts of a deleted file (or directory) edited concurrently:
        file -> the path it is printed at (the smallest of its deleted names).

        A directory is an entity too (a file whose path ends in ``/``, without lines): a
        deleted one comes back as such a conflict while a file printed under it was
        added or edited by a change that its deleters did not know.

        Such a file has no alive name but holds an alive line introduced by a change that
        the changes deleting its names did not know. Recording it unchanged records
        nothing; recording it edited revives its name (kept), recording it removed
        deletes its lines (deleted)."""
        named = {i for inodes in self.graph.file_names().values() for i in inodes}
        dead: dict[Pos, list[tuple[Pos, str]]] = {}
        for n, (inode, path) in self.graph.names.items():
            if inode in self.graph.inodes and inode not in named:
                dead.setdefault(inode, []).append((n, path))
        out: dict[Pos, str] = {}
        dirs: list[tuple[Pos, list[tuple[Pos, str]], set[str]]] = []
        for inode, names in sorted(dead.items()):
            deleters: set[str] = set()
            for n, _ in names:
                deleters |= self.graph.effective_deleters(n)
            if names[0][1].endswith("/"):
                dirs.append((inode, names, deleters))
                continue
            editors = {v[0] for v in self.graph.file_vertices(inode) if self.graph.vertex_alive(v)}
            if self._unknown_to(editors, deleters):
                out[inode] = min(p for _, p in names)
        # A deleted directory comes back while something printed under it was added or
        # edited by a change its deleters did not know.
        printed = [
            (n[0], p)
            for n, (i, p) in self.graph.names.items()
            if i in named and self.graph.alive(n)
        ]
        printed += [(min(v[0] for v in self._alive_lines(i)), p) for i, p in out.items()]
        for inode, names, deleters in dirs:
            for _, prefix in sorted(names, key=lambda t: t[1]):
                editors = {h for h, p in printed if p.startswith(prefix) and p != prefix}
                if self._unknown_to(editors, deleters):
                    out[inode] = prefix  # the first of its names a file is printed under
                    break
        return out

    def _alive_lines(self, inode: Pos) -> list[Pos]:
        g = self.graph
        return [v for v in g.file_vertices(inode) if g.vertex_alive(v)]

    def _unknown_to(self, editors: set[str], deleters: set[str]) -> bool:
        """Whether some editor is a change some deleter did not know."""
        return any(e != d and e not in self.known(d) for e in editors for d in deleters)

    def file_inodes(self) -> dict[str, Pos]:
        """Printed path -> the file printed there."""
        return {p: inode for p, (inode, _) in self.file_table().items()}

    def output_lines(self, inode: Pos) -> list[OutLine]:
        """The printed lines of one file, kept until a change touches that file (so a
        record or output of a many-file channel prints only the files changed since)."""
        g = self.graph
        cached = self._printed.get(inode)
        if cached is not None and cached[0] >= g.file_stamp(inode):
            return list(cached[1])
        lines = output_file(g, inode, self.known)
        self._printed[inode] = (g.clock, lines)
        return list(lines)

    def output(self) -> dict[str, bytes]:
        """Every file of the channel: path -> bytes."""
        return {p: render(self.output_lines(i)) for p, i in self.file_inodes().items()}

    def iter_log(self) -> Iterator[Change]:
        """The channel's changes in application order."""
        for h in self.order:
            yield self.store.get(h)
