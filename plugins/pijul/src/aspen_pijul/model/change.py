"""Changes: hunks over graph positions, a canonical serialisation and its BLAKE3 hash.

A position ``Pos = (change_hash, n)`` names a thing a change introduced: a file's inode, a
file name, or a line vertex. Inside a change's own hunks the change's hash is written ``""``
(it is not known until the change is hashed); :meth:`Change.resolve` fills it in.
An element is a position or an edge ``(Pos, Pos)``; hunks add elements, delete them, or
revive deleted ones (cancelling named deleters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import blake3
import msgpack

from aspen_pijul import limits
from aspen_pijul.errors import CorruptChangeError, TooLargeError
from aspen_pijul.model.hashing import hash_bytes

__all__ = [
    "SELF",
    "AddEdges",
    "AddFile",
    "AddLines",
    "AddName",
    "Change",
    "Delete",
    "Edge",
    "Element",
    "Hunk",
    "Pos",
    "Revive",
]

Pos: TypeAlias = tuple[str, int]
Edge: TypeAlias = tuple[Pos, Pos]
Element: TypeAlias = Pos | Edge
#: The hash written for "this change" inside its own hunks.
SELF = ""
#: Version of the serialisation (first field of the hashed part).
FORMAT = 1


@dataclass(frozen=True)
class AddFile:
    """A new file: inode at ``pos``, its name element (``path``) at ``pos + 1``."""

    pos: int
    path: str


@dataclass(frozen=True)
class AddName:
    """A new name element at ``pos`` giving file ``inode`` the name ``path`` (a move)."""

    pos: int
    inode: Pos
    path: str


@dataclass(frozen=True)
class AddLines:
    """Line vertices ``pos …`` in file ``inode``, chained, after ``up`` and before ``down``.

    ``spans`` are ``(offset, length)`` of each line in the change's contents."""

    pos: int
    inode: Pos
    up: tuple[Pos, ...]
    down: tuple[Pos, ...]
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class AddEdges:
    """Ordering edges in file ``inode`` (a conflict resolution)."""

    inode: Pos
    edges: tuple[Edge, ...]


@dataclass(frozen=True)
class Delete:
    """Relabel ``elements`` (vertices, names, edges) deleted."""

    elements: tuple[Element, ...]


@dataclass(frozen=True)
class Revive:
    """Relabel elements alive again: each ``(element, cancelled deleters)``."""

    elements: tuple[tuple[Element, tuple[str, ...]], ...]


Hunk: TypeAlias = AddFile | AddName | AddLines | AddEdges | Delete | Revive


def _el(e: Element) -> list[Any]:
    if isinstance(e[0], tuple):
        (a, b), (c, d) = e  # type: ignore[misc]
        return [a, b, c, d]
    return [e[0], e[1]]


def _unel(v: list[Any]) -> Element:
    if len(v) == 4:
        return ((str(v[0]), int(v[1])), (str(v[2]), int(v[3])))
    return (str(v[0]), int(v[1]))


def _hunk_to_wire(h: Hunk) -> list[Any]:
    if isinstance(h, AddFile):
        return ["file", h.pos, h.path]
    if isinstance(h, AddName):
        return ["name", h.pos, list(h.inode), h.path]
    if isinstance(h, AddLines):
        return [
            "lines",
            h.pos,
            list(h.inode),
            [list(p) for p in h.up],
            [list(p) for p in h.down],
            [list(s) for s in h.spans],
        ]
    if isinstance(h, AddEdges):
        return ["edges", list(h.inode), [_el(e) for e in h.edges]]
    if isinstance(h, Delete):
        return ["del", [_el(e) for e in h.elements]]
    return ["revive", [[_el(e), list(c)] for e, c in h.elements]]


def _pos(v: list[Any]) -> Pos:
    return (str(v[0]), int(v[1]))


def _hunk_from_wire(v: list[Any]) -> Hunk:
    kind = v[0]
    if kind == "file":
        return AddFile(int(v[1]), str(v[2]))
    if kind == "name":
        return AddName(int(v[1]), _pos(v[2]), str(v[3]))
    if kind == "lines":
        return AddLines(
            int(v[1]),
            _pos(v[2]),
            tuple(_pos(p) for p in v[3]),
            tuple(_pos(p) for p in v[4]),
            tuple((int(s[0]), int(s[1])) for s in v[5]),
        )
    if kind == "edges":
        return AddEdges(_pos(v[1]), tuple(_unel(e) for e in v[2]))  # type: ignore[misc]
    if kind == "del":
        return Delete(tuple(_unel(e) for e in v[1]))
    if kind == "revive":
        return Revive(tuple((_unel(e), tuple(str(c) for c in cs)) for e, cs in v[1]))
    raise CorruptChangeError(f"unknown hunk kind {kind!r}")


def _fill(p: Pos, h: str) -> Pos:
    return (h, p[1]) if p[0] == SELF else p


def _fill_el(e: Element, h: str) -> Element:
    if isinstance(e[0], tuple):
        return (_fill(e[0], h), _fill(e[1], h))  # type: ignore[arg-type]
    return _fill(e, h)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Change:
    """One change: its metadata, dependencies, hunks and contents. ``hash`` is derived."""

    message: str
    authors: tuple[str, ...]
    timestamp: int
    dependencies: tuple[str, ...]
    extra_known: tuple[str, ...]
    hunks: tuple[Hunk, ...]
    contents: bytes
    description: str = ""
    hash: str = field(default="", compare=False)

    def hashed_part(self) -> list[Any]:
        """The canonical hashed part: fixed field order, sorted dependency lists."""
        return [
            FORMAT,
            self.message,
            self.description,
            list(self.authors),
            self.timestamp,
            sorted(self.dependencies),
            sorted(self.extra_known),
            [_hunk_to_wire(h) for h in self.hunks],
            blake3.blake3(self.contents).digest(),
        ]

    def compute_hash(self) -> str:
        """The change's printed hash."""
        return hash_bytes(msgpack.packb(self.hashed_part(), use_bin_type=True))

    def sealed(self) -> Change:
        """This change with its hash filled in (and bounds checked)."""
        data = self.to_bytes()
        if len(data) > limits.MAX_CHANGE_BYTES:
            raise TooLargeError(
                f"change is {len(data)} bytes, over MAX_CHANGE_BYTES={limits.MAX_CHANGE_BYTES}"
            )
        if len(self.hunks) > limits.MAX_HUNKS:
            raise TooLargeError(f"change has {len(self.hunks)} hunks, over MAX_HUNKS")
        return Change(**{**self.__dict__, "hash": self.compute_hash()})

    def to_bytes(self) -> bytes:
        """The stored form: hashed part and contents."""
        return msgpack.packb([self.hashed_part(), self.contents], use_bin_type=True)

    @staticmethod
    def from_bytes(data: bytes, expected: str | None = None) -> Change:
        """Parse and verify stored bytes; ``expected`` is the hash they were stored under.

        Raises :class:`CorruptChangeError` (naming ``expected``) if the bytes are
        malformed or not in their canonical encoding (so every stored byte counts), the
        contents do not match their hash, or the hash is not ``expected``."""
        try:
            return Change._parse(data, expected)
        except CorruptChangeError as exc:
            if expected is None:
                raise
            raise CorruptChangeError(f"stored change {expected} is refused: {exc}") from exc

    @staticmethod
    def _parse(data: bytes, expected: str | None) -> Change:
        """:meth:`from_bytes` without naming ``expected`` in its errors."""
        if len(data) > limits.MAX_CHANGE_BYTES:
            raise TooLargeError(f"change of {len(data)} bytes is over MAX_CHANGE_BYTES")
        try:
            hashed, contents = msgpack.unpackb(data, raw=False, strict_map_key=True)
            fmt, msg, desc, authors, ts, deps, known, hunks, chash = hashed
            if fmt != FORMAT:
                raise CorruptChangeError(f"unknown change format {fmt!r}")
            change = Change(
                message=str(msg),
                description=str(desc),
                authors=tuple(str(a) for a in authors),
                timestamp=int(ts),
                dependencies=tuple(str(d) for d in deps),
                extra_known=tuple(str(d) for d in known),
                hunks=tuple(_hunk_from_wire(h) for h in hunks),
                contents=bytes(contents),
            )
        except CorruptChangeError:
            raise
        except Exception as exc:  # malformed msgpack or shape
            raise CorruptChangeError(f"change bytes are malformed: {exc}") from exc
        if blake3.blake3(change.contents).digest() != chash:
            raise CorruptChangeError("change contents do not match their hash")
        h = change.compute_hash()
        if expected is not None and h != expected:
            raise CorruptChangeError(f"change bytes hash to {h}, not {expected}")
        if change.to_bytes() != data:  # another encoding of the same values: not ours
            raise CorruptChangeError("change bytes are not in their canonical encoding")
        return Change(**{**change.__dict__, "hash": h})

    def line(self, span: tuple[int, int]) -> bytes:
        """The bytes of one line of the contents."""
        return self.contents[span[0] : span[0] + span[1]]

    def resolved_hunks(self) -> list[Hunk]:
        """The hunks with ``SELF`` replaced by this change's hash."""
        h = self.hash
        out: list[Hunk] = []
        for x in self.hunks:
            if isinstance(x, AddName):
                out.append(AddName(x.pos, _fill(x.inode, h), x.path))
            elif isinstance(x, AddLines):
                out.append(
                    AddLines(
                        x.pos,
                        _fill(x.inode, h),
                        tuple(_fill(p, h) for p in x.up),
                        tuple(_fill(p, h) for p in x.down),
                        x.spans,
                    )
                )
            elif isinstance(x, AddEdges):
                out.append(
                    AddEdges(_fill(x.inode, h), tuple(_fill_el(e, h) for e in x.edges))  # type: ignore[misc]
                )
            elif isinstance(x, Delete):
                out.append(Delete(tuple(_fill_el(e, h) for e in x.elements)))
            elif isinstance(x, Revive):
                out.append(Revive(tuple((_fill_el(e, h), c) for e, c in x.elements)))
            else:
                out.append(x)
        return out

    def referenced_changes(self) -> set[str]:
        """Every other change this change's hunks name (the raw dependency set)."""
        refs: set[str] = set()

        def add_el(e: Element) -> None:
            if isinstance(e[0], tuple):
                refs.add(e[0][0])
                refs.add(e[1][0])  # type: ignore[index]
            else:
                refs.add(e[0])

        for x in self.hunks:
            if isinstance(x, AddName):
                refs.add(x.inode[0])
            elif isinstance(x, AddLines):
                refs.add(x.inode[0])
                refs.update(p[0] for p in x.up + x.down)
            elif isinstance(x, AddEdges):
                refs.add(x.inode[0])
                for edge in x.edges:
                    add_el(edge)
            elif isinstance(x, Delete):
                for el in x.elements:
                    add_el(el)
            elif isinstance(x, Revive):
                for el, cancels in x.elements:
                    add_el(el)
                    refs.update(cancels)
        refs.discard(SELF)
        return refs
