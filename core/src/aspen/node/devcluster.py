"""A local N-node cluster for development: one OS process per node on 127.0.0.1.

Node i (1..N) serves clients on ``base_port + i`` and peers on ``base_port + 100 + i``,
with its data in ``<dir>/n<i>``. On a fresh directory node 1 starts a new cluster and the
others join it with node 1's join token, then are promoted to voters once they caught up.
When the cluster has a leader, ``<dir>/env`` gets ``ASPEN_ENDPOINT`` and ``ASPEN_TOKEN``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aspen.errors import AspenError
from aspen.node.config import ROOT_TOKEN_FILE

__all__ = ["PEER_PORT_OFFSET", "DevCluster", "node_command"]

#: Peer port of node i = base port + PEER_PORT_OFFSET + i.
PEER_PORT_OFFSET = 100
#: Seconds a node process has to start serving.
NODE_START_SECONDS = 30.0
#: Seconds a joined learner has to catch up and be promoted.
PROMOTE_SECONDS = 60.0
#: Name of the join token file a cluster's first node writes.
JOIN_TOKEN_FILE = "join-token"


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

    def _spawn(self, i: int, join: str | None) -> subprocess.Popen:
        args = node_command(
            self.node_dir(i),
            self.client_endpoint(i),
            peer_listen=self.peer_endpoint(i),
            advertise_peer=self.advertise.get(i),
            join=join,
        )
        log = open(self.data_dir / f"n{i}.log", "ab")  # noqa: SIM115 - owned by the child
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
                raise RuntimeError(
                    f"node {i} exited with {proc.returncode}; see {self.data_dir}/n{i}.log"
                )
            try:
                token = (self.node_dir(i) / ROOT_TOKEN_FILE).read_text().strip()
                with aspen.connect(self.client_endpoint(i), token=token, timeout=2) as c:
                    c.call("cluster.status")
                return
            except (AspenError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {i} did not start serving in {NODE_START_SECONDS}s"
                    ) from None
                time.sleep(0.1)

    def up(self) -> None:
        """Start every node (a fresh directory forms a new cluster) and write ``env``."""
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

    def wait(self) -> int:
        """Block until a node exits or a signal arrives; return the first exit code seen."""
        stop: dict[str, int | None] = {"signal": None}

        def on_signal(signum: int, _frame: object) -> None:
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while stop["signal"] is None:
            for proc in self.procs:
                if proc.poll() is not None:
                    return proc.returncode or 1
            time.sleep(0.2)
        return 0

    def down(self) -> None:
        """SIGTERM every node, then SIGKILL the ones that do not stop."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
