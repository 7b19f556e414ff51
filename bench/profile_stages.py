"""Attribute a node's py-spy samples to the stages of a client request.

Reads a ``py-spy record --format raw`` file (``bench/profile_writes.py`` leaves
``bench/results/profile-<nodes>/leader.txt``; ``bench/rpc_server_cpu.py --py-spy FILE``
records the RPC server alone) and prints the share of samples per stage: framing/decoding,
the session state machine, the capability check, dispatch and the task per request, command
building, the proposal and its wait, reply encoding, transport writes (with TLS), the Raft
driver on the loop and the node's other threads. Each sample goes to the innermost frame
that names a stage (a write inside ``_finish`` counts as a write, not as the session).

    .venv/bin/python bench/profile_stages.py bench/results/profile-1/leader.txt
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

#: (stage, substrings of a frame), tried on each frame from the innermost outwards.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "proposal + its wait (replicator, event)",
        ("Replicator.", "ClusterRuntime.propose", "_Waiter", "OneShot", "locks.py", "mixins.py"),
    ),
    ("command building / state machine", ("aspen/kv/commands.py", "kv_put ", "state_machine")),
    ("capability check", ("aspen/auth/",)),
    (
        "transport write (+TLS encrypt)",
        ("_AsyncioSession.send_bytes", "_AsyncioSession._flush", "SSLObject.write"),
    ),
    ("TLS read", ("SSLObject.read", "sslproto")),
    ("reply encoding", ("ServerSession._encode", "WireConnection.send", "packb")),
    ("framing / decoding", ("receive_data", "FrameDecoder", "_decode (", "framing.py")),
    ("dispatch + task per request", ("_spawn", "_run_unary", "TaskHandle", "create_task")),
    ("session state machine", ("aspen/rpc/", "aspen/transport/aio.py")),
]
#: Stages decided by the outermost frames (threads, the Raft driver's own task).
_THREAD = "other threads (Raft cycle, LMDB, WAL)"
_DRIVER = "Raft driver on the loop (cycles, delivery)"
_DRIVER_FRAMES = ("Replicator.run ", "Replicator._cycle_forever", "_loop_caller", "._deliver ")


def stage_of(stack: str) -> str:
    """The stage one semicolon-separated stack belongs to."""
    frames = stack.split(";")
    if frames[0].startswith("Thread._bootstrap"):
        return _THREAD
    if any(marker in stack for marker in _DRIVER_FRAMES):
        return _DRIVER
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    return "event loop itself (epoll, reads, callbacks) and other"


def main() -> None:
    """Print the share of samples per stage."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("raw", type=Path, help="a py-spy --format raw file")
    args = ap.parse_args()
    shares: collections.Counter[str] = collections.Counter()
    for line in args.raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            shares[stage_of(stack)] += int(count)
    total = sum(shares.values()) or 1
    print(f"{total} samples")
    for stage, n in shares.most_common():
        print(f"  {100 * n / total:5.1f}%  {stage}")


if __name__ == "__main__":
    main()
