"""``aspen pijul …``: the working-copy commands (mirroring ``pijul``)."""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from pathlib import Path

import click

from aspen.cli import pass_cli
from aspen.cli.context import CliContext
from aspen_pijul.errors import PijulError, UnrecordedChangesError
from aspen_pijul.model.channel import Channel
from aspen_pijul.model.hashing import short
from aspen_pijul.model.record import Meta, record, rollback
from aspen_pijul.repo import DOT_DIR, Repo
from aspen_pijul.text import change_text, log_entry

__all__ = ["pijul_cli"]


def _repo() -> Repo:
    return Repo.find(Path.cwd())


def _meta(message: str, author: str | None) -> Meta:
    who = author or os.environ.get("ASPEN_PIJUL_AUTHOR") or os.environ.get("USER") or "anonymous"
    return Meta(message=message, authors=(who,), timestamp=int(time.time()))


_FORCE = click.option(
    "--force", is_flag=True, help="Overwrite unrecorded edits of the files this changes."
)


def _output(
    repo: Repo, ch: Channel, before: dict[str, bytes] | None = None, force: bool = False
) -> None:
    """Save the channel and make the working copy its output; report file-tree conflicts
    of deleted-but-edited files on stderr.

    ``before`` is the output the working copy was last written from: unrecorded edits
    (relative to it) of files the new output changes are refused with
    :class:`UnrecordedChangesError` unless ``force``; edits of other files are kept.
    ``None`` (reset, unrecord --reset) discards every unrecorded edit."""
    previous, _ = repo.tracked()
    files = ch.output()
    keep: list[str] = []
    if before is not None:
        dirty = repo.unrecorded(before)
        hit = [p for p in dirty if before.get(p) != files.get(p)]
        if hit and not force:
            raise UnrecordedChangesError(
                f"unrecorded changes to {', '.join(hit)} would be overwritten: record them "
                "first (aspen pijul record) or pass --force to discard them",
                paths=hit,
            )
        keep = [p for p in dirty if p not in hit]
    repo.save_channel(ch)
    repo.write_out(files, previous, keep)
    for path in sorted(ch.zombie_files().values()):
        what = "had files added or edited" if path.endswith("/") else "was edited"
        click.echo(
            f"conflict: {path} {what} while a concurrent change deleted it; "
            "record it edited to keep it, or remove it",
            err=True,
        )


@click.group("pijul")
def pijul_cli() -> None:
    """Pijul-style version control: commuting changes, conflicts as states."""


@pijul_cli.command("init")
@click.option("--channel", default="main", show_default=True, help="Name of the first channel.")
def init_cmd(channel: str) -> None:
    """Create a repository in the current directory."""
    Repo.init(Path.cwd(), Repo.check_name(channel))
    click.echo(f"Repository created in {Path.cwd()}")


@pijul_cli.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
def add_cmd(files: tuple[str, ...]) -> None:
    """Track FILES; a directory is tracked as one (kept when empty) with everything under
    it."""
    repo = _repo()
    paths, moves = repo.tracked()
    for f in files:
        p = Path(f)
        found = [p, *p.rglob("*")] if p.is_dir() else [p]
        for x in found:
            if DOT_DIR in x.parts:
                continue
            rel = repo.rel(x)
            if rel != ".":
                paths.append(rel + "/" if x.is_dir() else rel)
    repo.save_tracked(paths, moves)


def _under(paths: list[str], path: str) -> list[str]:
    """``path`` and, if it names a directory, every tracked path under it."""
    d = path.rstrip("/") + "/"
    return [p for p in paths if p in (path, d) or p.startswith(d)]


@pijul_cli.command("remove")
@click.argument("files", nargs=-1, required=True)
def remove_cmd(files: tuple[str, ...]) -> None:
    """Stop tracking FILES (they stay on disk; a directory: everything under it too); the
    next record deletes them."""
    repo = _repo()
    paths, moves = repo.tracked()
    drop = {p for f in files for p in _under(paths, repo.rel(f))}
    repo.save_tracked(
        [p for p in paths if p not in drop], {k: v for k, v in moves.items() if k not in drop}
    )


@pijul_cli.command("move")
@click.argument("old")
@click.argument("new")
def move_cmd(old: str, new: str) -> None:
    """Rename a tracked file or directory OLD to NEW (on disk too); a directory moves as
    one, with everything under it, in the next record."""
    repo = _repo()
    paths, moves = repo.tracked()
    o, n = repo.rel(old), repo.rel(new)
    moving = _under(paths, o)
    if not moving:
        raise PijulError(f"{o} is not tracked")
    if (repo.root / n).exists():
        raise PijulError(f"{n} already exists")
    (repo.root / n).parent.mkdir(parents=True, exist_ok=True)
    os.replace(repo.root / o, repo.root / n)
    recorded = repo.channel().file_inodes()
    renamed = {p: n + p[len(o) :] for p in moving}
    for p, q in renamed.items():
        origin = moves.pop(p, p)
        if origin in recorded:
            moves[q] = origin
    repo.save_tracked([renamed.get(p, p) for p in paths], moves)


@pijul_cli.command("record")
@click.option("-m", "--message", required=True, help="The change's message.")
@click.option("--author", default=None, help="Author (default: $ASPEN_PIJUL_AUTHOR or $USER).")
def record_cmd(message: str, author: str | None) -> None:
    """Record the working copy's changes as a change; prints its hash."""
    repo = _repo()
    ch = repo.channel()
    _, moves = repo.tracked()
    change = record(ch, repo.read_tree(), _meta(message, author), moves)
    if change is None:
        click.echo("Nothing to record", err=True)
        return
    repo.store.put(change)
    ch.apply(change.hash)
    repo.save_channel(ch)
    repo.save_tracked(repo.read_tree().keys(), {})
    click.echo(change.hash)


@pijul_cli.command("diff")
def diff_cmd() -> None:
    """Show what ``record`` would record (a unified diff against the channel)."""
    repo = _repo()
    ch = repo.channel()
    before = ch.output()
    after = repo.read_tree()
    for path in sorted(set(before) | set(after)):
        a = before.get(path, b"").decode(errors="replace").splitlines(keepends=True)
        b = after.get(path, b"").decode(errors="replace").splitlines(keepends=True)
        sys.stdout.writelines(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}"))


@pijul_cli.command("log")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, in application order.")
@click.option("--channel", default=None, help="Channel (default: the current one).")
def log_cmd(as_json: bool, channel: str | None) -> None:
    """The channel's changes in application order."""
    repo = _repo()
    entries = [log_entry(repo.store.get(h)) for h in repo.log(channel or repo.current)]
    if as_json:
        click.echo(json.dumps(entries, indent=1))
        return
    for e in entries:
        click.echo(
            f"Change {e['hash']}\nAuthor: {', '.join(e['authors'])}\n"
            f"Date: {e['timestamp']}\n\n    {e['message']}\n"
        )


@pijul_cli.command("change")
@click.argument("hash_")
def change_cmd(hash_: str) -> None:
    """Print a change: header, dependencies, numbered hunks."""
    repo = _repo()
    click.echo(change_text(repo.store.get(repo.resolve(hash_)), repo.store), nl=False)


@pijul_cli.command("apply")
@click.argument("changes", nargs=-1, required=True)
@_FORCE
def apply_cmd(changes: tuple[str, ...], force: bool) -> None:
    """Apply changes (hashes, prefixes or change files) with their dependencies."""
    repo = _repo()
    ch = repo.channel()
    before = ch.output()
    for c in changes:
        p = Path(c)
        h = repo.store.put_bytes(p.read_bytes()).hash if p.is_file() else repo.resolve(c)
        ch.apply(h)
    _output(repo, ch, before, force)


@pijul_cli.command("unrecord")
@click.argument("changes", nargs=-1, required=True)
@click.option("--reset", is_flag=True, help="Also reset the working copy to the channel.")
def unrecord_cmd(changes: tuple[str, ...], reset: bool) -> None:
    """Remove changes from the channel (refused while another change depends on them)."""
    repo = _repo()
    ch = repo.channel()
    for c in changes:
        ch.unrecord(ch.resolve(c))
    if reset:
        _output(repo, ch)
    else:
        repo.save_channel(ch)


@pijul_cli.command("reset")
def reset_cmd() -> None:
    """Make the working copy the channel's output (drops unrecorded edits)."""
    repo = _repo()
    _output(repo, repo.channel())


@pijul_cli.command("rollback")
@click.argument("hash_")
@click.option("--author", default=None)
@_FORCE
def rollback_cmd(hash_: str, author: str | None, force: bool) -> None:
    """Record and apply a change inverting HASH; prints its hash."""
    repo = _repo()
    ch = repo.channel()
    before = ch.output()
    h = ch.resolve(hash_)
    change = rollback(ch, h, _meta(f"Rollback of {h}", author))
    if change is None:
        click.echo("Nothing to roll back", err=True)
        return
    repo.store.put(change)
    ch.apply(change.hash)
    _output(repo, ch, before, force)
    click.echo(change.hash)


@pijul_cli.command("fork")
@click.argument("name")
def fork_cmd(name: str) -> None:
    """Create channel NAME with the current channel's changes."""
    repo = _repo()
    repo.new_channel(name, repo.log(repo.current))


@pijul_cli.command("credit")
@click.argument("file")
def credit_cmd(file: str) -> None:
    """Which change introduced each line of FILE."""
    repo = _repo()
    ch = repo.channel()
    path = repo.rel(file)
    inodes = ch.file_inodes()
    if path not in inodes:
        raise PijulError(f"{path} is not in channel {ch.name!r}")
    for ol in ch.output_lines(inodes[path]):
        who = short(ol.pos[0]) if ol.pos else " " * 8
        click.echo(f"{who} | {ol.text.decode(errors='replace').rstrip(chr(10))}")


@pijul_cli.group("channel")
def channel_group() -> None:
    """Channels: new, switch, rename, delete, list."""


@channel_group.command("new")
@click.argument("name")
def channel_new(name: str) -> None:
    """Create an empty channel."""
    _repo().new_channel(name)


@channel_group.command("switch")
@click.argument("name")
@_FORCE
def channel_switch(name: str, force: bool) -> None:
    """Make NAME current and make the working copy its output (unrecorded edits of files
    the two channels print alike are kept; of others, refused unless --force)."""
    repo = _repo()
    before = repo.channel().output()
    target = repo.channel(name)
    _output(repo, target, before, force)
    repo.set_current(name)


@channel_group.command("rename")
@click.argument("old")
@click.argument("new", required=False)
def channel_rename(old: str, new: str | None) -> None:
    """Rename channel OLD to NEW (one argument: rename the current channel)."""
    repo = _repo()
    if new is None:
        old, new = repo.current, old
    repo.rename_channel(old, new)


@channel_group.command("delete")
@click.argument("name")
def channel_delete(name: str) -> None:
    """Delete a channel (not the current one)."""
    _repo().delete_channel(name)


@channel_group.command("list")
def channel_list() -> None:
    """Every channel; the current one is starred."""
    repo = _repo()
    for name in repo.channels():
        click.echo(("* " if name == repo.current else "  ") + name)


@pijul_cli.group("remote")
def remote_group() -> None:
    """Remotes: cluster repositories (on the cluster named by ASPEN_ENDPOINT)."""


@remote_group.command("add")
@click.argument("name")
@click.argument("repo")
def remote_add(name: str, repo: str) -> None:
    """Remember cluster repository REPO as remote NAME."""
    _repo().set_remote(name, repo)


@pijul_cli.command("push")
@click.argument("remote", default="origin")
@click.option("--to-channel", default=None, help="Remote channel (default: the local one's).")
@pass_cli
def push_cmd(cli: CliContext, remote: str, to_channel: str | None) -> None:
    """Send the current channel's changes the remote lacks."""
    from aspen_pijul.sync import push

    repo = _repo()
    client = cli.client()
    n = push(repo, client, repo.remote(remote), repo.current, to_channel or repo.current)
    click.echo(f"pushed {n} change(s)", err=True)


@pijul_cli.command("pull")
@click.argument("remote", default="origin")
@click.option("--from-channel", default=None, help="Remote channel (default: the local one's).")
@_FORCE
@pass_cli
def pull_cmd(cli: CliContext, remote: str, from_channel: str | None, force: bool) -> None:
    """Apply the remote's changes the current channel lacks, and output them."""
    from aspen_pijul.sync import pull

    repo = _repo()
    client = cli.client()
    before = repo.channel().output()
    ch = pull(repo, client, repo.remote(remote), repo.current, from_channel or repo.current)
    _output(repo, ch, before, force)


@pijul_cli.command("clone")
@click.argument("remote_repo")
@click.argument("directory", type=click.Path())
@click.option("--channel", default="main", show_default=True)
@pass_cli
def clone_cmd(cli: CliContext, remote_repo: str, directory: str, channel: str) -> None:
    """Create DIRECTORY as a working copy of cluster repository REMOTE_REPO."""
    from aspen_pijul.sync import pull

    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    repo = Repo.init(root, Repo.check_name(channel))
    repo.set_remote("origin", remote_repo)
    ch = pull(repo, cli.client(), remote_repo, channel, channel)
    _output(repo, ch)
