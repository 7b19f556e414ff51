"""aspen.raft: a sans-IO Raft core in the style of etcd-io/raft.

Nothing in this package does I/O, reads a clock, starts a thread or touches global
randomness: the driver (``aspen.node``) feeds it ticks, peer messages and proposals, and
carries out the :class:`Ready` it hands back (persist, send, apply, advance). See
:mod:`aspen.raft.rawnode` for the driver loop and :mod:`aspen.raft.storage` for how a
cluster is bootstrapped.
"""

from __future__ import annotations

from aspen.raft.confchange import decode_conf_change, encode_conf_change
from aspen.raft.config import (
    DEFAULT_ELECTION_TICK,
    DEFAULT_HEARTBEAT_TICK,
    DEFAULT_MAX_APPLY_BYTES_PER_READY,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_INFLIGHT_MSGS,
    DEFAULT_MAX_SIZE_PER_MSG,
    DEFAULT_MAX_UNCOMMITTED_BYTES,
    Config,
)
from aspen.raft.errors import (
    CompactedError,
    ConfChangeRefusedError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    UnavailableError,
)
from aspen.raft.progress import ProgressState
from aspen.raft.rawnode import RawNode
from aspen.raft.status import ProgressStatus, Status
from aspen.raft.storage import (
    BOOTSTRAP_INDEX,
    BOOTSTRAP_TERM,
    MemoryStorage,
    RaftStorage,
    bootstrap,
    bootstrap_state,
)
from aspen.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "BOOTSTRAP_INDEX",
    "BOOTSTRAP_TERM",
    "DEFAULT_ELECTION_TICK",
    "DEFAULT_HEARTBEAT_TICK",
    "DEFAULT_MAX_APPLY_BYTES_PER_READY",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_INFLIGHT_MSGS",
    "DEFAULT_MAX_SIZE_PER_MSG",
    "DEFAULT_MAX_UNCOMMITTED_BYTES",
    "CompactedError",
    "ConfChange",
    "ConfChangeRefusedError",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NotLeaderError",
    "ProgressState",
    "ProgressStatus",
    "ProposalDroppedError",
    "RaftError",
    "RaftStorage",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "UnavailableError",
    "bootstrap",
    "bootstrap_state",
    "decode_conf_change",
    "encode_conf_change",
]
