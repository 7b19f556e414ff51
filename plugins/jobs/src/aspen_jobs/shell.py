"""The ``shell`` job type, hardened: what a worker lets a submitted command do.

* **Allow-list**: the command's program must resolve (through the run's ``PATH``, by real
  path) to one the worker allows, and the command may not chain or substitute commands
  (``;``, ``&&``, ``|``, ``$( )``…): aspen-hooks' :mod:`~aspen_hooks.executors.allowlist`.
  A refused command fails its job at once (no retry) with the reason, and is audited.
* **Clean environment**: only the allow-listed variables of the worker's environment,
  ``PATH``, and ``ASPEN_JOB_ID`` / ``ASPEN_JOB_QUEUE`` / ``ASPEN_JOB_ATTEMPT`` /
  ``ASPEN_JOB_PAYLOAD`` (the payload as JSON).
* **Working directory**: the worker's ``workdir``, or ``payload["cwd"]`` if it resolves
  inside it (else refused).
* **rlimits**: CPU seconds, address space and open files, set in the child before it
  runs ``/bin/sh -c COMMAND`` (a tiny ``python -I -S`` trampoline, as asyncio offers no
  ``preexec_fn``).
* **Process group**: the command leads a new session; at its timeout or on cancellation
  the whole group gets SIGTERM, then SIGKILL after the grace (aspen-hooks' ``end_group``).
* **Output caps**: stdout and stderr are read to their end but only the first
  ``max_output`` bytes of each are kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from aspen.errors import InvalidArgumentError
from aspen_hooks.executors.allowlist import AllowList, check_command
from aspen_hooks.executors.capture import BoundedCapture
from aspen_hooks.executors.procgroup import end_group
from aspen_jobs import limits
from aspen_jobs.types import JobContext, JobFailed

__all__ = ["DEFAULT_ALLOW", "ShellPolicy", "run_shell"]

#: Programs a worker allows when not told (``--allow``): printing and waiting only.
DEFAULT_ALLOW = ("echo", "printf", "true", "false", "sleep", "date", "cat", "ls", "wc")
#: The variables of the worker's environment a shell job sees unless told.
DEFAULT_ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_SHELL = "/bin/sh"
#: Sets the rlimits given as arguments, changes directory, then becomes ``argv[5:]``.
_TRAMPOLINE = (
    "import os,resource as r,sys\n"
    "a=sys.argv\n"
    "for k,v in ((r.RLIMIT_CPU,a[1]),(r.RLIMIT_AS,a[2]),(r.RLIMIT_NOFILE,a[3])):\n"
    " v=int(v)\n"
    " if v>0:\n"
    "  h=r.getrlimit(k)[1]\n"
    "  r.setrlimit(k,(min(v,h) if h>=0 else v,min(v,h) if h>=0 else v))\n"
    "os.chdir(a[4])\n"
    "os.execv(a[5],a[5:])\n"
)


@dataclass(frozen=True)
class ShellPolicy:
    """What a worker lets shell jobs do (from ``aspen jobs worker`` options)."""

    #: Programs allowed (names through ``PATH`` or paths); ``("*",)``: any.
    allow: tuple[str, ...] = DEFAULT_ALLOW
    #: Variables of the worker's environment passed on.
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    #: The directory jobs run in (and the only tree ``payload["cwd"]`` may name).
    workdir: str = field(default_factory=os.getcwd)
    cpu_seconds: int = limits.JOBS_RLIMIT_CPU_SECONDS
    memory_bytes: int = limits.JOBS_RLIMIT_AS_BYTES
    max_files: int = limits.JOBS_RLIMIT_NOFILE
    grace: float = limits.JOBS_KILL_GRACE_SECONDS
    max_output: int = limits.JOBS_MAX_OUTPUT_BYTES

    @property
    def path(self) -> str:
        """The ``PATH`` jobs run with."""
        return os.environ.get("PATH", os.defpath) if "PATH" in self.env_allow else os.defpath

    def allow_list(self) -> AllowList | None:
        """The resolved allow-list (None: any program)."""
        return None if "*" in self.allow else AllowList.resolve(self.allow, self.path)

    def check(self, command: str) -> None:
        """Refuse (``InvalidArgumentError``) a command this policy does not allow."""
        allowed = self.allow_list()
        if allowed is not None:
            check_command(command, allowed, self.path)

    def directory(self, cwd: Any) -> str:
        """The directory a job runs in: ``workdir``, or ``cwd`` if it lies inside it."""
        root = os.path.realpath(self.workdir)
        if cwd is None:
            return root
        if not isinstance(cwd, str):
            raise InvalidArgumentError("'cwd' must be a path", field="cwd")
        target = os.path.realpath(os.path.join(root, cwd))
        if os.path.commonpath([root, target]) != root or not os.path.isdir(target):
            raise InvalidArgumentError(
                f"working directory {cwd!r} is not a directory inside this worker's workdir {root}",
                field="cwd",
            )
        return target


def _env(job: dict[str, Any], policy: ShellPolicy) -> dict[str, str]:
    env = {name: os.environ[name] for name in policy.env_allow if name in os.environ}
    env["PATH"] = policy.path
    env["ASPEN_JOB_ID"] = job["id"]
    env["ASPEN_JOB_QUEUE"] = job["queue"]
    env["ASPEN_JOB_ATTEMPT"] = str(job["attempt_count"])
    env["ASPEN_JOB_PAYLOAD"] = json.dumps(job.get("payload"), default=repr)
    return env


async def run_shell(ctx: JobContext) -> dict[str, Any]:
    """Run a shell job under ``ctx.policy``; its outputs. Raises :class:`JobFailed` for a
    refused command, a non-zero exit or a timeout."""
    policy: ShellPolicy = ctx.policy or ShellPolicy()
    job = ctx.job
    payload = job.get("payload") or {}
    command = payload.get("command", "")
    ctx.result["command"] = command
    try:
        if not isinstance(command, str) or not command:
            raise InvalidArgumentError("a shell job needs a 'command'", field="command")
        policy.check(command)
        cwd = policy.directory(payload.get("cwd"))
    except InvalidArgumentError as exc:
        raise JobFailed(f"refused: {exc.message}", permanent=True, command=command) from None
    argv = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _TRAMPOLINE,
        str(policy.cpu_seconds),
        str(policy.memory_bytes),
        str(policy.max_files),
        cwd,
        _SHELL,
        "-c",
        command,
    ]
    with anyio.CancelScope(shield=True):  # a cancelled spawn must not leak its process
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(job, policy),
            start_new_session=True,
        )
    out, err = BoundedCapture(policy.max_output), BoundedCapture(policy.max_output)
    started = time.monotonic()
    killed = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.drain, process.stdout)
            tg.start_soon(err.drain, process.stderr)
            with anyio.move_on_after(float(job["timeout"])) as deadline:
                await process.wait()
            killed = await end_group(process, policy.grace)
            with anyio.move_on_after(1.0):
                await out.done.wait()
                await err.done.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await end_group(process, policy.grace)
            await process.aclose()
    code = process.returncode
    stdout, stderr = out.text(), err.text()
    result: dict[str, Any] = {
        "exit_code": code,
        "stdout": stdout,
        "stderr": stderr,
        "command": command,
    }
    if deadline.cancelled_caught:
        how = f"SIGKILL after {policy.grace}s grace" if killed else "SIGTERM"
        raise JobFailed(
            f"timed out after {job['timeout']}s ({how})",
            exit_code=code,
            stdout=stdout,
            stderr=stderr,
            command=command,
        )
    if code != 0:
        raise JobFailed(
            f"exit status {code}" if code and code > 0 else f"killed by signal {-(code or 0)}",
            exit_code=code,
            stdout=stdout,
            stderr=stderr,
            command=command,
        )
    result["duration"] = time.monotonic() - started
    return result
