"""The ``shell`` executor: ``sh -c COMMAND`` in its own process group, clean environment.

The command runs as the leader of a new session with stdin on ``/dev/null``, and sees only
the allowed variables of the node's environment plus ``ASPEN_HOOK_*``. stdout and stderr
are read concurrently and kept up to a bound. When the run times out (or is cancelled) its
group gets SIGTERM, then SIGKILL after the grace period; processes the shell left behind
in its group are ended the same way when it exits, so a handler's processes never outlive
its run (except one that left the group on purpose with ``setsid``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import anyio

from aspen_hooks import limits
from aspen_hooks.executors.allowlist import check_command
from aspen_hooks.executors.base import (
    ExecutorSettings,
    Invocation,
    Outcome,
    compact_json,
    failed,
)
from aspen_hooks.executors.capture import BoundedCapture
from aspen_hooks.executors.fields import check_fields, require_text
from aspen_hooks.executors.procgroup import end_group
from aspen_hooks.payload import event_key, percent_encode

__all__ = ["build_env", "execute", "validate"]

_SHELL = "/bin/sh"


def validate(target: Any, settings: ExecutorSettings) -> dict[str, Any]:
    """Check a shell target ``{"command": str}`` against the bounds and the allow-list."""
    target = check_fields("shell", target, ("command",))
    command = require_text(
        "shell",
        target,
        "command",
        limits.HOOKS_MAX_COMMAND_CHARS,
        limit_name="HOOKS_MAX_COMMAND_CHARS",
    )
    if settings.shell_allow:
        check_command(command, settings.allow_list, settings.shell_path)
    return {"command": command}


def _env_text(value: Any) -> str:
    """A str fit for an environment variable (no NUL, encodable)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    text = value if isinstance(value, str) else ""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _event_json(event: dict[str, Any]) -> str:
    """The event as compact JSON, without its ``value`` when it would be too big."""
    text = compact_json(event)
    if len(text) > limits.HOOKS_MAX_EVENT_ENV_BYTES and "value" in event:
        slim = {k: v for k, v in event.items() if k != "value"}
        slim["value_omitted"] = True
        text = compact_json(slim)
    return text


def build_env(invocation: Invocation, settings: ExecutorSettings) -> dict[str, str]:
    """The whole environment of a shell run: allowed node variables, ``PATH`` (the one the
    allow-list was resolved with) and ``ASPEN_HOOK_*``.

    ``ASPEN_HOOK_KEY`` is the key percent-encoded where it is not plain text (see
    :func:`aspen_hooks.payload.percent_encode`), ``ASPEN_HOOK_KEY_HEX`` its bytes in hex;
    both are empty only for events without a key. Journal events (``forge.push``…) also set
    ``ASPEN_HOOK_SUBJECT`` and ``ASPEN_HOOK_POSITION`` (empty for other events).
    """
    env = {name: os.environ[name] for name in settings.env_allow if name in os.environ}
    env["PATH"] = settings.shell_path
    event = invocation.event
    revision = event.get("revision")
    position = event.get("position")  # journal events
    key = event_key(event)
    env.update(
        ASPEN_HOOK_EVENT=_event_json(event),
        ASPEN_HOOK_EVENT_NAME=_env_text(event.get("name")),
        ASPEN_HOOK_KEY="" if key is None else percent_encode(key),
        ASPEN_HOOK_KEY_HEX="" if key is None else key.hex(),
        ASPEN_HOOK_REVISION=str(revision) if type(revision) is int else "",
        ASPEN_HOOK_SUBJECT=_env_text(event.get("subject", "")),
        ASPEN_HOOK_POSITION=str(position) if type(position) is int else "",
        ASPEN_HOOK_IDEMPOTENCY_KEY=_env_text(invocation.idempotency_key),
        ASPEN_HOOK_NAME=_env_text(invocation.handler),
        ASPEN_HOOK_ATTEMPT=str(invocation.attempt),
    )
    return env


def _describe_exit(code: int) -> str:
    """``exit status 3`` or ``killed by signal SIGSEGV``."""
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"killed by signal {name}"


async def execute(
    target: dict[str, Any], invocation: Invocation, settings: ExecutorSettings
) -> Outcome:
    """Run the (validated) command once; see the module docstring."""
    env = build_env(invocation, settings)
    if len(env["ASPEN_HOOK_EVENT"]) > limits.HOOKS_MAX_EVENT_ENV_BYTES:
        return failed(
            f"event of {len(env['ASPEN_HOOK_EVENT'])} bytes as JSON does not fit "
            f"ASPEN_HOOK_EVENT (HOOKS_MAX_EVENT_ENV_BYTES = {limits.HOOKS_MAX_EVENT_ENV_BYTES})"
        )
    try:
        with anyio.CancelScope(shield=True):  # a cancelled spawn must not leak its process
            process = await anyio.open_process(
                [_SHELL, "-c", target["command"]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
    except OSError as exc:
        return failed(f"could not start {_SHELL}: {exc}")
    out = BoundedCapture(settings.max_output_bytes)
    err = BoundedCapture(settings.max_output_bytes)
    grace = settings.kill_grace_seconds
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.drain, process.stdout)
            tg.start_soon(err.drain, process.stderr)
            with anyio.move_on_after(invocation.timeout) as deadline:
                await process.wait()
            killed = await end_group(process, grace)
            with anyio.move_on_after(limits.HOOKS_OUTPUT_DRAIN_SECONDS):
                await out.done.wait()
                await err.done.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await end_group(process, grace)
            await process.aclose()
    code = process.returncode
    fields: dict[str, Any] = {"exit_code": code, "stdout": out.text(), "stderr": err.text()}
    if deadline.cancelled_caught:
        how = f"SIGKILL after {grace!r}s grace" if killed else "SIGTERM"
        return failed(f"timed out after {float(invocation.timeout)!r}s (killed, {how})", **fields)
    if code != 0:
        return failed(_describe_exit(code if code is not None else -1), **fields)
    return Outcome(ok=True, duration=0.0, **fields)
