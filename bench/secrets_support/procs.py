"""Process and port plumbing shared by the Aspen and OpenBao set-ups."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aspen.testing import wait_for

T = TypeVar("T")

#: Seconds a server (or a cluster) has to become ready.
READY_SECONDS = 60.0
#: Seconds a server has to exit after SIGTERM before it gets SIGKILL.
STOP_SECONDS = 15.0


@dataclass(frozen=True)
class Endpoint:
    """One system under test, ready for load: where to send requests and what to watch."""

    #: ``aspen`` or ``openbao``.
    system: str
    #: How it keeps data, e.g. ``raft`` or ``inmem`` (OpenBao dev mode).
    storage: str
    #: Cluster size.
    nodes: int
    #: ``http://host:port`` of the leader's (active node's) Vault-compatible API.
    http_url: str
    #: Token accepted as ``X-Vault-Token`` (and by the Aspen client).
    token: str
    #: PIDs of every server process (their CPU is reported).
    pids: tuple[int, ...]
    #: ``host:port`` of the leader's Aspen client endpoint; ``None`` for OpenBao.
    rpc_endpoint: str | None = None


def wait_until(probe: Callable[[], T | None], what: str, timeout: float = READY_SECONDS) -> T:
    """:func:`aspen.testing.wait_for` with the bench's habits: ``probe`` every 0.2 s, any
    exception counts as "not yet", and ``what`` names the condition when time runs out."""
    return wait_for(probe, timeout, 0.2, message=what, ignore=(Exception,))


def spawn(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``args`` in its own session, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )


def stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM each process we started, SIGKILL it if it does not exit in time."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
