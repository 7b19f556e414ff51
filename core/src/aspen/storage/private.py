"""Private data directories: 0700 directories and 0600 files.

A node's data directory holds every value it stores, its keys, certificates and tokens:
only the user running the node may read it. New directories are made 0700 and
:func:`tighten_tree` brings an existing directory (made by an older version, or by hand
with a 0755 umask) to 0700/0600 on every start.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "make_private_dir", "tighten_tree"]

#: Mode of every directory under a node's data directory (and of the directory itself).
PRIVATE_DIR_MODE = 0o700
#: Mode of every file under a node's data directory.
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger(__name__)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed, and make ``path`` itself 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    _chmod(path, PRIVATE_DIR_MODE)


def tighten_tree(root: Path) -> None:
    """Make ``root`` and every directory under it 0700 and every file 0600 (symbolic links
    are neither followed nor changed)."""
    make_private_dir(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            _chmod(Path(dirpath, name), PRIVATE_DIR_MODE)
        for name in filenames:
            _chmod(Path(dirpath, name), PRIVATE_FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    """Set ``path``'s permission bits to ``mode`` if they differ (never through a link)."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
            return
        os.chmod(path, mode)
    except FileNotFoundError:
        return  # removed meanwhile (a temporary file)
    except PermissionError as exc:
        log.warning("could not make %s private (mode %o): %s", path, mode, exc)
