"""Text forms of changes: ``aspen pijul change HASH`` and log entries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aspen_pijul.model.change import (
    AddEdges,
    AddFile,
    AddLines,
    AddName,
    Change,
    Delete,
    Element,
    Pos,
    Revive,
)
from aspen_pijul.model.channel import ChangeStore

__all__ = ["change_text", "log_entry"]


def log_entry(c: Change) -> dict[str, Any]:
    """The ``log --json`` object of a change."""
    return {
        "hash": c.hash,
        "message": c.message,
        "authors": list(c.authors),
        "timestamp": dt.datetime.fromtimestamp(c.timestamp, dt.UTC).isoformat(),
    }


def _vertex_text(store: ChangeStore, p: Pos) -> str | None:
    if p[0] not in store:
        return None
    c = store.get(p[0])
    for x in c.hunks:
        if isinstance(x, AddLines) and x.pos <= p[1] < x.pos + len(x.spans):
            return c.line(x.spans[p[1] - x.pos]).decode(errors="replace").rstrip("\n")
    return None


def _el(store: ChangeStore, e: Element) -> str:
    if isinstance(e[0], tuple):
        return f"order {e[0][0][:8]}.{e[0][1]} -> {e[1][0][:8]}.{e[1][1]}"  # type: ignore[index]
    text = _vertex_text(store, e)  # type: ignore[arg-type]
    return f"- {text}" if text is not None else f"- element {e[0][:8]}.{e[1]}"


def change_text(c: Change, store: ChangeStore) -> str:
    """Header, dependencies and numbered hunks of ``c``."""
    out = [
        f"message = {c.message!r}",
        f"timestamp = {log_entry(c)['timestamp']!r}",
        f"authors = {list(c.authors)!r}",
        f"hash = {c.hash!r}",
        "",
        "# Dependencies",
    ]
    out += [f"[{i}] {d}" for i, d in enumerate(c.dependencies, 1)]
    out += [f"[*] {d}" for d in c.extra_known]
    out += ["", "# Hunks", ""]
    for i, x in enumerate(c.resolved_hunks(), 1):
        if isinstance(x, AddFile):
            out.append(f"{i}. File addition: {x.path!r}")
        elif isinstance(x, AddName):
            out.append(f"{i}. Name: file {x.inode[0][:8]}.{x.inode[1]} is now {x.path!r}")
        elif isinstance(x, AddLines):
            out.append(f"{i}. Lines into file {x.inode[0][:8]}.{x.inode[1]}")
            out += ["+ " + c.line(s).decode(errors="replace").rstrip("\n") for s in x.spans]
        elif isinstance(x, AddEdges):
            out.append(f"{i}. Resolution (ordering edges)")
            out += ["  " + _el(store, e) for e in x.edges]
        elif isinstance(x, Delete):
            out.append(f"{i}. Deletion")
            out += ["  " + _el(store, e) for e in x.elements]
        elif isinstance(x, Revive):
            out.append(f"{i}. Undeletion")
            out += ["  " + _el(store, e).replace("- ", "+ ", 1) for e, _ in x.elements]
    return "\n".join(out) + "\n"
