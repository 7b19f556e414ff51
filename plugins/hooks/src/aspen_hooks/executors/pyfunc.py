"""The ``python`` executor: call ``package.module:function`` with the event.

The entry point is imported once (in a worker thread, so a slow import does not stall
the node) and kept; changed code needs a node restart. The function gets a copy of the
event that also holds ``idempotency_key``, ``handler`` and ``attempt``. An ``async``
function is awaited on the node's loop (so it must not block); a plain one runs in a
worker thread. Both run under the handler's timeout, but **a thread cannot be killed**:
a sync function that overruns is abandoned (reported as timed out, its thread runs on
until the function returns by itself), so a handler that may hang should be ``async`` or
bound its own blocking calls. The return value is kept if JSON can carry it (else its
``repr``), cut to ``max_output_bytes`` of JSON.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
import traceback
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from aspen.errors import InvalidArgumentError
from aspen_hooks import limits
from aspen_hooks.executors.base import ExecutorSettings, Invocation, Outcome, failed
from aspen_hooks.executors.fields import check_fields, require_text

__all__ = ["check", "execute", "load", "validate"]

_ENTRYPOINT_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
#: Resolved entry points (like ``sys.modules``, it lives as long as the process).
_loaded: dict[str, Callable[..., Any]] = {}


def validate(target: Any, settings: ExecutorSettings) -> dict[str, Any]:
    """Check a python target ``{"entrypoint": "package.module:function"}``."""
    target = check_fields("python", target, ("entrypoint",))
    entrypoint = require_text(
        "python",
        target,
        "entrypoint",
        limits.HOOKS_MAX_ENTRYPOINT_CHARS,
        limit_name="HOOKS_MAX_ENTRYPOINT_CHARS",
    ).strip()
    if not _ENTRYPOINT_RE.fullmatch(entrypoint):
        raise InvalidArgumentError(
            f"python entry point {entrypoint!r} is not of the form package.module:function",
            field="entrypoint",
        )
    return {"entrypoint": entrypoint}


def load(entrypoint: str) -> Callable[..., Any]:
    """Import and return the callable ``entrypoint`` names (blocking; cached once found).

    Raises the import's own exception, or ``TypeError`` if the object is not callable.
    """
    func = _loaded.get(entrypoint)
    if func is None:
        module_name, _, path = entrypoint.partition(":")
        obj: Any = importlib.import_module(module_name)
        for attribute in path.split("."):
            obj = getattr(obj, attribute)
        if not callable(obj):
            raise TypeError(f"{entrypoint} is a {type(obj).__name__}, not a callable")
        func = _loaded[entrypoint] = obj
    return func


async def _load_async(entrypoint: str) -> Callable[..., Any]:
    """:func:`load`, in a worker thread unless already cached."""
    func = _loaded.get(entrypoint)
    if func is None:
        func = await anyio.to_thread.run_sync(load, entrypoint, abandon_on_cancel=True)
    return func


async def check(target: dict[str, Any]) -> None:
    """Import the entry point now; ``InvalidArgumentError`` if that fails."""
    entrypoint = target["entrypoint"]
    try:
        with anyio.fail_after(limits.HOOKS_CHECK_TIMEOUT_SECONDS):
            await _load_async(entrypoint)
    except TimeoutError:
        raise InvalidArgumentError(
            f"python entry point {entrypoint!r} did not import within "
            f"{limits.HOOKS_CHECK_TIMEOUT_SECONDS:g}s (HOOKS_CHECK_TIMEOUT_SECONDS)",
            field="entrypoint",
        ) from None
    except Exception as exc:
        raise InvalidArgumentError(
            f"python entry point {entrypoint!r} cannot be used: {type(exc).__name__}: {exc}",
            field="entrypoint",
        ) from None


def _is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (functions and ``async __call__``)."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - the method itself is what is checked
    )


def _output(value: Any, max_bytes: int) -> Any:
    """``value`` if JSON can carry it within ``max_bytes``; else its repr or a cut text."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        value = text = repr(value)
    if len(text) <= max_bytes:
        return value
    return text[:max_bytes] + f" [output truncated: kept {max_bytes} of {len(text)} characters]"


async def execute(
    target: dict[str, Any], invocation: Invocation, settings: ExecutorSettings
) -> Outcome:
    """Call the function once under the timeout; see the module docstring."""
    entrypoint = target["entrypoint"]
    argument = copy.deepcopy(invocation.event)
    argument.update(
        idempotency_key=invocation.idempotency_key,
        handler=invocation.handler,
        attempt=invocation.attempt,
    )
    in_thread = False
    try:
        with anyio.move_on_after(invocation.timeout) as deadline:
            func = await _load_async(entrypoint)
            if _is_async(func):
                result = await func(argument)
            else:
                in_thread = True
                result = await anyio.to_thread.run_sync(
                    func,
                    argument,
                    abandon_on_cancel=True,
                    limiter=settings.python_threads.limiter(),
                )
                if inspect.isawaitable(result):
                    in_thread = False
                    result = await result
    except Exception as exc:
        trace = "".join(traceback.format_exception(exc))
        return failed(
            f"{type(exc).__name__}: {exc}",
            stderr=_cut(trace, settings.max_output_bytes),
        )
    if deadline.cancelled_caught:
        note = " (its thread was abandoned: a thread cannot be killed)" if in_thread else ""
        return failed(f"timed out after {float(invocation.timeout)!r}s{note}")
    return Outcome(ok=True, duration=0.0, output=_output(result, settings.max_output_bytes))


def _cut(text: str, max_chars: int) -> str:
    """``text`` cut to its last ``max_chars`` characters (the end of a traceback matters)."""
    if len(text) <= max_chars:
        return text
    return f"[traceback truncated: kept the last {max_chars} characters]\n" + text[-max_chars:]
