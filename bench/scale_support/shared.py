"""Keys, values and process measurements shared by both sides of bench/scale.py."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: Every benchmark key starts with this prefix.
KEY_PREFIX = b"k/"
#: The 100-byte value of every key.
VALUE = b"v" * 100


def key(i: int) -> bytes:
    """The ``i``-th key (fixed width, so key order is number order)."""
    return KEY_PREFIX + b"%010d" % i


def _status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss(pid: int, *, anon: bool = False) -> int:
    """Resident set size of ``pid`` in bytes (``anon``: only its anonymous memory, i.e.
    without the pages of mapped files such as LMDB's, which the kernel may drop)."""
    return _status_kib(pid, "RssAnon" if anon else "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def tree_bytes(path: Path) -> int:
    """Bytes of disk the files under ``path`` occupy (allocated blocks, as ``du``)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
