"""A python hook for bench/hooks.py: records when it started and for which key.

The node process imports it (bench/hooks.py puts this folder on its PYTHONPATH); each
call appends ``<unix time> <key>`` to the file named by ``$ASPEN_BENCH_HOOK_LOG``.
"""

from __future__ import annotations

import os
import time
from typing import Any


def record(event: dict[str, Any]) -> None:
    """Append the start time and the key (journal events: the subject) of ``event``."""
    started = time.time()
    with open(os.environ["ASPEN_BENCH_HOOK_LOG"], "a") as log:
        log.write(f"{started:.6f} {event.get('key') or event.get('subject', '')}\n")
