"""A local N-node cluster for development: one OS process per node on 127.0.0.1.

Node i (1..N) serves clients on ``base_port + i`` and peers on ``base_port + 100 + i``,
with its data in ``<dir>/n<i>``. On a fresh directory node 1 starts a new cluster and the
others join it with node 1's join token, then are promoted to voters once they caught up.
When the cluster has a leader, ``<dir>/env`` gets ``ASPEN_ENDPOINT`` and ``ASPEN_TOKEN``,
and ``<dir>/n<i>.pid`` holds the process id of node i.

:meth:`DevCluster.supervise` keeps the cluster running: a node that exits is reported (how
it exited, where its log is) and, under the ``on-failure`` policy, started again after a
backoff that doubles up to :data:`RESTART_BACKOFF_MAX_SECONDS`; the other nodes keep
serving. Only SIGINT or SIGTERM stops the cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aspen.errors import AspenError
from aspen.node.config import address_in_use
from aspen.transport.datadir import ROOT_TOKEN_FILE
from aspen.transport.ports import PEER_PORT_OFFSET

__all__ = [
    "PEER_PORT_OFFSET",
    "RESTART_POLICIES",
    "AddressInUseError",
    "DevCluster",
    "RestartPolicy",
    "describe_exit",
    "last_line",
    "node_command",
]

#: Seconds a node process has to start serving.
NODE_START_SECONDS = 30.0
#: Seconds a joined learner has to catch up and be promoted.
PROMOTE_SECONDS = 60.0
#: Name of the join token file a cluster's first node writes.
JOIN_TOKEN_FILE = "join-token"
#: Seconds a node has to stop after SIGTERM before it is killed.
NODE_STOP_SECONDS = 20.0
#: Seconds before the first restart of a node that failed.
RESTART_BACKOFF_FIRST_SECONDS = 1.0
#: Longest wait before restarting a node that keeps failing (the wait doubles up to it).
RESTART_BACKOFF_MAX_SECONDS = 30.0
#: A node that ran this long before it failed is restarted after the first backoff again.
RESTART_BACKOFF_RESET_SECONDS = 60.0
#: Seconds between two looks at the node processes.
SUPERVISE_POLL_SECONDS = 0.2
#: Bytes read from the end of a node's log to quote its last line when it fails.
LOG_TAIL_BYTES = 4096

#: What to do when a node exits on its own: ``never`` restart it, or restart it when it
#: failed (``on-failure``: a non-zero exit code or a signal).
RestartPolicy = Literal["never", "on-failure"]
#: The restart policies, default first.
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("on-failure", "never")


class AddressInUseError(RuntimeError):
    """A client or peer address of the cluster is already taken (another cluster runs there)."""


def describe_exit(returncode: int) -> str:
    """How a process ended, for people: ``exit code 1`` or ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def last_line(log: Path) -> str:
    """The last non-empty line of a log file (read from its last LOG_TAIL_BYTES), or ""."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = f.read()
    except OSError:
        return ""
    lines = [line.strip() for line in tail.decode("utf-8", "replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")


@dataclass
class _Watch:
    """What the supervisor knows about one node process."""

    started: float
    #: Seconds to wait before its next restart (doubles per failure, up to the maximum).
    backoff: float = RESTART_BACKOFF_FIRST_SECONDS
    #: When to start the node again (None: it runs, or stays down).
    restart_at: float | None = None
    #: The node exited and is not restarted.
    down: bool = False


def node_command(
    data_dir: Path,
    listen: str,
    *,
    peer_listen: str | None = None,
    advertise_peer: str | None = None,
    join: str | None = None,
) -> list[str]:
    """The command line that runs ``aspen node start`` with this Python."""
    args = [sys.executable, "-m", "aspen", "node", "start"]
    args += ["--data-dir", str(data_dir), "--listen", listen]
    if peer_listen:
        args += ["--peer-listen", peer_listen]
    if advertise_peer:
        args += ["--advertise-peer", advertise_peer]
    if join:
        args += ["--join", join]
    return args


@dataclass
class DevCluster:
    """Start, watch and stop the node processes of a local cluster."""

    data_dir: Path
    nodes: int
    base_port: int
    host: str = "127.0.0.1"
    #: Node index -> the peer address to advertise instead of the real one (tests put a
    #: fault-injecting proxy there).
    advertise: dict[int, str] = field(default_factory=dict)
    #: Extra environment for every node process (on top of this process's).
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    #: Node index -> the ``--join`` argument of its first start (used again if it is
    #: restarted before it joined).
    joins: dict[int, str] = field(default_factory=dict)

    def client_endpoint(self, i: int) -> str:
        """Client host:port of node ``i`` (1-based)."""
        return f"{self.host}:{self.base_port + i}"

    def peer_endpoint(self, i: int) -> str:
        """Peer host:port of node ``i`` (1-based)."""
        return f"{self.host}:{self.base_port + PEER_PORT_OFFSET + i}"

    def node_dir(self, i: int) -> Path:
        """Data directory of node ``i``."""
        return self.data_dir / f"n{i}"

    @property
    def token(self) -> str:
        """The cluster's root token (every node holds the same one)."""
        return (self.node_dir(1) / ROOT_TOKEN_FILE).read_text().strip()

    def log_file(self, i: int) -> Path:
        """The log (stdout and stderr) of node ``i``."""
        return self.data_dir / f"n{i}.log"

    def pid_file(self, i: int) -> Path:
        """File holding the process id of node ``i`` while the cluster runs."""
        return self.data_dir / f"n{i}.pid"

    def busy_addresses(self) -> list[str]:
        """The client and peer addresses of this cluster that something already listens on."""
        addresses = []
        for i in range(1, self.nodes + 1):
            for port in (self.base_port + i, self.base_port + PEER_PORT_OFFSET + i):
                if address_in_use(self.host, port):
                    addresses.append(f"{self.host}:{port}")
        return addresses

    def _spawn(self, i: int, join: str | None) -> subprocess.Popen:
        if join:
            self.joins[i] = join
        args = node_command(
            self.node_dir(i),
            self.client_endpoint(i),
            peer_listen=self.peer_endpoint(i),
            advertise_peer=self.advertise.get(i),
            join=join,
        )
        log = open(self.log_file(i), "ab")  # noqa: SIM115 - owned by the child
        # ASPEN_DEV_NODE_INDEX (0, 1, …) lets plugins with a well-known port (the secrets
        # HTTP API) offset their default so that local nodes do not collide.
        env = {**os.environ, "ASPEN_DEV_NODE_INDEX": str(i - 1), **self.env}
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        if len(self.procs) >= i:
            self.procs[i - 1] = proc
        else:
            self.procs.append(proc)
        self.pid_file(i).write_text(f"{proc.pid}\n")
        return proc

    def kill(self, i: int) -> None:
        """``kill -9`` node ``i`` and reap it."""
        proc = self.procs[i - 1]
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def restart(self, i: int) -> None:
        """Start node ``i`` again on its data directory and wait until it serves."""
        self._spawn(i, None)
        self._wait_serving(i)

    def _wait_serving(self, i: int) -> None:
        import aspen

        deadline = time.monotonic() + NODE_START_SECONDS
        while True:
            proc = self.procs[i - 1]
            if proc.poll() is not None:
                why = last_line(self.log_file(i))
                raise RuntimeError(
                    f"node {i} exited ({describe_exit(proc.returncode)})"
                    + (f": {why}" if why else "")
                    + f"; log: {self.log_file(i)}"
                )
            try:
                token = (self.node_dir(i) / ROOT_TOKEN_FILE).read_text().strip()
                with aspen.connect(self.client_endpoint(i), token=token, timeout=2) as c:
                    c.call("cluster.status")
                if proc.poll() is None:  # it was this process that answered
                    return
            except (AspenError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {i} did not start serving in {NODE_START_SECONDS}s"
                    ) from None
                time.sleep(0.1)

    def up(self) -> None:
        """Start every node (a fresh directory forms a new cluster) and write ``env``.

        Raises :class:`AddressInUseError` before starting anything when one of the
        cluster's ports is taken, and ``RuntimeError`` when a node does not come up.
        """
        busy = self.busy_addresses()
        if busy:
            raise AddressInUseError(
                f"{', '.join(busy)} already in use (another `aspen dev up` or another "
                f"program listens there): stop it, or pick other ports with --base-port"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh = not (self.node_dir(1) / ROOT_TOKEN_FILE).exists()
        self._spawn(1, None)
        self._wait_serving(1)
        join = None
        if fresh:
            join_token = (self.node_dir(1) / JOIN_TOKEN_FILE).read_text().strip()
            join = f"{join_token}@{self.advertise.get(1, self.peer_endpoint(1))}"
        for i in range(2, self.nodes + 1):
            self._spawn(i, join if fresh or not self.node_dir(i).exists() else None)
        for i in range(2, self.nodes + 1):
            self._wait_serving(i)
        if fresh:
            self._promote_all()
        self._write_env()

    def _promote_all(self) -> None:
        import aspen

        deadline = time.monotonic() + PROMOTE_SECONDS
        endpoints = ",".join(self.client_endpoint(i) for i in range(1, self.nodes + 1))
        with aspen.connect(endpoints, token=self.token, timeout=10) as c:
            while True:
                status = c.call("cluster.status")
                learners = status["conf"]["learners"]
                voters = status["conf"]["voters"]
                if not learners and len(voters) == self.nodes:
                    return
                for learner in learners:
                    # refused while it has not caught up or a change is in flight: retry
                    with contextlib.suppress(AspenError):
                        c.call("cluster.promote", {"id": learner})
                if time.monotonic() > deadline:
                    raise RuntimeError(f"learners {learners} were not promoted in time")
                time.sleep(0.2)

    def _write_env(self) -> None:
        endpoints = ",".join(self.client_endpoint(i) for i in range(1, self.nodes + 1))
        tmp = self.data_dir / "env.tmp"
        tmp.write_text(f"ASPEN_ENDPOINT={endpoints}\nASPEN_TOKEN={self.token}\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.data_dir / "env")

    def supervise(
        self,
        restart: RestartPolicy = "on-failure",
        report: Callable[[str], None] = print,
    ) -> int:
        """Keep the nodes running until SIGINT or SIGTERM; return 0 then.

        A node that exits is reported through ``report`` (which node, how it exited, its
        log) while the others keep serving; under ``on-failure`` a node that failed is
        started again after a backoff (:data:`RESTART_BACKOFF_FIRST_SECONDS`, doubling up
        to :data:`RESTART_BACKOFF_MAX_SECONDS`). Returns 1 if every node is down for good.
        """
        stop: list[int] = []
        handlers = {
            signum: signal.signal(signum, lambda signum, _frame: stop.append(signum))
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        now = time.monotonic()
        watches = {i: _Watch(started=now) for i in range(1, self.nodes + 1)}
        try:
            while not stop:
                for i, watch in watches.items():
                    self._supervise_node(i, watch, restart, report)
                if all(w.down for w in watches.values()):
                    report("every node is down; stopping")
                    return 1
                time.sleep(SUPERVISE_POLL_SECONDS)
            return 0
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _supervise_node(
        self, i: int, watch: _Watch, restart: RestartPolicy, report: Callable[[str], None]
    ) -> None:
        """One look at node ``i``: notice an exit, or start it again when its backoff is over."""
        now = time.monotonic()
        if watch.down:
            return
        if watch.restart_at is not None:
            if now >= watch.restart_at:
                watch.restart_at = None
                watch.started = now
                join = None if (self.node_dir(i) / ROOT_TOKEN_FILE).exists() else self.joins.get(i)
                proc = self._spawn(i, join)
                report(f"node {i} restarted (pid {proc.pid})")
            return
        code = self.procs[i - 1].poll()
        if code is None:
            return
        log = self.log_file(i)
        where = f"node {i} ({self.client_endpoint(i)}) exited: {describe_exit(code)}"
        if code > 0 and last_line(log):
            where += f" ({last_line(log)})"
        if restart == "never" or code == 0:
            watch.down = True
            why = "--restart never" if restart == "never" else "it stopped cleanly"
            report(f"{where}; it stays down ({why}); log: {log}")
            self.pid_file(i).unlink(missing_ok=True)
            return
        if now - watch.started >= RESTART_BACKOFF_RESET_SECONDS:
            watch.backoff = RESTART_BACKOFF_FIRST_SECONDS
        delay = watch.backoff
        watch.backoff = min(delay * 2, RESTART_BACKOFF_MAX_SECONDS)
        watch.restart_at = now + delay
        report(f"{where}; restarting it in {delay:g}s; log: {log}")

    def down(self) -> None:
        """SIGTERM every node, then SIGKILL the ones that do not stop."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + NODE_STOP_SECONDS
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for i in range(1, self.nodes + 1):
            self.pid_file(i).unlink(missing_ok=True)
