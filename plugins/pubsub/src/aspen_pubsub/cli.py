"""``aspen pubsub …``: topics, publish, subscribe, consumer groups and stats."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import click

from aspen.cli import json_option, pass_cli
from aspen.cli.context import CliContext

__all__ = ["pubsub_cli"]

_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``30``, ``30s``, ``500ms``, ``2m``, ``1h`` as seconds."""
    if value is None:
        return None
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration like 30s, 500ms or 2m")
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _out(cli: CliContext, value: Any, line: str) -> None:
    click.echo(json.dumps(value, separators=(",", ":")) if cli.json else line)


@click.group("pubsub")
def pubsub_cli() -> None:
    """Durable topics: publish, subscribe, and consumer groups (competing, partitioned)."""


@pubsub_cli.group("topic")
def topic_cli() -> None:
    """Create, delete and list topics."""


@topic_cli.command("create")
@click.argument("name")
@click.option("--partitions", type=int, default=1, show_default=True)
@click.option("--max-messages", type=int, default=0, help="Keep at most this many per partition.")
@click.option(
    "--max-bytes", type=int, default=0, help="Keep at most this many bytes per partition."
)
@click.option("--max-age", callback=_seconds, help="Drop messages older than this (e.g. 1h).")
@click.option("--dedup-window", callback=_seconds, help="Message-id de-duplication window.")
@json_option
@pass_cli
def topic_create(
    cli: CliContext,
    name: str,
    partitions: int,
    max_messages: int,
    max_bytes: int,
    max_age: float | None,
    dedup_window: float | None,
) -> None:
    """Create topic NAME."""
    params: dict[str, Any] = {
        "topic": name,
        "partitions": partitions,
        "max_messages": max_messages,
        "max_bytes": max_bytes,
        "max_age": max_age or 0.0,
    }
    if dedup_window is not None:
        params["dedup_window"] = dedup_window
    made = cli.client().call("pubsub.topic_create", params)
    _out(cli, made, f"created topic {name} ({partitions} partitions)")


@topic_cli.command("delete")
@click.argument("name")
@json_option
@pass_cli
def topic_delete(cli: CliContext, name: str) -> None:
    """Delete topic NAME, its messages and groups."""
    _out(cli, cli.client().call("pubsub.topic_delete", {"topic": name}), f"deleted {name}")


@topic_cli.command("list")
@json_option
@pass_cli
def topic_list(cli: CliContext) -> None:
    """List topics."""
    client, after, found = cli.client(), "", []
    while True:
        page = client.call("pubsub.topics", {"after": after})
        found += page["topics"]
        if not page["more"] or not page["topics"]:
            break
        after = page["topics"][-1]["topic"]
    if cli.json:
        click.echo(json.dumps(found))
        return
    for t in found:
        click.echo(f"{t['topic']}\t{t['partitions']}")


@pubsub_cli.command("publish")
@click.argument("name")
@click.argument("data")
@click.option("--key", help="Messages with the same key go to the same partition.")
@click.option("--header", "headers", multiple=True, help="k=v (repeatable).")
@click.option("--id", "msg_id", help="Message id: a repeat within the dedup window is dropped.")
@json_option
@pass_cli
def publish(
    cli: CliContext,
    name: str,
    data: str,
    key: str | None,
    headers: tuple[str, ...],
    msg_id: str | None,
) -> None:
    """Publish DATA to topic NAME."""
    params: dict[str, Any] = {"topic": name, "data": data.encode()}
    if key is not None:
        params["key"] = key.encode()
    if headers:
        pairs = [h.partition("=") for h in headers]
        if any(not sep for _, sep, _ in pairs):
            raise click.BadParameter("--header takes k=v")
        params["headers"] = {k: v for k, _, v in pairs}
    if msg_id is not None:
        params["id"] = msg_id
    got = cli.client().call("pubsub.publish", params)
    answer = {"partition": got["partition"], "offset": got["offset"]}
    if got.get("duplicate"):
        answer["duplicate"] = True
    _out(cli, answer, f"partition {got['partition']} offset {got['offset']}")


def _line(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": _text(message["data"]),
        "partition": message["partition"],
        "offset": message["offset"],
        "delivery_count": message["delivery_count"],
        "redelivered": message["redelivered"],
        "key": _text(message.get("key")),
        "headers": message.get("headers", {}),
        "published": message["published"],
    }


def _show(cli: CliContext, message: dict[str, Any]) -> None:
    line = _line(message)
    _out(cli, line, f"{line['partition']}/{line['offset']}\t{line['data']}")


@pubsub_cli.command("subscribe")
@click.argument("name")
@click.option(
    "--from-start", "start", flag_value="start", default=True, help="From the first kept message."
)
@click.option("--from-end", "start", flag_value="end", help="Only messages published from now on.")
@click.option("--from-time", type=float, help="From this time (Unix seconds).")
@click.option("--max", "most", type=int, default=0, help="Stop after N messages.")
@json_option
@pass_cli
def subscribe(cli: CliContext, name: str, start: str, from_time: float | None, most: int) -> None:
    """Stream topic NAME in order (per partition) until interrupted or --max."""
    client = cli.client()
    stream = client.pubsub.subscribe(name, start=start, time=from_time, max=most)
    try:
        for message in stream:
            _show(cli, message)
    finally:
        stream.close()


@pubsub_cli.command("consume")
@click.argument("name")
@click.argument("group")
@click.option("--consumer", required=True, help="This consumer's name.")
@click.option("--max", "most", type=int, default=1, show_default=True)
@click.option("--wait", callback=_seconds, default="0", help="Wait this long for a message.")
@click.option("--no-ack", is_flag=True, help="Print without acknowledging.")
@json_option
@pass_cli
def consume(
    cli: CliContext, name: str, group: str, consumer: str, most: int, wait: float, no_ack: bool
) -> None:
    """Take up to --max messages of group GROUP and ack (competing) or commit
    (partitioned) each one printed. In a partitioned group the consumer joins with
    --consumer as its static instance id, reads its partitions from their committed
    offsets, and leaves."""
    client = cli.client()
    if client.pubsub.stats(name, group)["group"]["mode"] == "partitioned":
        _consume_partitioned(cli, client, name, group, consumer, most, wait, no_ack)
        return
    left = most
    while left > 0:
        got = client.pubsub.fetch(name, group, consumer, max=min(left, 1000), wait=wait)
        if not got:
            break
        for message in got:
            _show(cli, message)
        if not no_ack:
            client.pubsub.ack(name, group, consumer, got)
        left -= len(got)


def _consume_partitioned(
    cli: CliContext,
    client: Any,
    name: str,
    group: str,
    consumer: str,
    most: int,
    wait: float,
    no_ack: bool,
) -> None:
    ps = client.pubsub
    member = ps.join(name, group, consumer, instance=consumer)
    deadline = time.monotonic() + wait
    answer = member
    while not answer["assigned"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the partitions are being handed over by their owners
        answer = ps.heartbeat(name, group, member["member"], member["epoch"], [])
    left = most
    try:
        for assigned in answer["assigned"]:
            partition, offset = assigned["partition"], assigned["offset"]
            while left > 0:
                page = ps.read(name, partition, offset, limit=min(left, 1000))
                if not page["messages"]:
                    break
                for message in page["messages"]:
                    _show(cli, message)
                left -= len(page["messages"])
                offset = page["next"]
                if not no_ack:
                    ps.commit(name, group, member["member"], member["epoch"], {partition: offset})
    finally:
        ps.leave(name, group, member["member"], member["epoch"])


@pubsub_cli.group("group")
def group_cli() -> None:
    """Create and delete consumer groups."""


@group_cli.command("create")
@click.argument("name")
@click.argument("group")
@click.option("--mode", type=click.Choice(["competing", "partitioned"]), required=True)
@click.option("--ack-wait", callback=_seconds, default="30s", show_default=True)
@click.option("--max-deliver", type=int, default=5, show_default=True)
@click.option("--max-ack-pending", type=int, default=1000, show_default=True)
@click.option("--session-timeout", callback=_seconds, default="10s", show_default=True)
@click.option("--from-end", is_flag=True, help="Start after the messages already there.")
@json_option
@pass_cli
def group_create(
    cli: CliContext,
    name: str,
    group: str,
    mode: str,
    ack_wait: float,
    max_deliver: int,
    max_ack_pending: int,
    session_timeout: float,
    from_end: bool,
) -> None:
    """Create group GROUP on topic NAME."""
    made = cli.client().call(
        "pubsub.group_create",
        {
            "topic": name,
            "group": group,
            "mode": mode,
            "ack_wait": ack_wait,
            "max_deliver": max_deliver,
            "max_ack_pending": max_ack_pending,
            "session_timeout": session_timeout,
            "start": "end" if from_end else "start",
        },
    )
    _out(cli, made, f"created {mode} group {group} on {name}")


@group_cli.command("delete")
@click.argument("name")
@click.argument("group")
@click.option("--force", is_flag=True, help="Delete it even if it has members.")
@json_option
@pass_cli
def group_delete(cli: CliContext, name: str, group: str, force: bool) -> None:
    """Delete group GROUP of topic NAME (refused while it has members, unless --force)."""
    params = {"topic": name, "group": group, "force": force}
    got = cli.client().call("pubsub.group_delete", params)
    _out(cli, got, f"deleted {group}")


@pubsub_cli.command("claim")
@click.argument("name")
@click.argument("group")
@click.option("--consumer", required=True, help="Who gets the messages.")
@click.option("--from-consumer", required=True, help="Whose pending messages to take.")
@json_option
@pass_cli
def claim(cli: CliContext, name: str, group: str, consumer: str, from_consumer: str) -> None:
    """Give every pending message of --from-consumer to --consumer now."""
    for message in cli.client().pubsub.claim(name, group, consumer, from_consumer=from_consumer):
        _show(cli, message)


@pubsub_cli.command("dead-letters")
@click.argument("name")
@click.argument("group")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_cli
def dead_letters(cli: CliContext, name: str, group: str, limit: int) -> None:
    """List group GROUP's dead letters (past max_deliver)."""
    page = cli.client().pubsub.dead_letters(name, group, limit=limit)
    for entry in page["dead_letters"]:
        entry["data"] = _text(entry["data"])
        line = f"{entry['partition']}/{entry['offset']}\t{entry['deliveries']}\t{entry['data']}"
        _out(cli, entry, line)


@pubsub_cli.command("stats")
@click.argument("name")
@click.option("--group", help="Also this group's lag, pending, redeliveries, dead letters.")
@json_option
@pass_cli
def stats(cli: CliContext, name: str, group: str | None) -> None:
    """Messages, bytes and offsets of topic NAME (and a group's progress)."""
    got = cli.client().pubsub.stats(name, group)
    if cli.json:
        click.echo(json.dumps(got))
        return
    click.echo(
        f"topic {name}: {got['messages']} messages, {got['bytes']} bytes,"
        f" {got['dedup_records']} dedup records"
    )
    for p in got["partition_offsets"]:
        click.echo(f"  partition {p['partition']}: offsets {p['first_offset']}..{p['end_offset']}")
    if "group" in got:
        g = got["group"]
        click.echo(
            f"group {g['group']}: lag {g['lag']}, pending {g['pending']}, "
            f"redeliveries {g['redeliveries']}, dead letters {g['dead_letters']}"
        )
