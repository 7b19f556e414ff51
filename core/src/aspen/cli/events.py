"""``aspen events …``: tail, publish, status and retention of the event journal."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.output import echo_json, emit

__all__ = ["events"]


@click.group()
def events() -> None:
    """The event journal: durable events plugins publish (forge.push…), read from a position."""


def _line(event: dict[str, Any]) -> str:
    """``<position> <name> <subject> <payload as JSON>``."""
    payload = json.dumps(event["payload"], separators=(",", ":"), default=_text)
    return f"{event['position']} {event['name']} {event['subject']} {payload}"


def _text(value: Any) -> Any:
    """JSON for what JSON has no form of (bytes as UTF-8 text with escapes)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return repr(value)


@events.command()
@click.option("--from", "start", type=click.IntRange(min=0), help="First position (0: oldest).")
@click.option("--after-revision", type=click.IntRange(min=0), help="Start after this revision.")
@click.option("--match", help="NAME[:SUBJECT] globs, e.g. 'forge.push:acme/*'.")
@click.option("--max", "most", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--no-follow", is_flag=True, help="Print what is there now, then exit.")
@json_option
@pass_cli
def tail(
    cli: CliContext,
    start: int | None,
    after_revision: int | None,
    match: str | None,
    most: int | None,
    no_follow: bool,
) -> None:
    """Print events as they are applied, one per line (JSON lines with --json); Ctrl-C ends.

    Without --from, only events from now on (with --no-follow: every event kept). A position
    older than the journal's retention is an error naming the oldest position kept.
    """
    client = cli.client()
    printed = 0
    if no_follow:
        position = start or 0
        while True:
            page = client.events.read(position, after_revision=after_revision, match=match)
            for event in page["events"]:
                _print(cli, event)
                printed += 1
                if most is not None and printed >= most:
                    return
            if not page["more"]:
                return
            position, after_revision = page["next"], None
    stream = client.events.tail(start, after_revision=after_revision, match=match)
    try:
        for event in stream:
            _print(cli, event)
            printed += 1
            if most is not None and printed >= most:
                break
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()


def _print(cli: CliContext, event: dict[str, Any]) -> None:
    if cli.json:
        click.echo(json.dumps(event, separators=(",", ":"), default=_text))
    else:
        click.echo(_line(event))
    sys.stdout.flush()


@events.command()
@click.argument("name")
@click.argument("subject", default="")
@click.option("--payload", default="null", help="The payload as JSON (default null).")
@json_option
@pass_cli
def publish(cli: CliContext, name: str, subject: str, payload: str) -> None:
    """Append an event NAME (e.g. deploy.requested) on SUBJECT; prints its position."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from exc
    result = cli.client().events.publish(name, subject, data)
    emit(cli, result, f"published at position {result['position']} (revision {result['revision']})")


@events.command()
@json_option
@pass_cli
def status(cli: CliContext) -> None:
    """Show the journal's extent (first and next positions, count, bytes) and retention."""
    emit(cli, cli.client().events.status(), _status_lines)


def _status_lines(info: dict[str, Any]) -> tuple[str, str]:
    """The journal's extent, then its retention."""
    r = info["retention"]
    return (
        f"positions {info['first']}..{info['next'] - 1}: {info['count']} events, "
        f"{info['bytes']} bytes",
        f"retention: {r['max_events']} events, {r['max_bytes']} bytes, "
        f"age {r['max_age'] or 'unbounded'}",
    )


@events.command()
@click.option("--max-events", type=click.IntRange(min=1), help="Most events kept.")
@click.option("--max-bytes", type=click.IntRange(min=1), help="Most bytes of events kept.")
@click.option("--max-age", type=click.FloatRange(min=0), help="Seconds kept (0: no bound).")
@json_option
@pass_cli
def retention(
    cli: CliContext, max_events: int | None, max_bytes: int | None, max_age: float | None
) -> None:
    """Change the cluster's journal retention (the bounds given; needs cluster:admin)."""
    result = cli.client().events.set_retention(
        max_events=max_events, max_bytes=max_bytes, max_age=max_age
    )
    if cli.json:
        echo_json(result)
    else:
        click.echo(
            f"retention: {result['max_events']} events, {result['max_bytes']} bytes, "
            f"age {result['max_age'] or 'unbounded'}"
        )
