"""Validate published events into the journal's internal ops, and read params into requests.

A published event becomes the internal op (inside a ``txn`` command, see
:mod:`aspen.kv.commands`)::

    {"op": "publish", "name": str, "subject": str, "payload": bytes, "time": float}

``payload`` is the msgpack encoding of what the publisher gave (checked here, so apply never
fails on it) and ``time`` the proposer's clock when it validated the event: apply never
reads a clock. Bad input raises :class:`~aspen.errors.InvalidArgumentError` naming the bound.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from aspen import limits
from aspen.errors import InvalidArgumentError
from aspen.journal.match import Match, parse_match

__all__ = [
    "RESERVED_FAMILIES",
    "ReadRequest",
    "check_name",
    "publish_op",
    "read_request",
    "retention_command",
]

#: First name parts the core keeps for itself (and that aspen-hooks reads from the KV
#: history): a published event may not use them.
RESERVED_FAMILIES = frozenset({"aspen", "core", "kv", "lease", "node", "raft", "cluster"})
_NAME = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+")
_MAX_I64 = 2**63 - 1


def check_name(name: object, where: str = "") -> str:
    """An event name: dotted lower-case parts, at least two (``<plugin>.<verb>``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"{where}name {name!r} must be dotted lower-case parts such as forge.push "
            "(the first part is the publishing plugin's name)"
        )
    if len(name) > limits.EVENTS_MAX_NAME_BYTES:
        raise InvalidArgumentError(
            f"{where}name is {len(name)} bytes, over EVENTS_MAX_NAME_BYTES "
            f"({limits.EVENTS_MAX_NAME_BYTES})"
        )
    family = name.split(".", 1)[0]
    if family in RESERVED_FAMILIES:
        raise InvalidArgumentError(
            f"{where}name {name!r}: the family {family!r} belongs to the core "
            f"({', '.join(sorted(RESERVED_FAMILIES))} are reserved)"
        )
    return name


def publish_op(params: Any, where: str = "", *, now: float | None = None) -> dict[str, Any]:
    """Validate ``{name, subject, payload}`` into a ``publish`` op stamped with the proposer's
    time (``now``, default the clock now)."""
    if not isinstance(params, dict):
        raise InvalidArgumentError(f"{where.rstrip('.') or 'event'} must be a map")
    name = check_name(params.get("name"), where)
    subject = params.get("subject", "")
    if subject is None:
        subject = ""
    if not isinstance(subject, str) or "\0" in subject:
        raise InvalidArgumentError(f"{where}subject must be a string without NUL")
    size = len(subject.encode("utf-8", "surrogatepass"))
    if size > limits.EVENTS_MAX_SUBJECT_BYTES:
        raise InvalidArgumentError(
            f"{where}subject is {size} bytes, over EVENTS_MAX_SUBJECT_BYTES "
            f"({limits.EVENTS_MAX_SUBJECT_BYTES})"
        )
    try:
        payload = msgpack.packb(params.get("payload"), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(f"{where}payload is not msgpack-able: {exc}") from exc
    if len(payload) > limits.EVENTS_MAX_PAYLOAD_BYTES:
        raise InvalidArgumentError(
            f"{where}payload is {len(payload)} bytes as msgpack, over EVENTS_MAX_PAYLOAD_BYTES "
            f"({limits.EVENTS_MAX_PAYLOAD_BYTES})"
        )
    return {
        "op": "publish",
        "name": name,
        "subject": subject,
        "payload": payload,
        "time": time.time() if now is None else float(now),
    }


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Where to read from (``start`` position, 0 = the oldest kept; or the first event after
    ``after_revision``; neither: the caller's default), which events, how many per page."""

    start: int | None = None
    after_revision: int | None = None
    match: Match = field(default_factory=Match)
    limit: int = limits.EVENTS_MAX_PAGE_EVENTS


def _int(params: dict[str, Any], field: str, lo: int, hi: int) -> int | None:
    value = params.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgumentError(f"{field} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def read_request(params: Any) -> ReadRequest:
    """Validate ``events.read`` / ``events.watch`` params: ``from`` (position) or
    ``after_revision``, ``match``, ``limit`` (at most EVENTS_MAX_PAGE_EVENTS)."""
    if not isinstance(params, dict):
        raise InvalidArgumentError("events params must be a map")
    start = _int(params, "from", 0, _MAX_I64)
    after = _int(params, "after_revision", 0, _MAX_I64)
    if start is not None and after is not None:
        raise InvalidArgumentError("give from or after_revision, not both")
    limit = _int(params, "limit", 1, limits.EVENTS_MAX_PAGE_EVENTS)
    return ReadRequest(
        start=start,
        after_revision=after,
        match=parse_match(params.get("match")),
        limit=limit or limits.EVENTS_MAX_PAGE_EVENTS,
    )


def retention_command(params: Any) -> dict[str, Any]:
    """Validate ``events.retention`` params (``max_events``, ``max_bytes``, ``max_age``
    seconds; each optional, 0 age = no age bound) into an ``events_retention`` command."""
    if not isinstance(params, dict):
        raise InvalidArgumentError("events.retention params must be a map")
    cmd: dict[str, Any] = {"op": "events_retention"}
    for bound in ("max_events", "max_bytes"):
        value = _int(params, bound, 1, _MAX_I64)
        if value is not None:
            cmd[bound] = value
    age = params.get("max_age")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, int | float) or not 0 <= age < 1e12:
            raise InvalidArgumentError(f"max_age must be a number of seconds >= 0, got {age!r}")
        cmd["max_age"] = float(age)
    return cmd
