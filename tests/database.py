"""What an erasure proof greps: every file of a SQLite database (main file, WAL, shared memory)."""

from __future__ import annotations

from pathlib import Path


def database_bytes(path: Path) -> bytes:
    """The bytes of `path` and of its `-wal` and `-shm` companions, as they are on disk now."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
