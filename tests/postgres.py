"""A real PostgreSQL server for the tests, from Debian's `postgresql` package: a cluster
made by initdb in a temporary directory, listening on a Unix socket only (no TCP port), its
superuser trusted on that socket, stopped and removed at the end.

initdb refuses to run as root: as root, the cluster is made and run by the `postgres`
user the package creates, in a directory that user owns.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer", "postgres_bin"]

SUPERUSER = "nascloud"


def postgres_bin() -> Path:
    """The newest installed server's bin directory (`make deps` installs `postgresql`)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: run `make deps`")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="nascloud-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        options = (
            f"-k {self.socket_dir} -c listen_addresses='' -c max_connections=200 "
            "-c shared_buffers=32MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-w", "-s", "-l",
                  str(self.root / "server.log"), "-o", options, "start")  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / program), *args], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A new, empty database's URL."""
        import psycopg

        name = f"registry_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.split("/")[-1].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def database_bytes(self, url: str) -> bytes:
        """Every file of the database's tables, their indexes and TOAST, after a checkpoint
        has written every page to them."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CHECKPOINT")
            row = connection.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        directory = self.data / "base" / str(row[0])
        return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-s", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
