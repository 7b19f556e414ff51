"""The executors of aspen-hooks: run a handler's ``shell``, ``python`` or ``forward`` target.

Three calls, one per phase of a handler's life:

* :func:`validate_target` at ``hooks add`` (and before every run, since the running node's
  settings may differ from the adding node's): offline checks and normalisation;
* :func:`check_target` at ``hooks add``: online checks (import the entry point, reach the
  forward target);
* :func:`execute` for every run: never raises for a handler's failure, returns an
  :class:`Outcome`; cancelling it stops the run (a shell's process group is killed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from types import ModuleType
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_hooks.executors import forward, job, pyfunc, shell
from aspen_hooks.executors.base import ExecutorSettings, Invocation, Outcome, failed

__all__ = [
    "KINDS",
    "ExecutorSettings",
    "Invocation",
    "Outcome",
    "check_target",
    "execute",
    "public_target",
    "validate_target",
]

log = logging.getLogger(__name__)

#: Handler kinds, in the order the CLI offers them.
KINDS = ("shell", "python", "forward", "job")
_EXECUTORS: dict[str, ModuleType] = {
    "shell": shell,
    "python": pyfunc,
    "forward": forward,
    "job": job,
}


def _executor(kind: str) -> ModuleType:
    """The module implementing ``kind``, or ``InvalidArgumentError`` naming the kinds."""
    module = _EXECUTORS.get(kind) if isinstance(kind, str) else None
    if module is None:
        raise InvalidArgumentError(
            f"unknown handler kind {kind!r}; kinds: {', '.join(KINDS)}", field="kind"
        )
    return module


def validate_target(
    kind: str, target: dict[str, Any], settings: ExecutorSettings
) -> dict[str, Any]:
    """Check and normalise a handler's target; raise ``InvalidArgumentError`` saying why.

    Targets: shell ``{"command": str}``; python ``{"entrypoint": "package.module:function"}``;
    forward ``{"endpoint": "host:port", "token": str, "event": optional str}``.
    """
    return _executor(kind).validate(target, settings)


async def check_target(kind: str, target: dict[str, Any]) -> None:
    """Online checks at add time, on a validated target.

    python: import the entry point (``InvalidArgumentError`` if it cannot be imported or is
    not callable). forward: connect, authenticate and check the remote runs aspen-hooks
    (``UnavailableError`` if unreachable, ``InvalidArgumentError`` if the token is refused).
    shell: nothing.
    """
    module = _executor(kind)
    check = getattr(module, "check", None)
    if check is not None:
        await check(target)


def public_target(kind: str, target: dict[str, Any]) -> dict[str, Any]:
    """``target`` fit to show (``hooks list``/``show``, logs): secrets such as a forward
    token are redacted."""
    return forward.redact(target) if kind == "forward" else dict(target)


async def execute(
    kind: str, target: dict[str, Any], invocation: Invocation, settings: ExecutorSettings
) -> Outcome:
    """Run the handler once. A bad target, a failing handler or an executor bug all give
    ``ok=False`` with a one-line ``error``; only cancellation propagates."""
    start = time.monotonic()
    try:
        module = _executor(kind)
        normal = module.validate(target, settings)
        outcome = await module.execute(normal, invocation, settings)
    except InvalidArgumentError as exc:
        outcome = failed(f"invalid {kind} target on this node: {exc.message}")
    except Exception as exc:
        log.exception("hooks: the %s executor failed running handler %r", kind, invocation.handler)
        outcome = failed(f"executor error: {type(exc).__name__}: {exc}")
    return replace(outcome, duration=time.monotonic() - start)
