"""Where the coord plugin keeps its state: ``/_aspen/coord/<kind>/<name>/…``, and the
check every primitive's name goes through."""

from __future__ import annotations

import re
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen.rpc.params import require_str
from aspen_coord import limits

__all__ = ["KINDS", "NAME_PATTERN", "ROOT", "check_name", "name_of", "prefix"]

ROOT = b"/_aspen/coord/"
#: What a name may hold: letters, digits and ``. _ - @ + =`` (so it is also a capability
#: scope, ``coord:lock:<name>``, and a key segment).
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@+=-]+")
#: The primitive kinds; each is also the operation of its capability (``coord:lock:NAME``).
KINDS = (
    "lock",
    "election",
    "counter",
    "sequence",
    "semaphore",
    "rwlock",
    "barrier",
    "ratelimit",
    "service",
)


def check_name(name: object, field: str = "name") -> str:
    """``name`` if it is a valid primitive name: 1..COORD_MAX_NAME_BYTES characters of
    :data:`NAME_PATTERN`; else ``invalid_argument``."""
    text = require_str({field: name}, field)
    size = len(text.encode())
    if not 0 < size <= limits.COORD_MAX_NAME_BYTES:
        raise InvalidArgumentError(
            f"{field!r} must be 1 to COORD_MAX_NAME_BYTES ({limits.COORD_MAX_NAME_BYTES}) "
            f"bytes, not {size}",
            field=field,
            limit=limits.COORD_MAX_NAME_BYTES,
        )
    if not NAME_PATTERN.fullmatch(text):
        raise InvalidArgumentError(
            f"{field!r} {text!r} may hold only letters, digits and . _ - @ + =", field=field
        )
    return text


def name_of(params: dict[str, Any]) -> str:
    """The checked ``name`` field of a request."""
    return check_name(params.get("name"))


def prefix(kind: str, name: str) -> bytes:
    """The key prefix of primitive ``name`` of ``kind`` (ends with ``/``)."""
    return ROOT + kind.encode() + b"/" + name.encode() + b"/"
