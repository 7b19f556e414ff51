"""Job types: entry point group ``aspen.jobs`` maps a type name to a callable
``fn(job: JobContext) -> output`` (sync functions run in a thread; async ones on the
worker's loop). ``shell`` and ``noop`` ship with aspen-jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

__all__ = ["JobContext", "JobFailed", "load_types", "noop"]


class JobFailed(Exception):
    """Raised by a job type for a failed run: ``exit_code``, outputs, and ``permanent``
    (do not retry) are reported with it."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        stdout: str = "",
        stderr: str = "",
        permanent: bool = False,
        command: str = "",
    ) -> None:
        super().__init__(message)
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr
        self.permanent, self.command = permanent, command


@dataclass
class JobContext:
    """What a job type's callable gets: the job and the worker's settings."""

    #: The job record (``id``, ``queue``, ``payload``, ``timeout``, ``attempt_count``…).
    job: dict[str, Any]
    #: The worker's shell policy (:class:`aspen_jobs.shell.ShellPolicy`), for ``shell``.
    policy: Any = None
    #: ``await report(progress)`` records progress (any small msgpack value).
    report: Callable[[Any], Any] | None = None
    #: Extra results a type may fill in (``exit_code``, ``stdout``, ``stderr``, ``command``).
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def payload(self) -> Any:
        """The job's payload."""
        return self.job.get("payload")


def noop(job: JobContext) -> None:
    """Do nothing (benchmarks, tests)."""
    return None


def load_types() -> dict[str, Callable[[JobContext], Any]]:
    """Every installed job type by name (a type that fails to import is skipped)."""
    found: dict[str, Callable[[JobContext], Any]] = {}
    for ep in entry_points(group="aspen.jobs"):
        try:
            found[ep.name] = ep.load()
        except Exception:  # a broken type must not stop the worker; jobs of it fail
            continue
    return found
