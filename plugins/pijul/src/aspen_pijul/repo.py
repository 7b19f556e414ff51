"""A working copy on disk: ``.aspen-pijul/`` beside the user's files.

Layout::

    .aspen-pijul/
      config.json          current channel, remotes
      tracked.json         tracked paths (a directory's ends in "/") and pending moves
                           (new path -> recorded path)
      changes/<HASH>       change bytes, verified against the name when read
      channels/<NAME>      the channel's log: one hash per line, in application order
      pristine/<NAME>      derived cache of the channel's graph (rebuilt from the log)

Writes go to a temporary file and are renamed into place, so a crash leaves the old
or the new version of each file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aspen_pijul import limits
from aspen_pijul.errors import (
    ChannelExistsError,
    PijulError,
    TooLargeError,
    UnknownChangeError,
    UnknownChannelError,
)
from aspen_pijul.model.change import Change
from aspen_pijul.model.channel import Channel
from aspen_pijul.model.hashing import is_hash, resolve_prefix

__all__ = ["DOT_DIR", "FileStore", "Repo"]

#: Name of the repository directory inside a working copy.
DOT_DIR = ".aspen-pijul"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class FileStore:
    """Changes stored one per file, named by hash, verified when read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Change] = {}

    def get(self, h: str) -> Change:
        """The change ``h``, read and verified."""
        c = self._cache.get(h)
        if c is None:
            path = self.root / h
            if not is_hash(h) or not path.exists():
                raise UnknownChangeError(f"no change {h}")
            c = self._cache[h] = Change.from_bytes(path.read_bytes(), h)
        return c

    def put(self, change: Change) -> None:
        """Store ``change`` (its bytes under its hash)."""
        path = self.root / change.hash
        if not path.exists():
            _write(path, change.to_bytes())
        self._cache[change.hash] = change

    def put_bytes(self, data: bytes, expected: str | None = None) -> Change:
        """Verify and store received bytes."""
        change = Change.from_bytes(data, expected)
        self.put(change)
        return change

    def __contains__(self, h: object) -> bool:
        return isinstance(h, str) and (
            h in self._cache or (is_hash(h) and (self.root / h).exists())
        )

    def hashes(self) -> Iterable[str]:
        """Every stored hash."""
        return [p.name for p in self.root.iterdir() if is_hash(p.name)]


class Repo:
    """A working copy and its repository directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dot = root / DOT_DIR
        self.store = FileStore(self.dot / "changes")

    # -- creation / discovery -------------------------------------------------------------

    @staticmethod
    def init(root: Path, channel: str = "main") -> Repo:
        """Create an empty repository in ``root``."""
        dot = root / DOT_DIR
        if dot.exists():
            raise PijulError(f"{root} is already a repository")
        for sub in ("changes", "channels", "pristine"):
            (dot / sub).mkdir(parents=True)
        repo = Repo(root)
        repo._save_config({"current": channel, "remotes": {}})
        repo.save_log(channel, [])
        repo.save_tracked([], {})
        return repo

    @staticmethod
    def find(start: Path) -> Repo:
        """The repository containing ``start``."""
        for d in [start, *start.parents]:
            if (d / DOT_DIR).is_dir():
                return Repo(d)
        raise PijulError(f"not in a repository (no {DOT_DIR} in {start} or above)")

    # -- config ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The repository configuration."""
        return dict(json.loads((self.dot / "config.json").read_text()))

    def _save_config(self, cfg: dict[str, Any]) -> None:
        _write(self.dot / "config.json", json.dumps(cfg, indent=1, sort_keys=True).encode())

    @property
    def current(self) -> str:
        """The current channel's name."""
        return str(self.config()["current"])

    def set_current(self, name: str) -> None:
        """Make ``name`` the current channel."""
        self._require(name)
        cfg = self.config()
        cfg["current"] = name
        self._save_config(cfg)

    def set_remote(self, name: str, target: str) -> None:
        """Remember remote ``name`` -> repository ``target``."""
        cfg = self.config()
        cfg.setdefault("remotes", {})[name] = target
        self._save_config(cfg)

    def remote(self, name: str) -> str:
        """The repository remote ``name`` points at."""
        remotes = self.config().get("remotes", {})
        if name not in remotes:
            raise PijulError(f"no remote {name!r} (aspen pijul remote add {name} REPO)")
        return str(remotes[name])

    # -- channels -------------------------------------------------------------------------

    def channels(self) -> list[str]:
        """Every channel name, sorted."""
        return sorted(p.name for p in (self.dot / "channels").iterdir() if "." not in p.name[:1])

    @staticmethod
    def check_name(name: str) -> str:
        """``name`` if it is a valid channel name."""
        if not name or not set(name) <= _NAME_CHARS or name.startswith("."):
            raise PijulError(f"bad channel name {name!r} (letters, digits, . _ -)")
        return name

    def _require(self, name: str) -> None:
        if not (self.dot / "channels" / self.check_name(name)).exists():
            raise UnknownChannelError(f"no channel {name!r}")

    def log(self, name: str) -> list[str]:
        """The channel's hashes in application order."""
        self._require(name)
        text = (self.dot / "channels" / name).read_text()
        return [h for h in text.split("\n") if h]

    def save_log(self, name: str, order: list[str]) -> None:
        """Replace the channel's log."""
        self.check_name(name)
        _write(self.dot / "channels" / name, "".join(h + "\n" for h in order).encode())

    def new_channel(self, name: str, order: list[str] | None = None) -> None:
        """Create channel ``name`` (empty, or with ``order``)."""
        if (self.dot / "channels" / self.check_name(name)).exists():
            raise ChannelExistsError(f"channel {name!r} already exists")
        self.save_log(name, order or [])

    def rename_channel(self, old: str, new: str) -> None:
        """Rename a channel (the current one stays current)."""
        order = self.log(old)
        self.new_channel(new, order)
        (self.dot / "channels" / old).unlink()
        (self.dot / "pristine" / old).unlink(missing_ok=True)
        if self.current == old:
            self.set_current(new)

    def delete_channel(self, name: str) -> None:
        """Delete a channel other than the current one."""
        self._require(name)
        if name == self.current:
            raise PijulError(f"cannot delete the current channel {name!r}")
        (self.dot / "channels" / name).unlink()
        (self.dot / "pristine" / name).unlink(missing_ok=True)

    def channel(self, name: str | None = None) -> Channel:
        """The channel ``name`` (default: current), from the pristine cache or by replay."""
        name = name or self.current
        order = self.log(name)
        digest = hashlib.blake2b("\n".join(order).encode(), digest_size=16).hexdigest()
        cache = self.dot / "pristine" / name
        ch = Channel(name, self.store)
        if cache.exists():
            try:
                saved_digest, state = pickle.loads(cache.read_bytes())
                if saved_digest == digest:
                    ch.restore(state)
                    return ch
            except Exception:  # a stale or damaged cache is rebuilt
                pass
        ch = Channel.replay(name, self.store, order)
        self.save_channel(ch)
        return ch

    def save_channel(self, ch: Channel) -> None:
        """Write the channel's log (and refresh its pristine cache)."""
        self.save_log(ch.name, ch.order)
        digest = hashlib.blake2b("\n".join(ch.order).encode(), digest_size=16).hexdigest()
        _write(self.dot / "pristine" / ch.name, pickle.dumps((digest, ch.snapshot())))

    def resolve(self, prefix: str) -> str:
        """A stored change named by hash or unique prefix."""
        return resolve_prefix(prefix, self.store.hashes())

    # -- working copy ---------------------------------------------------------------------

    def tracked(self) -> tuple[list[str], dict[str, str]]:
        """Tracked paths and pending moves (new path -> channel path)."""
        data = json.loads((self.dot / "tracked.json").read_text())
        return list(data["paths"]), dict(data["moves"])

    def save_tracked(self, paths: Iterable[str], moves: dict[str, str]) -> None:
        """Replace the tracked paths and moves."""
        data = {"paths": sorted(set(paths)), "moves": dict(sorted(moves.items()))}
        _write(self.dot / "tracked.json", json.dumps(data, indent=1).encode())

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the working copy root, with ``/`` separators."""
        p = Path(path)
        absolute = (Path.cwd() / p).resolve() if not p.is_absolute() else p.resolve()
        try:
            rel = absolute.relative_to(self.root.resolve())
        except ValueError:
            raise PijulError(f"{path} is outside the working copy {self.root}") from None
        if rel.parts and rel.parts[0] == DOT_DIR:
            raise PijulError(f"{path} is inside {DOT_DIR}")
        return rel.as_posix()

    def read_tree(self) -> dict[str, bytes]:
        """The tracked files that exist on disk: path -> bytes (bounds checked); a tracked
        directory (its path ends in ``/``) that exists -> ``b""``."""
        paths, _ = self.tracked()
        tree: dict[str, bytes] = {}
        for p in paths:
            f = self.root / p
            if p.endswith("/"):  # a directory entity
                if f.is_dir():
                    tree[p] = b""
            elif f.is_file():
                size = f.stat().st_size
                if size > limits.MAX_FILE_BYTES:
                    raise TooLargeError(
                        f"{p} is {size} bytes, over MAX_FILE_BYTES={limits.MAX_FILE_BYTES}"
                    )
                tree[p] = f.read_bytes()
        return tree

    def unrecorded(self, files: dict[str, bytes]) -> list[str]:
        """Paths where the working copy differs from ``files`` (a channel's output):
        edited, deleted, added, removed, or either end of a pending move."""
        paths, moves = self.tracked()
        dirty = set(moves) | set(moves.values())
        for p in paths:
            if p in dirty:
                continue
            f = self.root / p
            want = files.get(p)
            if p.endswith("/"):
                if want is None or not f.is_dir():
                    dirty.add(p)
            elif (
                want is None
                or not f.is_file()
                or f.stat().st_size != len(want)
                or f.read_bytes() != want
            ):
                dirty.add(p)
        dirty |= set(files) - set(paths)
        return sorted(dirty)

    def write_out(
        self, files: dict[str, bytes], previous: Iterable[str] = (), keep: Iterable[str] = ()
    ) -> None:
        """Make the working copy ``files`` (a channel's output): write them, delete
        ``previous`` tracked files it no longer has, and track exactly its files. Paths in
        ``keep`` (unrecorded edits the new output does not touch) are left as they are,
        tracked or not, with their pending moves."""
        kept = set(keep)
        paths, moves = self.tracked()
        gone = [p for p in previous if p not in files and p not in kept]
        for p in gone:
            if not p.endswith("/"):
                (self.root / p).unlink(missing_ok=True)
        for p in sorted((p for p in gone if p.endswith("/")), reverse=True):
            with contextlib.suppress(OSError):  # kept while untracked files are in it
                (self.root / p).rmdir()
        for p, data in files.items():
            f = self.root / p
            if p in kept:
                continue
            if p.endswith("/"):
                f.mkdir(parents=True, exist_ok=True)
                continue
            f.parent.mkdir(parents=True, exist_ok=True)
            if not f.exists() or f.read_bytes() != data:
                _write(f, data)
        tracked = (set(files) - kept) | (kept & set(paths))
        self.save_tracked(tracked, {n: o for n, o in moves.items() if n in kept})
