"""``aspen blob …``: put, get, stat, status, pin, unpin, ls, replicas (docs/blobs.md)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from aspen.blobs.hashing import parse_hash
from aspen.cli.context import CliContext, json_option, pass_cli
from aspen.cli.output import emit, emit_table, fail
from aspen.errors import InvalidArgumentError

__all__ = ["Progress", "blob"]

#: Seconds between two redraws of the progress bar.
PROGRESS_REDRAW_SECONDS = 0.2
_MiB = 1024 * 1024


class Progress:
    """A one-line progress bar on stderr (bytes, rate, ETA), drawn only on a terminal."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.start = time.monotonic()
        self.drawn = 0.0
        self.done = 0

    def __call__(self, done: int) -> None:
        """Record ``done`` bytes so far; redraw now and then."""
        self.done = done
        now = time.monotonic()
        if self.enabled and now - self.drawn >= PROGRESS_REDRAW_SECONDS:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        line = f"{self.done / _MiB:9.1f} MiB"
        if self.total:
            left = (self.total - self.done) / rate if rate else 0.0
            line += f" / {self.total / _MiB:.1f} MiB ({100 * self.done / self.total:3.0f}%)"
            line += f"  {rate / _MiB:7.1f} MiB/s  ETA {left:5.0f}s"
        else:
            line += f"  {rate / _MiB:7.1f} MiB/s"
        click.echo("\r" + line, err=True, nl=False)

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            click.echo("", err=True)


def _progress(cli: CliContext, total: int | None) -> Progress:
    """A progress bar, enabled only on a terminal and never in JSON mode."""
    return Progress(total, not cli.json and sys.stderr.isatty())


def _hash(value: str) -> str:
    try:
        return parse_hash(value)
    except InvalidArgumentError as exc:
        raise click.BadParameter(exc.message) from None


@click.group()
def blob() -> None:
    """Blobs: large immutable objects named by their BLAKE3 hash, replicated across nodes."""


@blob.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--replicas", type=click.IntRange(min=1), help="Nodes that must hold it (default: cluster's)."
)
@click.option("--pin", "pin_name", metavar="NAME", help="Keep it under this pin name.")
@json_option
@pass_cli
def put(cli: CliContext, file: Path, replicas: int | None, pin_name: str | None) -> None:
    """Store FILE (- for stdin) and print its hash."""
    client = cli.client()
    source: IO[bytes]
    if str(file) == "-":
        source, size = sys.stdin.buffer, None
    else:
        try:
            source = open(file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            fail(f"error: cannot read {file}: {exc.strerror}", 2)
        size = os.fstat(source.fileno()).st_size
    progress = _progress(cli, size)
    try:
        ref = client.blobs.put(
            source, replicas=replicas, pin=pin_name, size=size, progress=progress
        )
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    progress.finish()
    emit(cli, {"hash": ref.hash, "size": ref.size, "replicas": ref.replicas}, ref.hash)


@blob.command()
@click.argument("digest", metavar="HASH")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="First byte to read.")
@click.option("--length", type=click.IntRange(min=0), help="Bytes to read (default: to the end).")
@pass_cli
def get(cli: CliContext, digest: str, output: Path | None, offset: int, length: int | None) -> None:
    """Write the bytes of HASH to stdout (or -o FILE); exit code 1 if there is no such blob."""
    client = cli.client()
    info = client.blobs.stat(_hash(digest))
    total = (info["size"] - offset) if length is None else length
    progress = _progress(cli, total)
    tmp = None if output is None else output.with_name(f".{output.name}.part")
    out: Any = sys.stdout.buffer if tmp is None else open(tmp, "wb")  # noqa: SIM115
    try:
        for piece in client.blobs.get(
            info["hash"], offset=offset, length=length, progress=progress
        ):
            out.write(piece)
        out.flush()
        if tmp is not None and output is not None:
            os.fsync(out.fileno())
            out.close()
            os.replace(tmp, output)
    except BaseException:
        if tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
        raise
    progress.finish()


@blob.command()
@click.argument("digest", metavar="HASH")
@json_option
@pass_cli
def stat(cli: CliContext, digest: str) -> None:
    """Show HASH's size, holders and pins (exit code 1 if there is no such blob)."""
    emit(
        cli,
        cli.client().blobs.stat(_hash(digest)),
        lambda info: (
            f"hash     {info['hash']}",
            f"size     {info['size']}",
            f"replicas {info['replicas']} wanted, {len(info['holders'])} held",
            f"holders  {', '.join(info['holders']) or '-'}",
            f"pins     {', '.join(info['pins']) or '-'}",
        ),
    )


@blob.command()
@json_option
@pass_cli
def status(cli: CliContext) -> None:
    """Blobs and bytes stored, blobs under-replicated and repairs in flight."""
    emit(
        cli,
        cli.client().blobs.status(),
        lambda info: (
            f"blobs             {info['blobs']} ({info['bytes']} bytes)",
            f"replicas          {info['replicas']} by default",
            f"under-replicated  {info['under_replicated']}",
            f"repairing         {info['repairing']}",
        ),
    )


@blob.command()
@click.argument("name")
@click.argument("digest", metavar="HASH")
@pass_cli
def pin(cli: CliContext, name: str, digest: str) -> None:
    """Keep HASH under the pin NAME (GC never removes a pinned blob)."""
    cli.client().blobs.pin(name, _hash(digest))


@blob.command()
@click.argument("name")
@pass_cli
def unpin(cli: CliContext, name: str) -> None:
    """Drop the pin NAME (exit code 1 if there is none)."""
    cli.client().blobs.unpin(name)


@blob.command("ls")
@click.option("--after", default="", help="Start after this hash (paging).")
@click.option("--limit", type=click.IntRange(min=1), help="List at most this many blobs.")
@json_option
@pass_cli
def ls(cli: CliContext, after: str, limit: int | None) -> None:
    """List the blobs in hash order with their size, holders and pins."""
    emit_table(
        cli,
        cli.client().blobs.list(after=after, limit=limit),
        ("HASH", "SIZE", "HOLDERS", "PINS"),
        lambda b: (b["hash"], b["size"], len(b["holders"]), ",".join(b["pins"])),
    )


@blob.command("pins")
@click.argument("prefix", default="")
@click.option("--after", default="", help="Start after this pin name (paging).")
@click.option("--limit", type=click.IntRange(min=1), help="List at most this many pins.")
@json_option
@pass_cli
def pins(cli: CliContext, prefix: str, after: str, limit: int | None) -> None:
    """List the pins whose name starts with PREFIX, in name order, with hash and size."""
    emit_table(
        cli,
        cli.client().blobs.pins(prefix, after=after, limit=limit),
        ("NAME", "HASH", "SIZE"),
        lambda e: (e["name"], e["hash"], e["size"]),
    )


@blob.command()
@click.argument("count", type=click.IntRange(min=1))
@pass_cli
def replicas(cli: CliContext, count: int) -> None:
    """Set the cluster's default replica count for new puts."""
    cli.client().blobs.set_replicas(count)
