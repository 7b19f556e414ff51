"""``aspen jobs …`` and ``aspen schedule …`` (``--json`` throughout)."""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import click

from aspen.cli import emit, json_option, pass_cli, plain, show_result
from aspen.cli.context import CliContext, resolve_token
from aspen.cli.output import echo_json
from aspen.errors import AspenError
from aspen_coord.errors import typed
from aspen_jobs import limits
from aspen_jobs.shell import DEFAULT_ALLOW, DEFAULT_ENV_ALLOW, ShellPolicy

__all__ = ["jobs_cli", "schedule_group"]


def _call(cli: CliContext, method: str, params: dict[str, Any]) -> Any:
    try:
        return cli.client().call(f"jobs.{method}", params)
    except AspenError as exc:
        raise typed(exc) from None


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None


def _job_options(func: Any) -> Any:
    """The options describing a job (``jobs submit``, ``schedule add``)."""
    options = [
        click.option("--queue", "-q", required=True, help="The queue."),
        click.option("--shell", "command", help="A shell command (the 'shell' job type)."),
        click.option("--type", "type_", help="A job type (entry point group aspen.jobs)."),
        click.option("--payload", help="The job's payload, as JSON."),
        click.option("--priority", type=int, help=f"0..{limits.JOBS_MAX_PRIORITY}, higher first."),
        click.option("--timeout", type=float, help="Seconds one attempt may run."),
        click.option("--retries", type=int, help="Attempts after the first failure."),
        click.option("--backoff", type=click.Choice(["fixed", "exponential"])),
        click.option("--backoff-seconds", type=float, help="Backoff base, in seconds."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _job_params(options: dict[str, Any]) -> dict[str, Any]:
    params = dict(options)
    params["type"] = params.pop("type_", None)
    params["payload"] = _payload(params.get("payload"))
    return {k: v for k, v in params.items() if v is not None and v != ()}


@click.group("jobs")
def jobs_cli() -> None:
    """Job queues: submit, inspect, cancel and retry jobs; run workers; schedules."""


@jobs_cli.command("submit")
@_job_options
@click.option("--after", multiple=True, help="Run after this job succeeded (repeatable).")
@click.option("--idempotency-key", help="The same key in a queue gives the same job.")
@click.option("--delay", type=float, help="Not before this many seconds from now.")
@click.option("--not-before", type=float, help="Not before this time (epoch seconds).")
@click.option("--id", "job_id", help="Choose the job's id.")
@json_option
@pass_cli
def submit_command(
    cli: CliContext, after: tuple[str, ...], job_id: str | None, **options: Any
) -> None:
    """Submit a job; prints its id (``--json``: ``{"id", "existing"}``)."""
    params = _job_params(options)
    if after:
        params["after"] = list(after)
    if job_id:
        params["id"] = job_id
    show_result(cli, _call(cli, "submit", params), "id")


@jobs_cli.command("get")
@click.argument("job_id")
@json_option
@pass_cli
def get_command(cli: CliContext, job_id: str) -> None:
    """A job: state, attempts (exit codes, durations, outputs), progress."""
    emit(cli, plain(_call(cli, "get", {"id": job_id})), _job_lines)


def _job_lines(job: dict[str, Any]) -> list[str]:
    """A job's fields, then one line per attempt."""
    keys = ("id", "queue", "type", "state", "priority", "retries", "attempt_count", "error")
    return [f"{key}: {job.get(key)}" for key in keys] + [
        f"attempt {attempt.get('n')}: {attempt.get('state')} exit={attempt.get('exit_code')} "
        f"duration={attempt.get('duration')} worker={attempt.get('worker')}"
        for attempt in job["attempts"]
    ]


@jobs_cli.command("result")
@click.argument("job_id")
@json_option
@pass_cli
def result_command(cli: CliContext, job_id: str) -> None:
    """Print the job's (latest attempt's) stdout (``--json``: all outputs)."""
    result = plain(_call(cli, "result", {"id": job_id}))
    if cli.json:
        echo_json(result)
    else:
        click.echo(result["stdout"] or "", nl=False)


@jobs_cli.command("list")
@click.option("--queue", "-q")
@click.option("--state")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_cli
def list_command(cli: CliContext, **options: Any) -> None:
    """Jobs, oldest first."""
    got = plain(_call(cli, "list", {k: v for k, v in options.items() if v is not None}))
    emit(
        cli,
        got,
        lambda got: (f"{j['id']}  {j['queue']}  {j['type']}  {j['state']}" for j in got["jobs"]),
    )


def _job_state_command(verb: str, help_text: str) -> None:
    """Add ``jobs VERB JOB_ID``: call ``jobs.VERB`` on one job and print its new state."""

    @jobs_cli.command(verb, help=help_text)
    @click.argument("job_id")
    @json_option
    @pass_cli
    def command(cli: CliContext, job_id: str) -> None:
        show_result(cli, _call(cli, verb, {"id": job_id}), "state")


_job_state_command("cancel", "Cancel a job (a running one's process is stopped).")
_job_state_command("retry", "Queue a failed, dead or cancelled job again.")


@jobs_cli.command("stats")
@click.option("--queue", "-q")
@json_option
@pass_cli
def stats_command(cli: CliContext, queue: str | None) -> None:
    """Jobs per queue and state."""
    got = plain(_call(cli, "stats", {"queue": queue} if queue else {}))
    emit(
        cli,
        got,
        lambda got: (
            f"{name}: " + " ".join(f"{s}={n}" for s, n in counts.items())
            for name, counts in sorted(got["queues"].items())
        ),
    )


@jobs_cli.command("audit")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_cli
def audit_command(cli: CliContext, limit: int) -> None:
    """The newest audit records of job runs (who, what, exit, duration)."""
    got = plain(_call(cli, "audit", {"limit": limit}))
    emit(
        cli,
        got,
        lambda got: (
            f"{r['time']:.3f} {r['job']} {r['queue']} attempt={r['attempt']} who={r['who']} "
            f"exit={r['exit_code']} ok={r['ok']} what={r['what']!r} {r['error']}"
            for r in got["records"]
        ),
    )


@jobs_cli.command("worker")
@click.option("--queues", required=True, help="Comma-separated queues to serve.")
@click.option("--concurrency", type=int, default=1, show_default=True)
@click.option("--name", help="The worker's name in attempts and audit records.")
@click.option(
    "--ttl",
    type=int,
    default=limits.JOBS_DEFAULT_WORKER_TTL_SECONDS,
    show_default=True,
    help="Seconds of silence after which this worker's jobs are retried elsewhere.",
)
@click.option(
    "--drain",
    type=float,
    default=10.0,
    show_default=True,
    help="On SIGTERM, seconds running jobs get to finish before they are handed back.",
)
@click.option(
    "--allow",
    default=",".join(DEFAULT_ALLOW),
    show_default=True,
    envvar="ASPEN_JOBS_SHELL_ALLOW",
    help="Programs shell jobs may run ('*': any).",
)
@click.option(
    "--env-allow",
    default=",".join(DEFAULT_ENV_ALLOW),
    show_default=True,
    help="Environment variables passed to shell jobs.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory shell jobs run in (default: the current one).",
)
@click.option("--cpu-seconds", type=int, default=limits.JOBS_RLIMIT_CPU_SECONDS, show_default=True)
@click.option("--memory-bytes", type=int, default=limits.JOBS_RLIMIT_AS_BYTES, show_default=True)
@click.option("--max-files", type=int, default=limits.JOBS_RLIMIT_NOFILE, show_default=True)
@click.option(
    "--grace",
    type=float,
    default=limits.JOBS_KILL_GRACE_SECONDS,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when a job is stopped.",
)
@pass_cli
def worker_command(
    cli: CliContext,
    queues: str,
    concurrency: int,
    name: str | None,
    ttl: int,
    drain: float,
    allow: str,
    env_allow: str,
    workdir: str | None,
    cpu_seconds: int,
    memory_bytes: int,
    max_files: int,
    grace: float,
) -> None:
    """Run jobs of QUEUES until SIGTERM (running jobs finish or are handed back)."""
    import logging

    from aspen_jobs.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token = resolve_token(cli.token_file, os.environ)
    if token is None:
        raise click.UsageError("no token: set ASPEN_TOKEN or --token-file")
    if not 1 <= concurrency <= limits.JOBS_MAX_CONCURRENCY:
        raise click.BadParameter(f"1..{limits.JOBS_MAX_CONCURRENCY}", param_hint="--concurrency")
    policy = ShellPolicy(
        allow=tuple(_csv(allow)),
        env_allow=tuple(_csv(env_allow)),
        workdir=workdir or os.getcwd(),
        cpu_seconds=cpu_seconds,
        memory_bytes=memory_bytes,
        max_files=max_files,
        grace=grace,
    )
    worker = Worker(
        cli.endpoint,
        token,
        _csv(queues),
        concurrency=concurrency,
        policy=policy,
        name=name,
        ttl=ttl,
        drain=drain,
    )
    anyio.run(worker.run_until_signal)


def _schedule_line(s: dict[str, Any]) -> str:
    """One schedule: its name, when it fires, whether paused, times fired, its queue."""
    when = s["cron"] or f"every {s['interval']}s"
    state = "paused" if s["paused"] else "active"
    return f"{s['name']}  {when} {s['tz']}  {state}  fired={s['fired']}  queue={s['job']['queue']}"


def schedule_group(name: str) -> click.Group:
    """The schedule commands as a group called ``name``."""

    @click.group(name)
    def group() -> None:
        """Schedules: cron expressions or intervals submitting jobs, once per tick."""

    @group.command("add")
    @click.argument("schedule")
    @click.option("--cron", help="A cron expression (5 fields; croniter's syntax).")
    @click.option("--every", "interval", type=float, help="Or an interval, in seconds.")
    @click.option("--tz", default="UTC", show_default=True, help="Time zone of the expression.")
    @click.option("--replace", is_flag=True, help="Replace a schedule of that name.")
    @_job_options
    @json_option
    @pass_cli
    def add(cli: CliContext, schedule: str, replace: bool, **options: Any) -> None:
        """Add schedule SCHEDULE submitting a job to --queue at every tick."""
        params = {"name": schedule, "replace": replace, **_job_params(options)}
        show_result(cli, _call(cli, "schedule.add", params), "name")

    @group.command("list")
    @json_option
    @pass_cli
    def list_(cli: CliContext) -> None:
        """Every schedule."""
        schedules = plain(_call(cli, "schedule.list", {}))["schedules"]
        emit(cli, schedules, lambda schedules: map(_schedule_line, schedules))

    for verb in ("remove", "pause", "resume", "get"):

        def make(verb: str) -> None:
            @group.command(verb)
            @click.argument("schedule")
            @json_option
            @pass_cli
            def command(cli: CliContext, schedule: str) -> None:
                show_result(cli, _call(cli, f"schedule.{verb}", {"name": schedule}))

            command.help = f"{verb.capitalize()} schedule SCHEDULE."

        make(verb)
    return group


jobs_cli.add_command(schedule_group("schedule"))
