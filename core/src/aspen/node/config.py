"""Where a node keeps its data and how it is reached."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from aspen import limits

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "NodeConfig",
    "address_in_use",
    "default_data_dir",
    "default_peer_listen",
    "parse_hostport",
]

#: The client port a node listens on when not told otherwise.
DEFAULT_PORT = 7379
#: The default listen address: loopback only.
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


def default_data_dir() -> Path:
    """Return the data directory used when none is given: ``$ASPEN_DATA_DIR`` or
    ``$XDG_DATA_HOME/aspen/node`` (``~/.local/share/aspen/node``)."""
    explicit = os.environ.get("ASPEN_DATA_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aspen" / "node"


def parse_hostport(text: str, *, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``host:port`` (or ``host``, ``[v6]:port``, ``tcp://host:port``) into its parts."""
    text = text.strip().split("://", 1)[-1].rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not host:
        raise ValueError(f"no host in address {text!r}")
    try:
        port_no = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in address {text!r}") from None
    if not 0 <= port_no <= 65535:
        raise ValueError(f"port out of range in address {text!r}")
    return host, port_no


def address_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (so a node could not bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as a node's listener: a port that only has connections in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def default_peer_listen(listen: str) -> str:
    """The peer address used when none is given: the client port + 1 (port 0 stays 0)."""
    host, port = parse_hostport(listen)
    return f"{host}:{port + 1 if port else 0}"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything needed to start one node."""

    data_dir: Path = field(default_factory=default_data_dir)
    listen: str = DEFAULT_LISTEN
    #: Optional TOML file with ``[<plugin>]`` sections for plugin configuration.
    config_file: Path | None = None
    #: Address peers reach this node's Raft transport on (must stay stable across restarts).
    peer_listen: str = "127.0.0.1:0"
    #: Peer address other members should dial, when it differs from ``peer_listen`` (NAT,
    #: a proxy); default: the bound peer address.
    advertise_peer: str | None = None
    #: A join token and a member's peer address (``TOKEN@host:port``) to join a cluster.
    join: str | None = None
    #: fsync every group commit (turn off only for throwaway test nodes).
    sync: bool = True
    #: Serve linearizable reads on the leader from its lease, without a heartbeat round
    #: (Raft thesis 6.4); assumes clocks drift at most 10 %, see docs/lease-reads.md.
    lease_reads: bool = False
    #: Longest the state machine's LMDB commit may wait after an apply, batching applies
    #: of many writes into one commit (``aspen.node.replicator``; 0: commit every cycle).
    apply_batch_seconds: float = limits.APPLY_BATCH_SECONDS
