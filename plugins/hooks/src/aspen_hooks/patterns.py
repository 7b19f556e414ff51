"""Handler patterns: which events a handler wants.

A pattern is ``EVENT``, ``EVENT:KEY`` or ``EVENT:SUBJECT``:

* ``EVENT`` is an event name (``kv.put``, ``raft.leader_changed``, ``forge.push``) or a
  family glob (``kv.*``, ``cluster.*``, ``forge.*``, ``*``). ``kv`` events come from the KV
  history, ``raft`` / ``cluster`` ones from the plugin's journal keys; every other family
  (``forge.push``, ``deploy.requested``) comes from the core's **event journal**
  (``events.watch``, docs/events.md) and from ``hooks.trigger`` (by hand, or forwarded from
  another cluster). ``*`` alone reads the KV history (kv, raft and cluster events).
* ``KEY`` (``kv`` events only) is a key or a glob over keys: ``/app/config/*`` matches
  every key under ``/app/config/``; ``*`` matches any run of characters and ``?`` one.
* ``SUBJECT`` (journal events) is a glob over the event's subject: ``forge.push:acme/*``
  runs for pushes to every repository of ``acme``.

Without a ``KEY``, ``kv`` patterns leave out the plugins' own keys (``/_aspen/…``); name
them explicitly to watch them — except the hooks plugin's own (``/_aspen/hooks/…``),
which no handler sees: a handler would otherwise feed on its own progress writes.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from aspen.errors import InvalidArgumentError
from aspen_hooks import limits
from aspen_hooks.keys import JOURNAL, prefix_end

__all__ = ["HISTORY_FAMILIES", "KV_EVENTS", "Pattern", "parse_pattern"]

#: The kv events a handler can receive from the KV history.
KV_EVENTS = ("kv.put", "kv.delete")
#: Event families read from the durable KV history (others are trigger-only).
HISTORY_FAMILIES = ("kv", "raft", "cluster")
_EVENT = re.compile(r"^(\*|[a-z][a-z0-9_-]*(\.([a-z][a-z0-9_-]*|\*))*)$")
_INTERNAL = b"/_aspen/"
_OWN = "/_aspen/hooks/"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern (see the module docs)."""

    text: str
    event: str
    key: str | None = None

    @property
    def family(self) -> str:
        """``kv``, ``raft``, ``cluster``, ``*`` (every family) or a custom family."""
        return self.event.split(".", 1)[0]

    @property
    def journal(self) -> bool:
        """Whether the wanted events come from the core's event journal (every family but
        the KV history's)."""
        return self.family not in (*HISTORY_FAMILIES, "*")

    def matches_event(self, name: str) -> bool:
        """Whether an event called ``name`` is wanted (keys aside)."""
        return fnmatch.fnmatchcase(name, self.event)

    def matches(self, name: str, key: bytes | None = None, subject: str | None = None) -> bool:
        """Whether the event ``name`` (on ``key`` for kv events, on ``subject`` for journal
        events) is wanted."""
        if not self.matches_event(name):
            return False
        if not name.startswith("kv."):
            if self.key is None or not self.journal:
                return True
            return subject is not None and fnmatch.fnmatchcase(subject, self.key)
        if key is None:
            return self.key is None
        if key.startswith(_OWN.encode()):
            return False
        if self.key is None:
            return not key.startswith(_INTERNAL)
        text = key.decode("utf-8", "surrogateescape")
        return fnmatch.fnmatchcase(text, self.key)

    def watch_range(self) -> tuple[bytes, bytes] | None:
        """The smallest key range whose history holds every wanted event (``None``: the
        pattern names journal events only, which never come from the history)."""
        family = self.family
        if family == "kv":
            if self.key is None:
                return b"\0", b"\0"
            literal = re.split(r"[*?\[]", self.key, maxsplit=1)[0].encode()
            if literal == self.key.encode():
                return literal, literal + b"\0"
            return (literal, prefix_end(literal)) if literal else (b"\0", b"\0")
        if family in ("raft", "cluster"):
            start = JOURNAL + family.encode() + b"."
            return start, prefix_end(start)
        if family == "*":
            return b"\0", b"\0"
        return None


def parse_pattern(text: str) -> Pattern:
    """Parse and check a pattern; ``invalid_argument`` with the reason when it is bad."""
    if not isinstance(text, str) or not text:
        raise InvalidArgumentError("pattern must be a non-empty string such as kv.put:/app/*")
    if len(text) > limits.HOOKS_MAX_PATTERN_CHARS:
        raise InvalidArgumentError(
            f"pattern is longer than HOOKS_MAX_PATTERN_CHARS ({limits.HOOKS_MAX_PATTERN_CHARS})"
        )
    event, sep, key = text.partition(":")
    if not _EVENT.match(event):
        raise InvalidArgumentError(
            f"bad pattern {text!r}: the event part {event!r} must be a dotted lower-case "
            "name or glob such as kv.put, kv.*, raft.leader_changed, cluster.*"
        )
    if event.endswith("*") and not (event == "*" or event.endswith(".*")):
        raise InvalidArgumentError(f"bad pattern {text!r}: '*' must be a whole name part")
    if sep:
        if not key:
            raise InvalidArgumentError(f"bad pattern {text!r}: empty key after ':'")
        if event.split(".", 1)[0] in ("raft", "cluster", "*"):
            raise InvalidArgumentError(
                f"bad pattern {text!r}: only kv events have keys (kv.put:/prefix/*) and "
                "journal events subjects (forge.push:acme/*)"
            )
        if "\0" in key or key.count("[") != key.count("]"):
            raise InvalidArgumentError(f"bad pattern {text!r}: malformed key glob")
        if event.startswith("kv.") and key.startswith(_OWN):
            raise InvalidArgumentError(
                f"bad pattern {text!r}: the hooks plugin's own keys ({_OWN}) cannot be hooked"
            )
    family = event.split(".", 1)[0]
    if family == "kv" and event not in ("kv.*", *KV_EVENTS):
        raise InvalidArgumentError(
            f"bad pattern {text!r}: kv events are {', '.join(KV_EVENTS)} (or kv.*)"
        )
    return Pattern(text=text, event=event, key=key if sep else None)
