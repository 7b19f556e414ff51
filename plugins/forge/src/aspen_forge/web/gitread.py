"""What the web pages read from a repository's dulwich object store, bounded.

Every function here runs in a worker thread (object reads are disk reads and zlib) and
takes the store the request opened (:func:`aspen_forge.web.app` opens and closes it).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

from aspen_forge import limits

__all__ = [
    "Blob",
    "CommitInfo",
    "DiffFile",
    "Entry",
    "RefInfo",
    "commit_diff",
    "commit_info",
    "is_binary",
    "list_refs",
    "log_page",
    "lookup",
    "peel",
    "read_blob",
    "readme",
    "resolve",
    "tree_diff",
    "tree_entries",
]

_SHA = re.compile(r"[0-9a-f]{40}")
#: Bytes looked at to decide whether a file is binary (as git does: a NUL byte in them).
_BINARY_PROBE = 8000
_README = ("readme.md", "readme.markdown", "readme", "readme.txt", "readme.rst")


@dataclass(frozen=True)
class Entry:
    """One entry of a tree: ``kind`` is ``tree``, ``blob``, ``link`` or ``submodule``."""

    name: str
    path: str
    kind: str
    sha: str


@dataclass(frozen=True)
class CommitInfo:
    """What a page shows of one commit."""

    sha: str
    summary: str
    message: str
    author: str
    time: int
    parents: tuple[str, ...]
    tree: str


@dataclass(frozen=True)
class RefInfo:
    """A branch or tag and the commit it names."""

    name: str
    commit: CommitInfo | None


@dataclass(frozen=True)
class Blob:
    """A file: its size, whether it is binary, and its bytes if small enough to show."""

    path: str
    sha: str
    size: int
    binary: bool
    data: bytes | None


@dataclass
class DiffFile:
    """One changed file of a commit: its unified diff lines (``None``: not shown)."""

    old_path: str
    new_path: str
    change: str
    lines: list[str] | None = field(default_factory=list)
    #: Why ``lines`` is ``None``.
    note: str = ""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def resolve(refs: dict[bytes, bytes], parts: list[str]) -> tuple[str, str, list[str]] | None:
    """Split URL ``parts`` into a ref (a branch, a tag or a 40-hex id; the longest that
    names one, since branch names hold slashes), its target id and the path after it."""
    for i in range(len(parts), 0, -1):
        name = "/".join(parts[:i])
        for prefix in (b"refs/heads/", b"refs/tags/"):
            sha = refs.get(prefix + name.encode())
            if sha is not None:
                return name, sha.decode(), parts[i:]
    if parts and _SHA.fullmatch(parts[0]):
        return parts[0], parts[0], parts[1:]
    return None


def peel(store: Any, sha: str) -> Any:
    """The commit ``sha`` names (annotated tags peeled); ``None`` if absent or not a commit."""
    from dulwich.objects import Commit, Tag

    obj = _get(store, sha.encode())
    for _ in range(16):  # a tag of a tag of …: bounded
        if not isinstance(obj, Tag):
            break
        obj = _get(store, obj.object[1])
    return obj if isinstance(obj, Commit) else None


def _get(store: Any, sha: bytes) -> Any:
    try:
        return store[sha]
    except KeyError:
        return None


def commit_info(commit: Any) -> CommitInfo:
    """The page view of a dulwich commit."""
    message = _text(commit.message)
    return CommitInfo(
        sha=commit.id.decode(),
        summary=message.split("\n", 1)[0],
        message=message,
        author=_text(commit.author),
        time=int(commit.commit_time),
        parents=tuple(p.decode() for p in commit.parents),
        tree=commit.tree.decode(),
    )


def lookup(store: Any, commit: Any, path: list[str]) -> tuple[int, bytes] | None:
    """``(mode, id)`` of ``path`` in ``commit``'s tree (``[]``: the root); ``None`` if absent."""
    from dulwich.object_store import tree_lookup_path

    if not path:
        return 0o040000, commit.tree
    try:
        mode, sha = tree_lookup_path(store.__getitem__, commit.tree, "/".join(path).encode())
    except (KeyError, NotADirectoryError):
        return None
    return mode, sha


def _kind(mode: int) -> str:
    from stat import S_ISDIR, S_ISLNK

    if mode == 0o160000:
        return "submodule"
    if S_ISDIR(mode):
        return "tree"
    return "link" if S_ISLNK(mode) else "blob"


def tree_entries(store: Any, tree_sha: bytes, path: list[str]) -> tuple[list[Entry], int]:
    """A tree's entries, directories first, at most MAX_WEB_TREE_ENTRIES, and how many
    there are in all."""
    tree = store[tree_sha]
    items = list(tree.iteritems())
    entries = [
        Entry(
            name=_text(item.path),
            path="/".join([*path, _text(item.path)]),
            kind=_kind(item.mode),
            sha=item.sha.decode(),
        )
        for item in items[: limits.MAX_WEB_TREE_ENTRIES]
    ]
    entries.sort(key=lambda e: (e.kind != "tree", e.name.lower()))
    return entries, len(items)


def is_binary(data: bytes) -> bool:
    """Whether a file looks binary (a NUL byte near its start, as git decides)."""
    return b"\x00" in data[:_BINARY_PROBE]


def read_blob(store: Any, sha: bytes, path: str, most: int) -> Blob:
    """File ``sha``; its bytes only if at most ``most`` bytes."""
    blob = store[sha]
    size = blob.raw_length()
    if size > most:
        return Blob(path, sha.decode(), size, False, None)
    data = blob.as_raw_string()
    return Blob(path, sha.decode(), size, is_binary(data), data)


def readme(store: Any, commit: Any) -> Blob | None:
    """The README at the root of ``commit`` (``README.md`` first), if any."""
    tree = store[commit.tree]
    names = {_text(i.path).lower(): i for i in tree.iteritems() if _kind(i.mode) == "blob"}
    for wanted in _README:
        item = names.get(wanted)
        if item is not None:
            return read_blob(store, item.sha, _text(item.path), limits.MAX_WEB_README_BYTES)
    return None


def log_page(store: Any, head: str, page: int) -> tuple[list[CommitInfo], bool]:
    """Page ``page`` (0-based) of the history from ``head``, newest first, and whether an
    older page exists. Walks at most MAX_WEB_LOG_DEPTH commits."""
    from dulwich.walk import Walker

    per = limits.WEB_LOG_PAGE_COMMITS
    start = page * per
    walker = Walker(store, [head.encode()], max_entries=start + per + 1)  # type: ignore[list-item]
    commits: list[CommitInfo] = []
    more = False
    for i, entry in enumerate(walker):
        if i < start:
            continue
        if len(commits) == per:
            more = True
            break
        commits.append(commit_info(entry.commit))
    return commits, more


def list_refs(store: Any, refs: dict[bytes, bytes], prefix: bytes) -> tuple[list[RefInfo], int]:
    """The refs under ``prefix`` with their commits, newest first, at most
    MAX_WEB_REFS_LISTED, and how many there are."""
    names = sorted(r for r in refs if r.startswith(prefix))
    listed = []
    for ref in names[: limits.MAX_WEB_REFS_LISTED]:
        commit = peel(store, refs[ref].decode())
        info = commit_info(commit) if commit is not None else None
        listed.append(RefInfo(_text(ref[len(prefix) :]), info))
    listed.sort(key=lambda r: -(r.commit.time if r.commit else 0))
    return listed, len(names)


def _side(entry: Any) -> tuple[Any, Any, Any]:
    """``(path, mode, sha)`` of one side of a change (all ``None`` for an absent side)."""
    if entry is None:
        return None, None, None
    return entry.path, entry.mode, entry.sha


def _size(store: Any, side: tuple[Any, Any, Any]) -> int:
    """Bytes of one side's blob (0 for an absent side or a submodule)."""
    _, mode, sha = side
    if sha is None or mode is None or _kind(mode) == "submodule":
        return 0
    return int(store[sha].raw_length())


def commit_diff(store: Any, commit: Any) -> tuple[list[DiffFile], bool]:
    """The changes of ``commit`` against its first parent (a root commit: against nothing);
    see :func:`tree_diff`."""
    old_tree = store[commit.parents[0]].tree if commit.parents else None
    return tree_diff(store, old_tree, commit.tree)


def tree_diff(store: Any, old_tree: Any, new_tree: Any) -> tuple[list[DiffFile], bool]:
    """The changes from tree ``old_tree`` (``None``: nothing) to ``new_tree`` as unified
    diffs; at most MAX_WEB_DIFF_FILES files and MAX_WEB_DIFF_BYTES of diff (whether
    something was cut)."""
    from dulwich.diff_tree import tree_changes
    from dulwich.patch import write_object_diff

    files: list[DiffFile] = []
    budget = limits.MAX_WEB_DIFF_BYTES
    cut = False
    for change in tree_changes(store, old_tree, new_tree):
        if len(files) == limits.MAX_WEB_DIFF_FILES:
            cut = True
            break
        old, new = _side(change.old), _side(change.new)
        item = DiffFile(
            old_path=_text(old[0]) if old[0] else "",
            new_path=_text(new[0]) if new[0] else "",
            change=change.type,
        )
        files.append(item)
        if budget <= 0:
            item.lines, item.note, cut = None, "the page's diff budget is spent", True
            continue
        if max(_size(store, old), _size(store, new)) > limits.MAX_WEB_FILE_BYTES:
            item.lines, item.note = None, "a side is over MAX_WEB_FILE_BYTES"
            continue
        out = io.BytesIO()
        write_object_diff(out, store, old, new)
        raw = out.getvalue()
        budget -= len(raw)
        if budget < 0:
            item.lines, item.note, cut = None, "the page's diff budget is spent", True
            continue
        # The ``diff --git`` / ``index`` / ``---`` / ``+++`` header is shown as the file name.
        lines = _text(raw).splitlines()
        body = next((i for i, line in enumerate(lines) if line.startswith("@@")), len(lines))
        item.lines = lines[body:] or [line for line in lines[1:] if line.startswith("Binary")]
    return files, cut
