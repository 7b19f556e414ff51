"""Output helpers for the CLI: exit codes, error reporting, JSON and tables.

A command prints its answer with :func:`emit` (JSON under ``--json``, else a line of
text), :func:`emit_table` (JSON, else a table) or :func:`show_result` (JSON, else one field
or ``key=value`` pairs); plugins use the same (``from aspen.cli import emit``).

Exit codes (stable, documented in ``aspen --help``):

* 0: success
* 1: the answer is "no": key or lease not found, a transaction's compares failed
* 2: usage: bad arguments or options, ``invalid_argument`` / ``compacted`` from the node
* 3: unavailable: cannot connect, ``unavailable``, ``not_leader``, ``timeout``
* 4: any other error (``unauthorized``, ``resource_exhausted``, ``internal``, local I/O)

Bytes in JSON: a key or value that is valid UTF-8 appears as a string under its own
name (``"key": "a"``); otherwise that field is left out and ``<field>_b64`` carries the
bytes in standard base64 (``"value_b64": "/w=="``).
"""

from __future__ import annotations

import base64
import json
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import click

from aspen.errors import AspenError

if TYPE_CHECKING:
    from aspen.events import KeyValue

__all__ = [
    "EXIT_ERROR",
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "bytes_field",
    "echo_json",
    "emit",
    "emit_table",
    "exit_code_for",
    "fail",
    "format_table",
    "kv_to_json",
    "plain",
    "show_bytes",
    "show_result",
    "truncate",
    "write_bytes",
]

#: Widest cell (in characters) of a table the CLI prints (``aspen kv range``); longer
#: keys and values are cut with an ellipsis (``--json`` and ``aspen kv get`` show them whole).
TABLE_CELL_MAX_CHARS = 64
#: What ends a cut cell.
ELLIPSIS = "…"
#: Control characters (C0, DEL, C1) as printable escapes: a key or value printed as text
#: never moves the cursor, clears the screen or breaks a line or a table row.
_CONTROL_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)},
    **{c: f"\\u{c:04x}" for c in range(0x80, 0xA0)},
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_ERROR = 4

_EXIT_BY_CODE = {
    "not_found": EXIT_NO,
    "compare_failed": EXIT_NO,
    "invalid_argument": EXIT_USAGE,
    "compacted": EXIT_USAGE,
    "unavailable": EXIT_UNAVAILABLE,
    "not_leader": EXIT_UNAVAILABLE,
    "timeout": EXIT_UNAVAILABLE,
}


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error (see the module docstring)."""
    if isinstance(exc, AspenError):
        return _EXIT_BY_CODE.get(exc.code, EXIT_ERROR)
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | EOFError):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def bytes_field(name: str, data: bytes | None) -> dict[str, Any]:
    """``{name: text}`` when ``data`` is UTF-8, else ``{name_b64: base64}`` (None stays None)."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_b64": base64.b64encode(data).decode("ascii")}


def kv_to_json(kv: KeyValue | None, *, keys_only: bool = False) -> dict[str, Any] | None:
    """A :class:`~aspen.events.KeyValue` as JSON (bytes by the rule in the module docstring)."""
    if kv is None:
        return None
    out = bytes_field("key", kv.key)
    if not keys_only:
        out.update(bytes_field("value", kv.value))
    out.update(
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
    )
    return out


def echo_json(obj: Any, *, lines: bool = False) -> None:
    """Print ``obj`` as JSON: indented, or on one line (``lines``) for JSON-lines streams."""
    text = json.dumps(obj, separators=(",", ":")) if lines else json.dumps(obj, indent=2)
    click.echo(text)


class _Output(Protocol):
    """What the printing helpers need of a :class:`~aspen.cli.context.CliContext`."""

    json: bool


#: The text of an answer: a string, or a function of the answer giving the text or its lines.
Text = str | Callable[[Any], "str | Iterable[str]"]


def plain(obj: Any) -> Any:
    """``obj`` with every bytes value (in maps and lists too) as text, for JSON and print."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def emit(cli: _Output, answer: Any, text: Text) -> None:
    """Print ``answer`` as JSON under ``--json``; else ``text`` (a string, or
    ``text(answer)``: a string or the lines to print)."""
    if cli.json:
        echo_json(answer)
        return
    got = text if isinstance(text, str) else text(answer)
    for line in [got] if isinstance(got, str) else got:
        click.echo(line)


def emit_table(
    cli: _Output,
    items: Sequence[Any],
    headers: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
) -> None:
    """Print ``items`` as a JSON list under ``--json``; else a table of ``row(item)`` each."""
    if cli.json:
        echo_json(items)
    else:
        click.echo(format_table(headers, [row(item) for item in items]))


def show_result(cli: _Output, result: Any, text_field: str | None = None) -> None:
    """Print ``result`` (bytes as text) as JSON under ``--json``; else its ``text_field``
    alone, or every field as ``key=value``."""
    result = plain(result)
    if text_field is not None:
        emit(cli, result, str(result[text_field]))
    else:
        emit(cli, result, " ".join(f"{k}={v}" for k, v in result.items()))


def show_bytes(data: bytes) -> str:
    """Bytes for people: UTF-8 text; undecodable bytes and control characters as escapes
    (``\\xNN``, ``\\n``, ``\\t``, ``\\r``, ``\\u0085``)."""
    return data.decode("utf-8", "backslashreplace").translate(_CONTROL_ESCAPES)


def truncate(text: str, max_chars: int = TABLE_CELL_MAX_CHARS) -> str:
    """``text`` cut to ``max_chars`` characters, the last one an ellipsis when it was cut."""
    return text if len(text) <= max_chars else text[: max_chars - len(ELLIPSIS)] + ELLIPSIS


def write_bytes(data: bytes) -> None:
    """Write raw bytes to stdout (a newline follows only when stdout is a terminal)."""
    out = sys.stdout.buffer
    out.write(data)
    if sys.stdout.isatty():
        out.write(b"\n")
    out.flush()


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, header first."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
