"""``aspen kv …``: put, get, del, range, txn, watch, compact."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any

import click

from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.output import (
    EXIT_NO,
    echo_json,
    emit,
    fail,
    format_table,
    kv_to_json,
    show_bytes,
    truncate,
    write_bytes,
)
from aspen.kv.keys import prefix_end
from aspen.limits import CLI_HIDDEN_KEYS_COUNTED, CLIENT_SCAN_PAGE_SIZE

__all__ = ["SYSTEM_PREFIX", "kv"]

#: Where the core and the plugins keep their own state (``/_aspen/<plugin>/…``):
#: ``aspen kv range`` leaves it out unless asked (``--all``, or a range starting in it).
SYSTEM_PREFIX = b"/_aspen/"


def _key(text: str) -> bytes:
    """A command-line argument as bytes, exactly as the shell passed it."""
    return os.fsencode(text)


@click.group()
def kv() -> None:
    """Read and write keys (etcd's data model: revisions, versions, leases).

    Keys and values are bytes. With --json, a key or value that is valid UTF-8 is a
    string ("value": "v"); otherwise that field is left out and "<field>_b64" holds
    it in base64 ("value_b64": "/w==").
    """


@kv.command()
@click.argument("key")
@click.argument("value")
@click.option("--lease", type=int, default=0, help="Attach the key to this lease id.")
@click.option("--prev-kv", is_flag=True, help="Also print the value it replaced.")
@json_option
@pass_cli
def put(cli: CliContext, key: str, value: str, lease: int, prev_kv: bool) -> None:
    """Set KEY to VALUE (VALUE "-" reads the bytes from stdin)."""
    data = sys.stdin.buffer.read() if value == "-" else _key(value)
    result = cli.client().kv.put(_key(key), data, lease=lease, prev_kv=prev_kv)
    if cli.json:
        echo_json({"revision": result.revision, "prev_kv": kv_to_json(result.prev_kv)})
        return
    click.echo(f"OK (revision {result.revision})")
    if prev_kv and result.prev_kv is not None:
        click.echo(f"previous: {show_bytes(result.prev_kv.value)}")


@kv.command()
@click.argument("key")
@click.option("--rev", type=click.IntRange(min=0), default=0, help="Read as of this revision.")
@click.option("--serializable", is_flag=True, help="Read locally (may be stale), not linearizable.")
@json_option
@pass_cli
def get(cli: CliContext, key: str, rev: int, serializable: bool) -> None:
    """Print the value of KEY (raw bytes; exit code 1 if the key does not exist)."""
    record = cli.client().kv.get(_key(key), revision=rev, serializable=serializable)
    if record is None:
        fail(f"key not found: {key}", EXIT_NO)
    if cli.json:
        echo_json(kv_to_json(record))
    else:
        write_bytes(record.value)


@kv.command("del")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Delete every key starting with KEY.")
@click.option("--range-end", help="Delete the keys in [KEY, RANGE_END).")
@click.option("--prev-kv", is_flag=True, help="Also print the deleted keys and values.")
@json_option
@pass_cli
def delete(cli: CliContext, key: str, prefix: bool, range_end: str | None, prev_kv: bool) -> None:
    """Delete KEY (or a prefix, or a range); prints how many keys were deleted."""
    if prefix and range_end is not None:
        raise click.UsageError("use --prefix or --range-end, not both")
    end = None if range_end is None else _key(range_end)
    result = cli.client().kv.delete(_key(key), end=end, prefix=prefix, prev_kv=prev_kv)
    if cli.json:
        echo_json(
            {
                "deleted": result.deleted,
                "revision": result.revision,
                "prev_kvs": [kv_to_json(r) for r in result.prev_kvs],
            }
        )
        return
    click.echo(result.deleted)
    for record in result.prev_kvs:
        click.echo(f"{show_bytes(record.key)}\t{show_bytes(record.value)}")


@kv.command("range")
@click.argument("prefix", default="")
@click.option("--range-end", help="Read [PREFIX, RANGE_END) instead of every key under PREFIX.")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="Most keys to show (0: all).")
@click.option("--keys-only", is_flag=True, help="Show keys, not values.")
@click.option("--count-only", is_flag=True, help="Only count the keys.")
@click.option("--rev", type=click.IntRange(min=0), default=0, help="Read as of this revision.")
@click.option(
    "--all",
    "include_system",
    is_flag=True,
    help="Also show the keys under /_aspen/ (the state of the core and the plugins).",
)
@json_option
@pass_cli
def range_(
    cli: CliContext,
    prefix: str,
    range_end: str | None,
    limit: int,
    keys_only: bool,
    count_only: bool,
    rev: int,
    include_system: bool,
) -> None:
    """List the keys under PREFIX (every key when omitted) as a table.

    Without --limit every key is listed (read page by page, all at one revision). Keys
    under /_aspen/ (plugin state) are left out unless --all is given or PREFIX starts
    with /_aspen/. Control characters are shown as escapes and cells are cut at
    64 characters (TABLE_CELL_MAX_CHARS): --json or `aspen kv get` show them whole.
    """
    client = cli.client()
    start, end = _key(prefix), (None if range_end is None else _key(range_end))
    if not start:  # every key: [b"\0", end), or to the end of the keyspace
        start, end = b"\0", end or b"\0"
    elif end is None:
        end = prefix_end(start)
    segments, hidden, hidden_more = [(start, end)], 0, False
    if not include_system and not start.startswith(SYSTEM_PREFIX):
        segments = _without_system_keys(start, end)
        system = _intersect(start, end, SYSTEM_PREFIX, prefix_end(SYSTEM_PREFIX))
        if system is not None:  # how many are hidden, up to CLI_HIDDEN_KEYS_COUNTED: cheap
            cap = CLI_HIDDEN_KEYS_COUNTED
            peek = client.kv.range(
                system[0], end=system[1], revision=rev, limit=cap, keys_only=True
            )
            hidden, rev = len(peek), rev or peek.revision  # every read at one revision
            hidden_more = peek.more
    if count_only:
        count = sum(
            client.kv.range(a, end=b, revision=rev, count_only=True).count or 0 for a, b in segments
        )
        emit(cli, {"count": count}, str(count))
        return
    records: list[Any] = []
    for a, b in segments:
        wanted = limit + 1 - len(records) if limit else None
        page = min(wanted or CLIENT_SCAN_PAGE_SIZE, CLIENT_SCAN_PAGE_SIZE)
        with client.kv.scan(a, end=b, revision=rev, keys_only=keys_only, page_size=page) as scan:
            records += itertools.islice(scan, wanted)
    more = bool(limit) and len(records) > limit
    records = records[:limit] if limit else records
    if cli.json:
        echo_json({"kvs": [kv_to_json(r, keys_only=keys_only) for r in records], "more": more})
        return
    if keys_only:
        for record in records:
            click.echo(show_bytes(record.key))
    else:
        rows = [
            (
                truncate(show_bytes(r.key)),
                truncate(show_bytes(r.value)),
                r.mod_revision,
                r.version,
                r.lease or "-",
            )
            for r in records
        ]
        click.echo(format_table(("KEY", "VALUE", "MOD_REV", "VERSION", "LEASE"), rows))
    if more:
        click.echo(f"(more keys after the first {limit}: raise --limit)", err=True)
    if hidden:
        many = f"more than {hidden}" if hidden_more else str(hidden)
        click.echo(f"({many} keys under /_aspen/ not shown: --all shows them)", err=True)


def _intersect(start: bytes, end: bytes, lo: bytes, hi: bytes) -> tuple[bytes, bytes] | None:
    """[start, end) ∩ [lo, hi), or None when empty (an ``end`` of b"\\0" is unbounded)."""
    a = max(start, lo)
    b = hi if end == b"\0" else min(end, hi)
    return (a, b) if a < b else None


def _without_system_keys(start: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
    """[start, end) minus the keys under SYSTEM_PREFIX, as at most two ranges in key order."""
    lo, hi = SYSTEM_PREFIX, prefix_end(SYSTEM_PREFIX)
    before = _intersect(start, end, b"\0", lo)
    after = (max(start, hi), end) if end == b"\0" else _intersect(start, end, hi, end)
    return [r for r in (before, after) if r is not None]


@kv.command()
@click.option(
    "--file",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the spec from FILE instead of stdin.",
)
@json_option
@pass_cli
def txn(cli: CliContext, spec_file: Path | None) -> None:
    """Run a transaction read from stdin (or --file); exit code 1 when its compares fail.

    \b
    One statement per line ('#' comments, shell-style quoting):
      if <target> <key> <op> <value>    target: value, version, create, mod, lease
                                        op: == != < >
      then put <key> <value> [--lease ID]
      then del <key> [--prefix | --range-end END]
      else get <key> [--prefix | --range-end END]
    \b
    Example (create /config only if it does not exist yet):
      if version /config == 0
      then put /config v1
      else get /config
    \b
    Or JSON, as kv.txn in docs/protocol.md, with keys/values as UTF-8 strings
    (or key_b64/value_b64/end_b64) and "prefix": true instead of an end:
      {"compare": [{"key": "/config", "target": "version", "op": "==", "value": 0}],
       "success": [{"put": {"key": "/config", "value": "v1"}}],
       "failure": [{"range": {"key": "/config"}}]}
    """
    from aspen.cli.txnspec import parse_txn_spec, spec_to_records

    text = spec_file.read_text() if spec_file else sys.stdin.read()
    compare, success, failure = spec_to_records(parse_txn_spec(text))
    result = cli.client().kv.txn(compare=compare, success=success, failure=failure)
    if cli.json:
        echo_json(_txn_json(result))
    else:
        click.echo("SUCCEEDED" if result.succeeded else "FAILED")
        _print_responses(result.responses)
    if not result.succeeded:
        raise click.exceptions.Exit(EXIT_NO)


def _txn_json(result: Any) -> dict[str, Any]:
    """A TxnResult (or one of its responses) as JSON."""
    from aspen.client.records import DeleteResult, PutResult, RangeResult

    if isinstance(result, PutResult):
        return {"put": {"prev_kv": kv_to_json(result.prev_kv)}}
    if isinstance(result, DeleteResult):
        prev = [kv_to_json(r) for r in result.prev_kvs]
        return {"delete": {"deleted": result.deleted, "prev_kvs": prev}}
    if isinstance(result, RangeResult):
        kvs = [kv_to_json(r) for r in result.kvs]
        return {"range": {"kvs": kvs, "count": result.count, "more": result.more}}
    body = {
        "succeeded": result.succeeded,
        "revision": result.revision,
        "responses": [_txn_json(r) for r in result.responses],
    }
    return body


def _print_responses(responses: list[Any], indent: str = "") -> None:
    from aspen.client.records import DeleteResult, PutResult, RangeResult

    for resp in responses:
        if isinstance(resp, PutResult):
            click.echo(f"{indent}OK")
        elif isinstance(resp, DeleteResult):
            click.echo(f"{indent}deleted {resp.deleted}")
        elif isinstance(resp, RangeResult):
            for record in resp.kvs:
                click.echo(f"{indent}{show_bytes(record.key)}\t{show_bytes(record.value)}")
        else:
            click.echo(f"{indent}{'SUCCEEDED' if resp.succeeded else 'FAILED'}")
            _print_responses(resp.responses, indent + "  ")


@kv.command()
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Watch every key starting with KEY.")
@click.option(
    "--rev", type=click.IntRange(min=0), default=0, help="Start at this revision (with history)."
)
@click.option("--prev-kv", is_flag=True, help="Include each key's previous value.")
@json_option
@pass_cli
def watch(cli: CliContext, key: str, prefix: bool, rev: int, prev_kv: bool) -> None:
    """Print changes to KEY as they happen, one per line (JSON lines with --json); Ctrl-C ends.

    Text lines are "<revision> PUT <key> <value>" or "<revision> DELETE <key>".
    """
    stream = cli.client().watch(_key(key), prefix=prefix, start_revision=rev, prev_kv=prev_kv)
    try:
        for response in stream:
            for event in response.events:
                _print_event(cli, event, prev_kv)
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _print_event(cli: CliContext, event: Any, prev_kv: bool) -> None:
    rev = event.kv.mod_revision
    if cli.json:
        out = {"type": event.type, "revision": rev, "kv": kv_to_json(event.kv)}
        if prev_kv:
            out["prev_kv"] = kv_to_json(event.prev_kv)
        echo_json(out, lines=True)
        return
    line = f"{rev} {event.type.upper()} {show_bytes(event.kv.key)}"
    if event.type == "put":
        line += f" {show_bytes(event.kv.value)}"
    if prev_kv and event.prev_kv is not None:
        line += f" (was {show_bytes(event.prev_kv.value)})"
    click.echo(line, nl=True)
    sys.stdout.flush()


@kv.command()
@click.argument("revision", type=click.IntRange(min=1))
@json_option
@pass_cli
def compact(cli: CliContext, revision: int) -> None:
    """Discard the history before REVISION (reads and watches below it become errors)."""
    cli.client().kv.compact(revision)
    emit(cli, {"compact_revision": revision}, f"compacted history before revision {revision}")
