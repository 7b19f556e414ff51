"""The records every executor shares: its settings, one invocation, and its outcome."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from aspen_hooks import limits
from aspen_hooks.executors.allowlist import AllowList

__all__ = [
    "ExecutorSettings",
    "Invocation",
    "Outcome",
    "compact_json",
    "failed",
    "jsonable",
    "one_line",
]


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """How this node runs handlers (from its ``[hooks]`` config, built by the plugin)."""

    #: Programs a shell command may start (see :mod:`aspen_hooks.executors.allowlist`:
    #: names resolved through ``PATH``, or paths; compared by real path); empty = any.
    shell_allow: tuple[str, ...] = ()
    #: Variables of the node's environment passed to shell handlers (nothing else is).
    env_allow: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    #: Bytes of stdout and of stderr kept per run (each).
    max_output_bytes: int = limits.HOOKS_MAX_OUTPUT_BYTES
    #: Seconds between SIGTERM and SIGKILL when a shell handler is stopped.
    kill_grace_seconds: float = limits.HOOKS_KILL_GRACE_SECONDS
    #: The node's in-process ``call(method, params)`` (``job`` handlers submit through it).
    call: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None
    #: The threads synchronous python handlers may use (apart from the node's own pool).
    python_threads: ThreadBudget = field(default_factory=lambda: ThreadBudget())
    #: The ``PATH`` shell handlers run with: the node's when ``PATH`` is in ``env_allow``,
    #: else ``os.defpath``. Fixed when the settings are made, like the allow-list.
    shell_path: str = field(init=False)
    #: ``shell_allow`` resolved to real paths when the settings are made (node start-up).
    allow_list: AllowList = field(init=False)

    def __post_init__(self) -> None:
        """Resolve ``PATH`` and the allow-list now (the node's configuration time)."""
        path = os.environ.get("PATH", os.defpath) if "PATH" in self.env_allow else os.defpath
        object.__setattr__(self, "shell_path", path)
        object.__setattr__(self, "allow_list", AllowList.resolve(self.shell_allow, path))


class ThreadBudget:
    """A capacity limiter made on first use (anyio limiters need a running event loop), so
    that blocked synchronous handlers cannot take the threads the node itself needs."""

    def __init__(self, size: int = limits.HOOKS_MAX_PYTHON_THREADS) -> None:
        self.size = size
        self._limiter: anyio.CapacityLimiter | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter (created in the calling event loop on first use)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.size)
        return self._limiter


@dataclass(frozen=True, slots=True)
class Invocation:
    """One run of one handler for one event."""

    #: The handler's name.
    handler: str
    #: The JSON-able event: has ``name``; kv events have ``key`` (str) and ``revision`` (int).
    event: dict[str, Any]
    #: Stable across retries and failovers: a handler de-duplicates its side effects by it.
    idempotency_key: str
    #: 1 for the first try.
    attempt: int
    #: Seconds the run may take.
    timeout: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run did. Executors never raise for a handler's failure: ``ok`` is False."""

    ok: bool
    #: Seconds the run took.
    duration: float
    #: One-line reason when not ok ("exit status 3", "timed out after 2.0s (killed)").
    error: str = ""
    #: The shell's exit status (negative: killed by that signal).
    exit_code: int | None = None
    #: Captured output (bounded, decoded with ``errors="replace"``); for a python handler
    #: that raised, ``stderr`` holds the traceback.
    stdout: str = ""
    stderr: str = ""
    #: python: the function's return value; forward: the remote ``hooks.trigger`` answer.
    output: Any = None

    def to_json(self) -> dict[str, Any]:
        """The JSON (and msgpack) form stored in results, the DLQ and RPC answers."""
        return {
            "ok": self.ok,
            "duration": self.duration,
            "error": self.error,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "output": self.output,
        }


def one_line(text: str, limit: int = limits.HOOKS_MAX_ERROR_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def failed(error: str, **fields: Any) -> Outcome:
    """A failed outcome (its duration is filled in by :func:`aspen_hooks.executors.execute`)."""
    return Outcome(ok=False, duration=0.0, error=one_line(error), **fields)


def _json_default(value: Any) -> Any:
    """Encode what JSON lacks: bytes as text, sets and tuples as lists, the rest as repr."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def compact_json(value: Any) -> str:
    """``value`` as compact ASCII JSON (bytes decoded as UTF-8, other odd values as repr)."""
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def jsonable(value: Any) -> Any:
    """``value`` if JSON can carry it as is, else its JSON-encoded-then-decoded form."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        try:
            return json.loads(compact_json(value))
        except ValueError:  # NaN / infinity
            return repr(value)
    return value
