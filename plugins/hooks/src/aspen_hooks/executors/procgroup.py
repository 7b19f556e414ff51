"""Ending a child's whole process group: SIGTERM, a grace period, then SIGKILL.

A shell handler runs as the leader of a new session (so a new process group whose id is
its pid); its children and grandchildren inherit the group unless they leave it on
purpose (``setsid``), so signalling the group reaches them even after the shell exited.
"""

from __future__ import annotations

import contextlib
import os
import signal

import anyio
import anyio.to_thread
from anyio.abc import Process

__all__ = ["end_group", "group_alive"]

_POLL_SECONDS = 0.02


def _proc_members(pgid: int) -> list[int] | None:
    """Live (not zombie) processes of group ``pgid`` from ``/proc``; None without ``/proc``.

    Zombies count as gone: an orphan reparented to an init that does not reap (as in
    many containers) would otherwise keep the group "alive" forever.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            members.append(int(name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether a live process is left in group ``pgid`` (zombies do not count on Linux)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials: it is still there
        return True
    members = _proc_members(pgid)
    return True if members is None else bool(members)


async def _alive_off_loop(pgid: int) -> bool:
    return await anyio.to_thread.run_sync(group_alive, pgid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to group ``pgid`` if it still has members."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


async def end_group(process: Process, grace: float) -> bool:
    """Make sure ``process`` and every process in its group are gone; reap ``process``.

    Nothing is sent when the group is already empty. Otherwise the group gets SIGTERM, and
    SIGKILL if anything is left after ``grace`` seconds. Returns whether SIGKILL was needed.
    The caller shields this from cancellation when it must complete.
    """
    pgid = process.pid
    if process.returncode is not None and not group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
        while await _alive_off_loop(pgid):  # a /proc scan: kept off the event loop
            await anyio.sleep(_POLL_SECONDS)
    killed = await _alive_off_loop(pgid)
    if killed:
        _signal_group(pgid, signal.SIGKILL)
    await process.wait()
    return killed
