"""Where the hooks plugin keeps its state in the cluster's KV store (all under
``/_aspen/hooks/``).

========================  ==========================================================
key                       value (msgpack)
========================  ==========================================================
``handlers/<name>``       the handler's spec (:class:`aspen_hooks.model.HandlerSpec`)
``state/<name>``          its cursor, counters and recent durations (runner-written)
``dlq/<name>/<id>``       one dead-lettered event: the event, the error, attempts
``runner``                the current runner (node id, endpoint), under its lease; the
                          key's ``create_revision`` is the runner's fencing token
``journal/<event>``       the last ``raft.*`` / ``cluster.*`` event of that name, written
                          by the leader so that handlers read those events from the KV
                          history like every other event
========================  ==========================================================
"""

from __future__ import annotations

from aspen.client import prefix_end

__all__ = [
    "DLQ",
    "HANDLERS",
    "JOURNAL",
    "PREFIX",
    "RUNNER",
    "STATE",
    "dlq_key",
    "dlq_prefix",
    "handler_key",
    "journal_key",
    "prefix_end",
    "state_key",
]

#: Everything the plugin stores lives under this prefix.
PREFIX = b"/_aspen/hooks/"
HANDLERS = PREFIX + b"handlers/"
STATE = PREFIX + b"state/"
DLQ = PREFIX + b"dlq/"
JOURNAL = PREFIX + b"journal/"
RUNNER = PREFIX + b"runner"


def handler_key(name: str) -> bytes:
    """The key of handler ``name``'s spec."""
    return HANDLERS + name.encode()


def state_key(name: str) -> bytes:
    """The key of handler ``name``'s cursor and counters."""
    return STATE + name.encode()


def dlq_prefix(name: str) -> bytes:
    """The prefix of handler ``name``'s dead-letter entries."""
    return DLQ + name.encode() + b"/"


def dlq_key(name: str, entry_id: str) -> bytes:
    """The key of one dead-letter entry of handler ``name``."""
    return dlq_prefix(name) + entry_id.encode()


def journal_key(event_name: str) -> bytes:
    """The journal key of a ``raft.*`` / ``cluster.*`` event name."""
    return JOURNAL + event_name.encode()
