"""A small real disk for tests: a tmpfs of a few MiB, filled and freed on demand.

Mounting needs root (CI runs as root); :class:`SmallDisk.mount` raises
:class:`DiskUnavailable` with the reason otherwise, and :meth:`SmallDisk.mounted_for_test`
skips the test with that reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DiskUnavailable", "SmallDisk"]


class DiskUnavailable(RuntimeError):
    """A tmpfs cannot be mounted here (not root, no ``mount``…); the message says why."""


class SmallDisk:
    """A tmpfs of ``size_bytes`` at ``path``: ``mount()``, ``fill()``, ``free()``, ``unmount()``."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = Path(path)
        self.size_bytes = size_bytes
        self._ballast: list[Path] = []
        self._mounted = False

    def mount(self) -> SmallDisk:
        """Mount the tmpfs (creating ``path``); :class:`DiskUnavailable` if it cannot be."""
        if os.geteuid() != 0:
            raise DiskUnavailable(f"mounting a tmpfs needs root (running as uid {os.geteuid()})")
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes}", "tmpfs", str(self.path)],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            raise DiskUnavailable(f"cannot mount a tmpfs at {self.path}: {detail}") from None
        self._mounted = True
        return self

    @contextmanager
    def mounted_for_test(self) -> Iterator[SmallDisk]:
        """Mounted for the ``with`` block; skips the test (``pytest.skip``) with the reason
        where a tmpfs cannot be mounted."""
        import pytest  # only tests call this

        try:
            self.mount()
        except DiskUnavailable as exc:
            pytest.skip(str(exc))
        try:
            yield self
        finally:
            self.unmount()

    def unmount(self) -> None:
        """Unmount (lazily, so a process still holding files does not block it)."""
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self._mounted = False

    def free_bytes(self) -> int:
        """Bytes free on the disk now."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_bytes: int = 0) -> None:
        """Take space with a ballast file until only about ``leave_bytes`` stay free."""
        take = self.free_bytes() - leave_bytes
        if take <= 0:
            return
        path = self.path / f"ballast-{len(self._ballast)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, take)
        finally:
            os.close(fd)
        self._ballast.append(path)

    def free(self) -> None:
        """Delete every ballast file :meth:`fill` wrote."""
        for path in self._ballast:
            path.unlink(missing_ok=True)
        self._ballast.clear()
