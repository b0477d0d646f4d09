"""Room kept on the registry's disk: a file of real blocks beside the database, given up when
the disk fills so that the checkpoint which empties the write-ahead log can still copy its
pages, and taken again afterwards. Knows nothing of SQLite."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["Reserve"]


class Reserve:
    def __init__(self, path: Path | None, size: int) -> None:
        self.path = path  # None: nothing to keep (a database in memory)
        self.size = size
        self.missing = True  # not all there: `keep` tries again after each write

    def keep(self, *, now: bool = False) -> None:
        """Make or complete the file if the disk has room for it twice over (the reserve must
        not be what fills the disk); `now`: with whatever room there is, right after a
        checkpoint that had to use it."""
        if self.path is None or self.size <= 0:
            self.missing = False
            return
        try:
            have = self.path.stat().st_blocks * 512
        except FileNotFoundError:
            have = 0
        want = self.size - have
        self.missing = want > 0
        if want <= 0:
            return
        try:
            disk = os.statvfs(self.path.parent)
            free = disk.f_bavail * disk.f_frsize
            if now:
                want = min(want, free - 16 * disk.f_frsize)  # a few pages for the next write
            elif free < want + self.size:
                return
            if want <= 0:
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, have, want)  # blocks taken, not a hole
                os.fsync(fd)
            finally:
                os.close(fd)
            self.missing = have + want < self.size
        except OSError:
            pass  # no room after all: what there is stays, and it is tried again

    def give_up(self) -> bool:
        """Free the room for what needs it now; False if there is none to give."""
        if self.path is None:
            return False
        self.path.unlink(missing_ok=True)
        return True
