"""The vocabulary of the sans-IO Raft core: entries, messages, state, and ``Ready``.

The driver (``aspen.node``) talks to :class:`aspen.raft.RawNode` only through these types,
in etcd's order::

    rd = raw.ready()                     # when raw.has_ready()
    persist(rd.hard_state, rd.entries, rd.snapshot)   # one LMDB txn, one fsync
    send(rd.messages)                    # only after the persist above
    apply(rd.committed)                  # then publish events
    raw.advance(rd)

Nothing here imports anyio, lmdb or sockets. Node ids are strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SoftState",
]


class EntryType(StrEnum):
    """What a log entry carries."""

    NORMAL = "normal"  # a state machine command (empty data = the leader's no-op)
    CONF_CHANGE = "conf"  # data is a packed ConfChange


class Role(StrEnum):
    """A node's role in its current term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"


class MessageType(StrEnum):
    """Raft messages between nodes (and local ones the driver steps in)."""

    APPEND = "app"
    APPEND_RESP = "app_resp"
    VOTE = "vote"
    VOTE_RESP = "vote_resp"
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESP = "pre_vote_resp"
    HEARTBEAT = "hb"
    HEARTBEAT_RESP = "hb_resp"
    SNAPSHOT = "snap"  # metadata only; the driver streams the data in chunks beside it
    TIMEOUT_NOW = "timeout_now"  # leadership transfer: campaign now
    READ_INDEX = "read_index"  # follower -> leader
    READ_INDEX_RESP = "read_index_resp"
    # local only (the driver steps these in; never sent):
    UNREACHABLE = "unreachable"
    SNAPSHOT_STATUS = "snap_status"


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry."""

    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver wants to know about when it changes."""

    leader: str | None
    role: Role


@dataclass(frozen=True, slots=True)
class ConfState:
    """Who votes and who only learns."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()


class ConfChangeType(StrEnum):
    """One-at-a-time membership changes."""

    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"  # learner -> voter
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change; ``context`` is opaque to Raft (the node puts the member's
    addresses and public key there)."""

    type: ConfChangeType
    node_id: str
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log and the configuration at that point."""

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: serve the read tagged ``context`` once applied >= ``index``."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. Unused fields keep their defaults."""

    type: MessageType
    frm: str
    to: str
    term: int = 0
    log_term: int = 0  # APPEND: term of the entry before ``entries``; VOTE: last log term
    index: int = 0  # APPEND: index before ``entries``; VOTE: last log index; RESP: match/hint
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APPEND_RESP on reject: follower's last index (fast back-off)
    hint_term: int = 0  # APPEND_RESP on reject: term at reject_hint (conflict term back-off)
    snapshot: SnapshotMeta | None = None
    context: bytes = b""  # READ_INDEX / HEARTBEAT: the read request tag


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the driver must do, in order: persist, send, apply, then ``advance``."""

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    #: Entries to append durably; entries[0].index may be <= the persisted last index, in
    #: which case the persisted suffix from there is replaced.
    entries: tuple[Entry, ...] = ()
    #: A snapshot received from the leader, to install before applying anything else.
    snapshot: SnapshotMeta | None = None
    #: Committed entries to apply to the state machine, in order.
    committed: tuple[Entry, ...] = ()
    #: Messages to send after the persist above.
    messages: tuple[Message, ...] = ()
    read_states: tuple[ReadState, ...] = ()
