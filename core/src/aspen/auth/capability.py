"""The capability algebra: what a token may do, as ``resource:operation[:scope]`` strings.

Examples: ``kv:read:/app/``, ``kv:write:/app/config/``, ``blob:read``,
``secrets:read:secret/data/app/*``, ``forge:push:acme/*``, ``jobs:submit:builds``,
``cluster:admin``.

* ``resource`` and ``operation`` are lowercase names (``[a-z][a-z0-9_-]*``).
* No scope (or ``*``) means every name of that resource.
* A ``kv`` scope is always a key **prefix**, byte for byte as etcd's ``--prefix``:
  ``kv:read:/app/`` covers ``/app/x`` but not ``/apple``; ``kv:read:/app`` covers both.
* Any other scope is an exact name (``jobs:submit:builds``) unless it ends in ``*``, which
  makes it a prefix (``forge:push:acme/*`` covers ``acme/web`` and ``acme/x/y``). A ``*``
  anywhere else is refused, so nobody mistakes a scope for a glob.

Relations (the meet-semilattice every check and attenuation uses):

* :meth:`Capability.covers`: every name ``b`` allows, ``a`` allows too;
* :meth:`Capability.intersect`: the capability allowing exactly what both allow (or
  ``None``): with prefixes and exact names the meet is always one of the two;
* :func:`narrow`: the capabilities a set keeps after an attenuation block, never wider than
  either side (property-tested in ``core/tests/test_auth_capability.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aspen.errors import InvalidArgumentError
from aspen.limits import MAX_CAPABILITY_BYTES, MAX_TOKEN_CAPABILITIES

__all__ = [
    "PREFIX_RESOURCES",
    "Capability",
    "CapabilityError",
    "covered",
    "narrow",
    "parse_capabilities",
    "parse_capability",
]

#: Resources whose scope is always a prefix (KV keys, as etcd's ranges; journal event names:
#: ``events:read:forge.`` covers ``forge.push``).
PREFIX_RESOURCES = frozenset({"kv", "events"})

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
#: Scope characters: printable, no whitespace, no quote or backslash (so a scope reads back
#: unambiguously from a token's Datalog source).
_SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e\u00a0-\U0010ffff]*")


class CapabilityError(InvalidArgumentError):
    """A capability string is malformed (the message says which part and why)."""


@dataclass(frozen=True, slots=True, order=True)
class Capability:
    """One capability: ``operation`` on the names of ``resource`` that ``scope`` matches.

    ``prefix`` true: every name starting with ``scope`` (``""`` = every name); false: the
    name ``scope`` exactly.
    """

    resource: str
    operation: str
    scope: str = ""
    prefix: bool = True

    def __str__(self) -> str:
        """The canonical text form (``parse_capability(str(c)) == c``)."""
        head = f"{self.resource}:{self.operation}"
        if self.resource in PREFIX_RESOURCES:
            return f"{head}:{self.scope}" if self.scope else head
        if not self.prefix:
            return f"{head}:{self.scope}"
        return f"{head}:{self.scope}*" if self.scope else head

    @property
    def kind(self) -> str:
        """``resource:operation``: what a method declares it needs."""
        return f"{self.resource}:{self.operation}"

    def allows(self, name: str) -> bool:
        """Whether this capability allows ``operation`` on the single name ``name``."""
        return name.startswith(self.scope) if self.prefix else name == self.scope

    def covers(self, other: Capability) -> bool:
        """Whether everything ``other`` allows, this allows too."""
        if self.resource != other.resource or self.operation != other.operation:
            return False
        if self.prefix:
            return other.scope.startswith(self.scope)
        return not other.prefix and other.scope == self.scope

    def intersect(self, other: Capability) -> Capability | None:
        """The capability allowing exactly what both allow, or ``None`` if nothing."""
        if self.covers(other):
            return other
        if other.covers(self):
            return self
        return None


def parse_capability(text: object) -> Capability:
    """Parse ``resource:operation[:scope]``; raise :class:`CapabilityError` naming the fault."""
    if not isinstance(text, str):
        raise CapabilityError(f"a capability must be a string, not {type(text).__name__}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CAPABILITY_BYTES:
        raise CapabilityError(
            f"capability of {size} bytes exceeds MAX_CAPABILITY_BYTES ({MAX_CAPABILITY_BYTES})"
        )
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise CapabilityError(
            f"capability {text!r} is not resource:operation[:scope] (e.g. kv:read:/app/)"
        )
    resource, operation = parts[0], parts[1]
    for what, name in (("resource", resource), ("operation", operation)):
        if not _NAME_RE.fullmatch(name):
            raise CapabilityError(
                f"capability {text!r}: {what} {name!r} must be a lowercase name "
                "([a-z][a-z0-9_-]*, at most 64 characters)"
            )
    scope = parts[2] if len(parts) == 3 else ""
    if not _SCOPE_RE.fullmatch(scope):
        raise CapabilityError(
            f"capability {text!r}: the scope must be printable, without spaces, quotes, "
            "backslashes or control characters"
        )
    if len(parts) == 3 and not scope:
        raise CapabilityError(f"capability {text!r}: empty scope (drop the last ':' for all)")
    if scope == "*":
        return Capability(resource, operation)
    if "*" in scope[:-1]:
        raise CapabilityError(
            f"capability {text!r}: '*' may only end a scope (a prefix), it is not a glob"
        )
    if resource in PREFIX_RESOURCES:
        return Capability(resource, operation, scope.removesuffix("*"), True)
    if scope.endswith("*"):
        return Capability(resource, operation, scope[:-1], True)
    return Capability(resource, operation, scope, not scope)


def parse_capabilities(texts: Iterable[object]) -> tuple[Capability, ...]:
    """Parse a list of capability strings (at most ``MAX_TOKEN_CAPABILITIES``), deduplicated
    and sorted."""
    caps = {parse_capability(t) for t in texts}
    if len(caps) > MAX_TOKEN_CAPABILITIES:
        raise CapabilityError(
            f"{len(caps)} capabilities exceed MAX_TOKEN_CAPABILITIES ({MAX_TOKEN_CAPABILITIES})"
        )
    return tuple(sorted(caps))


def covered(held: Iterable[Capability], wanted: Capability) -> bool:
    """Whether one capability of ``held`` covers ``wanted``."""
    return any(c.covers(wanted) for c in held)


def narrow(held: Iterable[Capability], block: Iterable[Capability]) -> tuple[Capability, ...]:
    """What a token holding ``held`` keeps after a block restricting it to ``block``: every
    pairwise meet, minus those another one already covers. Never wider than either side."""
    held = tuple(held)
    meets = {m for b in block for h in held if (m := h.intersect(b)) is not None}
    return tuple(sorted(m for m in meets if not any(o != m and o.covers(m) for o in meets)))
