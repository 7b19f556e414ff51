"""Receiving a pushed pack into a node's local store, with ``git index-pack`` when
installed (about five times faster than dulwich's indexer, which is pure Python) and
dulwich's ``add_thin_pack`` otherwise. Both stream the pack to disk, complete a thin pack
with its delta bases, bound the input (``max_bytes``) and leave ``pack-<name>.pack`` and
``.idx`` in the store's ``pack/`` directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["BadPack", "PackTooLarge", "ReceivedPack", "git_available", "receive_pack"]

#: Bytes of the pushed pack handed to ``git index-pack`` per write.
_PIECE = 256 * 1024


class PackTooLarge(Exception):
    """The pushed pack is over the bound."""


class BadPack(Exception):
    """The pushed pack is malformed (the message says how)."""


class ReceivedPack:
    """A pack now in the store: its path without suffix and how many objects it holds."""

    def __init__(self, basename: Path, count: int) -> None:
        self.basename = basename
        self.count = count


def git_available() -> bool:
    """Whether a ``git`` executable is on PATH."""
    return shutil.which("git") is not None


def receive_pack(
    store: object,
    store_path: Path,
    git_dir: Path | None,
    recv: Callable[[int], bytes],
    read: Callable[[int], bytes],
    max_bytes: int,
) -> ReceivedPack | None:
    """Take the pack ``recv``/``read`` deliver into ``store`` (at ``store_path``); with
    ``git_dir`` (an empty bare repository) through ``git index-pack``. ``None`` for a pack
    of no objects. Raises :class:`PackTooLarge` or :class:`BadPack`."""
    if git_dir is not None:
        return _git_index_pack(store_path, git_dir, recv, max_bytes)
    return _dulwich(store, recv, read, max_bytes)


def _dulwich(
    store: object, recv: Callable[[int], bytes], read: Callable[[int], bytes], max_bytes: int
) -> ReceivedPack | None:
    from dulwich.errors import ApplyDeltaError, ChecksumMismatch, ObjectFormatException
    from dulwich.object_store import PackInputTooLarge

    try:
        pack = store.add_thin_pack(read, recv, max_input_size=max_bytes)  # type: ignore[attr-defined]
    except PackInputTooLarge as exc:
        raise PackTooLarge(str(exc)) from exc
    except (
        OSError,
        ChecksumMismatch,
        ApplyDeltaError,
        AssertionError,
        ObjectFormatException,
        ValueError,
        KeyError,
    ) as exc:
        raise BadPack(_one_line(exc)) from exc
    except Exception as exc:  # zlib.error, struct.error: malformed data
        if type(exc).__module__ in ("zlib", "struct"):
            raise BadPack(_one_line(exc)) from exc
        raise
    if pack is None or len(pack) == 0:
        return None
    return ReceivedPack(Path(pack._basename), len(pack))


def _git_index_pack(
    store_path: Path, git_dir: Path, recv: Callable[[int], bytes], max_bytes: int
) -> ReceivedPack | None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_DIR": str(git_dir),
        "GIT_OBJECT_DIRECTORY": str(store_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(git_dir),
    }
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            ["git", "index-pack", "--stdin", "--fix-thin", f"--max-input-size={max_bytes}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        sent = 0
        with contextlib.suppress(BrokenPipeError):  # index-pack gave up: its error says why
            try:
                while sent <= max_bytes:
                    data = recv(_PIECE)
                    if not data:
                        break
                    sent += len(data)
                    proc.stdin.write(data)
            finally:
                proc.stdin.close()
        out = proc.stdout.read().decode()
        code = proc.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
    if code != 0:
        text = _one_line(message.removeprefix("fatal: ")) or f"git index-pack exited {code}"
        if "maximum allowed size" in message or sent > max_bytes:
            raise PackTooLarge(text)
        raise BadPack(text)
    name = out.split()[-1] if out.split() else ""
    basename = store_path / "pack" / f"pack-{name}"
    count = _pack_count(basename.with_suffix(".pack"))
    if count:
        return ReceivedPack(basename, count)
    for suffix in (".pack", ".idx"):  # nothing pushed: drop the empty pack
        basename.with_suffix(suffix).unlink(missing_ok=True)
    return None


def _pack_count(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(12)
    return int.from_bytes(header[8:12], "big")


def _one_line(exc: object) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")[:200]
