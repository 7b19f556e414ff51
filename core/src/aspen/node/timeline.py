"""Debug stamps of a write's way through the Raft driver, for ``bench/put_timeline.py``.

Off unless the environment variable ``ASPEN_PUT_TIMELINE`` names a directory when the
module is imported: each call site then tests one module-level bool (:data:`ON`) and does
nothing else. On, :func:`stamp` appends ``stage index seconds flag`` to
``<dir>/<pid>.tl`` (``time.monotonic``, i.e. ``CLOCK_MONOTONIC``, which every process on
one machine shares), one unbuffered ``write`` per stamp so a node killed at the end of a
bench loses nothing. The stages are keyed by log index, which is the same on every node.
"""

from __future__ import annotations

import os
import time

__all__ = ["ON", "stamp"]

_DIR = os.environ.get("ASPEN_PUT_TIMELINE", "")
#: Whether stamps are taken (the directory was named when the module was imported).
ON = bool(_DIR)
_fd = -1


def stamp(stage: str, index: int, flag: int = 0, at: float | None = None) -> None:
    """Record that log index ``index`` reached ``stage`` now (or at ``at``); ``flag`` is a
    stage's own note (e.g. 1: a write cycle was running in the driver's thread)."""
    global _fd
    if _fd < 0:
        _fd = os.open(
            os.path.join(_DIR, f"{os.getpid()}.tl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
        )
    now = time.monotonic() if at is None else at
    os.write(_fd, f"{stage} {index} {now:.6f} {flag}\n".encode())
