"""The text form of ``aspen status``: one ``label: summary`` line per part of the node's
status, in words and human sizes (``--json`` prints the status itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aspen.storage.space import format_bytes

__all__ = ["disk_summary", "render_status"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _node(info: dict[str, Any]) -> str:
    return f"{info.get('node_id', '?')} (aspen {info.get('version', '?')})"


def _role(info: dict[str, Any]) -> str:
    cluster = info.get("cluster") or {}
    raft = cluster.get("raft") or {}
    role = cluster.get("role", "?")
    leader = cluster.get("leader")
    text = f"{role}, term {raft.get('term', '?')}"
    if role != "leader":
        text += f" (leader: {leader or 'none known'})"
    return text


def _members(info: dict[str, Any]) -> str:
    conf = (info.get("cluster") or {}).get("conf") or {}
    voters, learners = conf.get("voters", []), conf.get("learners", [])
    return f"{_plural(len(voters), 'voter')}, {_plural(len(learners), 'learner')}"


def _revision(info: dict[str, Any]) -> str:
    return f"{info.get('revision', '?')} (history compacted to {info.get('compact_revision', 0)})"


def _raft(info: dict[str, Any]) -> str:
    raft = (info.get("cluster") or {}).get("raft") or {}
    return (
        f"commit {raft.get('commit', '?')}, applied {info.get('applied_index', '?')}, "
        f"last index {raft.get('last_index', '?')}"
    )


def _data(info: dict[str, Any]) -> str:
    disk = info.get("disk") or {}
    text = format_bytes(int(info.get("db_size", 0)))
    if "map_size_bytes" in disk:
        text += f" (of an LMDB map of {format_bytes(disk['map_size_bytes'])})"
    return text


def disk_summary(disk: dict[str, Any], *, short: bool = False) -> str:
    """Free space, and why writes are refused when they are: ``3.1 GiB free of 20.0 GiB in
    /data/db`` (``short``: ``3.1 GiB free``, or ``0 B free (FULL)``)."""
    if "free_bytes" not in disk:
        return "unknown" if short else "unknown (node too old to report it)"
    free = format_bytes(disk["free_bytes"])
    if short:
        low = disk.get("full") or disk["free_bytes"] < disk.get("reserve_bytes", 0)
        return f"{free} free (FULL)" if low else f"{free} free"
    text = f"{free} free of {format_bytes(disk['total_bytes'])} in {disk.get('path', '?')}"
    if disk.get("full"):
        text += f"; WRITES FAILING: {disk['full']}"
    elif disk["free_bytes"] < disk.get("reserve_bytes", 0):
        reserve = format_bytes(disk["reserve_bytes"])
        text += f"; writes refused (less than DISK_RESERVE_BYTES, {reserve}, free)"
    return text


def _writes(info: dict[str, Any]) -> str:
    writes = info.get("writes") or {}
    return (
        f"{_plural(writes.get('commands', 0), 'command')} applied in "
        f"{_plural(writes.get('cycles', 0), 'driver cycle')}"
    )


def _rpc(info: dict[str, Any]) -> str:
    rpc = info.get("rpc") or {}
    text = (
        f"{_plural(rpc.get('connections', 0), 'connection')} open "
        f"({rpc.get('connections_total', 0)} in total), "
        f"{_plural(rpc.get('requests', 0), 'request')}, {_plural(rpc.get('errors', 0), 'error')}"
    )
    if rpc.get("internal_errors"):
        text += f" ({rpc['internal_errors']} internal)"
    return text


def _bus(info: dict[str, Any]) -> str:
    subscribers = info.get("bus") or []
    if not subscribers:
        return "no subscribers"
    lines = [_plural(len(subscribers), "subscriber")]
    for sub in subscribers:
        line = (
            f"{sub.get('plugin')} {sub.get('hook')}: {sub.get('delivered', 0)} delivered, "
            f"{sub.get('dropped', 0)} dropped, {sub.get('failed', 0)} failed, "
            f"{sub.get('timed_out', 0)} timed out"
        )
        if sub.get("last_error"):
            line += f" (last error: {sub['last_error']})"
        lines.append(line)
    return "\n  ".join(lines)


def _plugins(info: dict[str, Any]) -> str:
    plugins = info.get("plugins") or []
    return ", ".join(f"{p.get('name')} ({p.get('status')})" for p in plugins) or "none"


#: Label, the status fields it summarises, and how.
_LINES: tuple[tuple[str, tuple[str, ...], Callable[[dict[str, Any]], str]], ...] = (
    ("node", ("node_id", "version"), _node),
    ("endpoint", ("endpoint",), lambda info: str(info.get("endpoint", "?"))),
    ("role", (), _role),
    ("members", (), _members),
    ("revision", ("revision", "compact_revision"), _revision),
    ("raft", ("applied_index", "cluster"), _raft),
    ("data", ("db_size",), _data),
    ("disk", ("disk",), lambda info: disk_summary(info.get("disk") or {})),
    ("leases", ("leases",), lambda info: str(info.get("leases", 0))),
    ("watches", ("watches",), lambda info: str(info.get("watches", 0))),
    ("writes", ("writes",), _writes),
    ("rpc", ("rpc",), _rpc),
    ("events", ("bus",), _bus),
    ("plugins", ("plugins",), _plugins),
)


def _plain(value: Any) -> str:
    """Any other field in words: ``a 1, b 2`` for a map, ``x, y`` for a list."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or "none"
    return str(value)


def render_status(info: dict[str, Any]) -> str:
    """The node status ``info`` (the ``status`` RPC's answer) as ``label: summary`` lines;
    fields this version does not know are listed after, in words (never as JSON)."""
    lines: list[str] = []
    shown: set[str] = set()
    for label, fields, summary in _LINES:
        lines.append(f"{label}: {summary(info)}")
        shown.update(fields)
    lines += [f"{key}: {_plain(value)}" for key, value in info.items() if key not in shown]
    return "\n".join(lines)
