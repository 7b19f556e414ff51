"""``aspen hooks …``: manage handlers, trigger events, read metrics and dead letters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from aspen.cli import emit, emit_table, json_option, pass_cli
from aspen.cli.context import CliContext
from aspen.cli.output import echo_json, format_table
from aspen_hooks import limits

__all__ = ["hooks_cli"]


@click.group("hooks")
def hooks_cli() -> None:
    """Durable event-driven automation: handlers on kv / raft / cluster events, run once
    per cluster."""


def _call(cli: CliContext, method: str, params: dict[str, Any]) -> Any:
    return cli.client().call(method, params)


def _pages(
    cli: CliContext,
    method: str,
    params: dict[str, Any],
    field: str,
    name: str,
    most: int | None = None,
) -> list[dict[str, Any]]:
    """The items ``field`` of a paginated listing ``method`` (at most ``most``), asked for
    page by page, each after the ``name`` of the last item of the one before."""
    items: list[dict[str, Any]] = []
    after = ""
    while most is None or len(items) < most:
        page_params = {**params, "after": after}
        if most is not None:
            page_params["limit"] = most - len(items)
        page = _call(cli, method, page_params)
        items += page[field]
        if not page.get("more") or not page[field]:
            break
        after = page[field][-1][name]
    return items


def _target(
    shell: str | None,
    python: str | None,
    forward: str | None,
    forward_token: str | None,
    forward_token_file: Path | None,
    job: str | None = None,
    job_type: str | None = None,
) -> tuple[str, dict[str, Any]]:
    if job:
        if python or forward or (shell and job_type):
            raise click.UsageError("--job takes --shell CMD or --job-type TYPE, nothing else")
        target = {"queue": job}
        if shell:
            target["command"] = shell
        elif job_type:
            target["type"] = job_type
        return "job", target
    given = [k for k, v in (("shell", shell), ("python", python), ("forward", forward)) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --shell, --python, --forward, --job")
    if shell:
        return "shell", {"command": shell}
    if python:
        return "python", {"entrypoint": python}
    token = forward_token
    if forward_token_file is not None:
        token = forward_token_file.read_text().strip()
    if not token:
        raise click.UsageError("--forward needs --forward-token or --forward-token-file")
    return "forward", {"endpoint": forward, "token": token}


@hooks_cli.command("add")
@click.argument("name")
@click.option("--on", "on", required=True, help="Pattern, e.g. kv.put:/app/config/*, cluster.*")
@click.option("--shell", help="Run this command with sh -c.")
@click.option("--python", help="Call this entry point (module:function).")
@click.option("--forward", help="Send events to another cluster's hooks.trigger (host:port).")
@click.option("--job", help="Submit each event as an aspen-jobs job to this queue.")
@click.option("--job-type", help="With --job: the job type (default 'event'; --shell: shell).")
@click.option("--forward-token", envvar="ASPEN_HOOKS_FORWARD_TOKEN", help="Its client token.")
@click.option(
    "--forward-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the other cluster's token.",
)
@click.option(
    "--timeout",
    type=float,
    default=limits.HOOKS_DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds per run.",
)
@click.option(
    "--retries",
    type=int,
    default=limits.HOOKS_DEFAULT_RETRIES,
    show_default=True,
    help="Retries (exponential backoff) before an event is dead-lettered.",
)
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.option("--replace", is_flag=True, help="Replace a handler of the same name.")
@json_option
@pass_cli
def add(
    cli: CliContext,
    name: str,
    on: str,
    shell: str | None,
    python: str | None,
    forward: str | None,
    forward_token: str | None,
    forward_token_file: Path | None,
    job: str | None,
    job_type: str | None,
    timeout: float,
    retries: int,
    disabled: bool,
    replace: bool,
) -> None:
    """Add handler NAME."""
    kind, target = _target(shell, python, forward, forward_token, forward_token_file, job, job_type)
    params = {
        "name": name,
        "on": on,
        "kind": kind,
        "target": target,
        "timeout": timeout,
        "retries": retries,
        "enabled": not disabled,
        "replace": replace,
    }
    result = _call(cli, "hooks.add", params)
    emit(cli, result["handler"], f"handler {name} added (revision {result['revision']})")


def _simple(verb: str, help_text: str, done: str) -> None:
    @hooks_cli.command(verb, help=help_text)
    @click.argument("name")
    @json_option
    @pass_cli
    def command(cli: CliContext, name: str) -> None:
        emit(cli, _call(cli, f"hooks.{verb}", {"name": name}), f"handler {name} {done}")


_simple("remove", "Remove handler NAME (with its cursor, metrics and dead letters).", "removed")
_simple("enable", "Enable handler NAME (it resumes from its cursor).", "enabled")
_simple("disable", "Disable handler NAME (its cursor is kept).", "disabled")


@hooks_cli.command("list")
@json_option
@pass_cli
def list_(cli: CliContext) -> None:
    """List handlers."""
    emit_table(
        cli,
        _pages(cli, "hooks.list", {}, "handlers", "name"),
        ("NAME", "ON", "KIND", "ENABLED", "TARGET"),
        lambda h: (h["name"], h["on"], h["kind"], "yes" if h["enabled"] else "no", _describe(h)),
    )


def _describe(handler: dict[str, Any]) -> str:
    target = handler["target"]
    if handler["kind"] == "job":
        return (
            f"job queue {target['queue']}: {target.get('command') or target.get('type', 'event')}"
        )
    return str(target.get("command") or target.get("entrypoint") or target.get("endpoint"))


@hooks_cli.command("show")
@click.argument("name")
@json_option
@pass_cli
def show(cli: CliContext, name: str) -> None:
    """Show handler NAME and its metrics."""
    emit(
        cli,
        _call(cli, "hooks.show", {"name": name}),
        lambda result: (
            f"{key:>14}: {value if not isinstance(value, dict) else json.dumps(value)}"
            for key, value in {**result["handler"], **result["metrics"]}.items()
        ),
    )


@hooks_cli.command("metrics")
@click.argument("name", required=False)
@json_option
@pass_cli
def metrics(cli: CliContext, name: str | None) -> None:
    """Successes, failures, retries, dead letters, in-flight, p50/p99, lag."""
    params = {"name": name} if name else {}
    result = _call(cli, "hooks.metrics", params)
    if cli.json:
        echo_json(result)
        return
    rows_in = [result] if name else result["handlers"]
    rows = [
        (
            m["name"],
            m["succeeded"],
            m["failed"],
            m["retries"],
            m["dead_lettered"],
            m["in_flight"],
            _ms(m["p50_seconds"]),
            _ms(m["p99_seconds"]),
            m["lag"],
            m["lagged"] or "-",
        )
        for m in rows_in
    ]
    headers = ("NAME", "OK", "FAILED", "RETRIES", "DLQ", "IN-FLIGHT", "P50", "P99", "LAG", "LAGGED")
    click.echo(format_table(headers, rows))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


@hooks_cli.command("trigger")
@click.argument("event")
@click.option("--payload", default="{}", help="Event fields as a JSON object.")
@json_option
@pass_cli
def trigger(cli: CliContext, event: str, payload: str) -> None:
    """Dispatch EVENT to every matching handler now and show each result."""
    try:
        fields = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    result = _call(cli, "hooks.trigger", {"event": event, "payload": fields})
    if cli.json:
        echo_json(result)
        return
    if not result["results"]:
        click.echo(f"no enabled handler matches {event}")
    for r in result["results"]:
        status = "ok" if r["ok"] else f"failed: {r['error']}"
        click.echo(f"{r['handler']}: {status} ({r['duration'] * 1000:.1f} ms)")
    if any(not r["ok"] for r in result["results"]):
        raise SystemExit(1)


@hooks_cli.command("dlq")
@click.argument("name")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_cli
def dlq(cli: CliContext, name: str, limit: int) -> None:
    """Show handler NAME's dead-lettered events (the oldest LIMIT)."""
    emit_table(
        cli,
        _pages(cli, "hooks.dlq", {"name": name}, "entries", "id", most=limit),
        ("ID", "EVENT", "KEY", "ATTEMPTS", "ERROR"),
        lambda e: (
            e["id"],
            e["event"].get("name"),
            e["event"].get("key", ""),
            e["attempts"],
            e["error"],
        ),
    )


@hooks_cli.command("redrive")
@click.argument("name")
@click.option("--id", "ids", multiple=True, help="Only these entries (default: all).")
@json_option
@pass_cli
def redrive(cli: CliContext, name: str, ids: tuple[str, ...]) -> None:
    """Run handler NAME again for its dead-lettered events; successes leave the list."""
    result = _call(cli, "hooks.redrive", {"name": name, "ids": list(ids)})
    done = sum(1 for r in result["results"] if r["ok"])
    emit(cli, result, f"redriven {len(result['results'])}: {done} succeeded")


@hooks_cli.command("reset")
@click.argument("name")
@click.option("--revision", type=int, help="New cursor (default: the current revision).")
@json_option
@pass_cli
def reset(cli: CliContext, name: str, revision: int | None) -> None:
    """Move handler NAME's cursor (skipping events) and clear a 'lagged' stop."""
    params: dict[str, Any] = {"name": name}
    if revision is not None:
        params["revision"] = revision
    result = _call(cli, "hooks.reset", params)
    emit(cli, result, f"handler {name} resumes after revision {result['cursor']}")


@hooks_cli.command("status")
@json_option
@pass_cli
def status(cli: CliContext) -> None:
    """Which node runs the handlers."""
    result = _call(cli, "hooks.status", {})
    if cli.json:
        echo_json(result)
        return
    runner = result["runner"]
    if runner is None:
        click.echo("no runner (no leader, or one is being elected)")
    else:
        click.echo(f"runner: {runner['node_id']} at {runner['endpoint']} (token {runner['token']})")
