"""A handler: what runs (kind and target), on which events (pattern), and how (timeout,
retries, enabled). Handlers are cluster state: one KV entry each, so every node agrees."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_hooks import limits
from aspen_hooks.patterns import Pattern, parse_pattern

__all__ = ["HandlerSpec", "check_name", "spec_from_params"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: Any) -> str:
    """A handler name: letters, digits, ``_ . -``, bounded; ``invalid_argument`` otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(
            f"bad handler name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    if len(name) > limits.HOOKS_MAX_NAME_CHARS:
        raise InvalidArgumentError(
            f"handler name is longer than HOOKS_MAX_NAME_CHARS ({limits.HOOKS_MAX_NAME_CHARS})"
        )
    return name


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One handler as stored in ``/_aspen/hooks/handlers/<name>``."""

    name: str
    on: str
    kind: str
    target: dict[str, Any] = field(default_factory=dict)
    timeout: float = limits.HOOKS_DEFAULT_TIMEOUT_SECONDS
    retries: int = limits.HOOKS_DEFAULT_RETRIES
    enabled: bool = True
    #: Deliver events after this revision when the handler has no saved cursor (0: after
    #: the revision that created the handler). ``hooks reset`` sets it.
    start_revision: int = 0
    #: Bumped when the handler starts over (``hooks reset``, ``hooks add --replace``): a
    #: saved cursor of an older generation no longer applies.
    generation: int = 0

    @property
    def pattern(self) -> Pattern:
        """The parsed pattern."""
        return parse_pattern(self.on)

    def with_enabled(self, enabled: bool) -> HandlerSpec:
        """A copy, enabled or disabled."""
        return replace(self, enabled=enabled)

    def to_record(self) -> dict[str, Any]:
        """The stored form (a msgpack-able map; read back with ``HandlerSpec(**record)``)."""
        return asdict(self)

    def to_json(self, *, show_secrets: bool = False) -> dict[str, Any]:
        """What ``hooks list`` / ``hooks show`` print (a forward token is masked)."""
        from aspen_hooks.executors import public_target

        target = dict(self.target) if show_secrets else public_target(self.kind, self.target)
        return {
            "name": self.name,
            "on": self.on,
            "kind": self.kind,
            "target": target,
            "timeout": self.timeout,
            "retries": self.retries,
            "enabled": self.enabled,
            "start_revision": self.start_revision,
        }


def spec_from_params(params: dict[str, Any], settings: Any) -> HandlerSpec:
    """Validate ``hooks.add`` params into a spec (the executor checks its own target).

    ``settings`` is the node's :class:`aspen_hooks.executors.ExecutorSettings`.
    """
    from aspen_hooks.executors import KINDS, validate_target

    name = check_name(params.get("name"))
    pattern = parse_pattern(params.get("on"))  # type: ignore[arg-type]
    kind = params.get("kind")
    if kind not in KINDS:
        raise InvalidArgumentError(f"unknown handler kind {kind!r}; known: {', '.join(KINDS)}")
    target = params.get("target")
    if not isinstance(target, dict):
        raise InvalidArgumentError("target must be a map")
    timeout = params.get("timeout", limits.HOOKS_DEFAULT_TIMEOUT_SECONDS)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= limits.HOOKS_MAX_TIMEOUT_SECONDS
    ):
        raise InvalidArgumentError(
            f"timeout must be a number of seconds in (0, {limits.HOOKS_MAX_TIMEOUT_SECONDS}]"
        )
    retries = params.get("retries", limits.HOOKS_DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidArgumentError("retries must be an integer")
    if not 0 <= retries <= limits.HOOKS_MAX_RETRIES:
        raise InvalidArgumentError(f"retries must be in [0, {limits.HOOKS_MAX_RETRIES}]")
    enabled = params.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidArgumentError("enabled must be a boolean")
    return HandlerSpec(
        name=name,
        on=pattern.text,
        kind=kind,
        target=validate_target(kind, target, settings),
        timeout=float(timeout),
        retries=retries,
        enabled=enabled,
    )
