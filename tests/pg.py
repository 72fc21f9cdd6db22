"""A throwaway PostgreSQL cluster for the tests: its own directory, socket and port."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests import lifetime


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found; `make test` installs them (apt-get install postgresql)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """initdb, then `postgres -D …` as our direct child; as root the server runs as `postgres`.

    Not `pg_ctl start`: that daemonizes the server, which then outlives a killed
    test run. A direct child dies with us (lifetime.popen), and its backends
    exit by themselves when the postmaster dies. The directory lives in this
    process's lifetime record, so the next session removes it if we are killed.
    """

    def __init__(self, start_timeout: float = 60.0, *, durable: bool = False,
                 settings: dict[str, object] | None = None) -> None:
        self.durable = durable  # benchmarks: fsync and synchronous_commit on, as in production
        self.settings = settings or {}  # more server settings, e.g. a benchmark's shared_preload_libraries
        self.bin = _bin_dir()
        self.record = lifetime.this_process_record()
        self.root = self.record.tempdir("pg-")
        self.data = self.root / "data"
        self.port = free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        # Credentials change before PDEATHSIG is set (lifetime.popen), so it survives the switch.
        self.credentials: dict[str, Any] = (
            {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        )

    def start(self) -> PgCluster:
        if self.credentials:
            shutil.chown(self.root, self.credentials["user"], self.credentials["group"])
        lifetime.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C.UTF-8"], cwd=self.root, check=True, capture_output=True, **self.credentials)
        options: dict[str, object] = {"port": self.port, "listen_addresses": "127.0.0.1",
                                      "unix_socket_directories": self.root, "max_connections": 200, "timezone": "UTC"}
        if not self.durable:  # the tests' throwaway data need not survive a crash; benchmarks run as production does
            options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        options.update(self.settings)
        command = [str(self.bin / "postgres"), "-D", str(self.data)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        with (self.root / "server.log").open("ab") as log:
            self.process = self.record.popen(command, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, **self.credentials)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        ready = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        while subprocess.run(ready, check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{log}")
            time.sleep(0.1)

    def create_database(self, name: str) -> str:
        subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT): nothing in a test database is worth a checkpoint."""
        if self.process is not None:
            self.record.stop(self.process, signum=signal.SIGQUIT)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)


def empty_database(url: str, name: str) -> str:
    """A new, empty database beside the one at `url` (dropped first if it exists); its URL."""
    import sqlalchemy as sa

    from app.settings import sqlalchemy_url

    admin = sa.create_engine(sqlalchemy_url(_with_database(url, "postgres")), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return _with_database(url, name)


def end_sessions(engine: Any, pid: int | None = None) -> int:
    """End the sessions of `engine`'s database (all but this one's, or only `pid`) as a restart or a failover
    does, and wait until they are gone (pg_terminate_backend only signals); how many were ended."""
    import sqlalchemy as sa

    # Not one of the pool's connections; autocommit: each look at pg_stat_activity sees it afresh.
    outside = sa.create_engine(engine.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    others = "datname = current_database() AND pid <> pg_backend_pid()" + ("" if pid is None else " AND pid = :pid")
    with outside.connect() as admin:
        # Chosen first, ended after: in one WHERE, PostgreSQL may call pg_terminate_backend before the other tests.
        ended = list(admin.scalars(sa.text(f"SELECT pid FROM pg_stat_activity WHERE {others}"), {"pid": pid}))
        admin.execute(sa.text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:ended AS integer[])) AS pid"),
                      {"ended": ended})
        for _ in range(500):
            if not admin.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:ended)"), {"ended": ended}):
                break
            time.sleep(0.01)
    outside.dispose()
    return len(ended)


def _with_database(url: str, name: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)

