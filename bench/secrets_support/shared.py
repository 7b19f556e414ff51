"""The shared harness (``../shared/bench/``), reused rather than copied: percentiles,
per-PID CPU and quiet-machine waits (``benchutil.py``) and its minimal keep-alive HTTP/1.1
client (``loadgen.RawHttpConn``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Folder of the shared bench harness (override with ``$ASPEN_SHARED_BENCH``).
SHARED_BENCH = Path(os.environ.get("ASPEN_SHARED_BENCH", ROOT.parent / "shared" / "bench"))

if not (SHARED_BENCH / "benchutil.py").exists():
    raise SystemExit(f"{SHARED_BENCH}/benchutil.py not found (set ASPEN_SHARED_BENCH)")
if str(SHARED_BENCH) not in sys.path:
    sys.path.append(str(SHARED_BENCH))

from benchutil import (  # noqa: E402
    CpuMeter,
    die_with_parent,
    lat_summary,
    other_cpu_pct,
    wait_quiet,
)
from loadgen import RawHttpConn  # noqa: E402

__all__ = [
    "CpuMeter",
    "RawHttpConn",
    "die_with_parent",
    "lat_summary",
    "other_cpu_pct",
    "wait_quiet",
]
