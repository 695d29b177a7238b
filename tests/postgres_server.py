"""A throwaway PostgreSQL cluster for one test session: ``initdb`` into a temporary folder,
a server on a free port of 127.0.0.1 that trusts every local connection, and the folder
removed again when it stops.

PostgreSQL refuses to run as root, so under root (the machines and CI run as root) the
cluster belongs to the ``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from services.shared.local_broker import free_port

#: A folder holding ``initdb``, ``pg_ctl`` and ``postgres``; looked at before anything else.
BINDIR_VARIABLE = "OKR_TEST_POSTGRES_BINDIR"
INSTALL_HINT = "apt-get install postgresql"
#: Where Debian's packages put each major version's server binaries (``<version>/bin``).
DEBIAN_VERSIONS = Path("/usr/lib/postgresql")
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
#: The superuser role initdb creates, whoever runs it.
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"
#: How long pg_ctl waits for the server to start or stop (its ``-t``).
PG_CTL_WAIT_SECONDS = 60
#: pg_ctl keeps its own deadline; this one catches a program that hangs.
PROGRAM_DEADLINE_SECONDS = PG_CTL_WAIT_SECONDS + 30
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class PostgresServer:
    """Where a PostgreSQL database is reached, and as whom."""

    host: str
    port: int
    user: str
    password: str
    dbname: str


class BinariesMissing(Exception):
    """No folder with the server programs: the message says what to install."""


class ClusterError(Exception):
    """initdb, pg_ctl or the first connection failed; the message ends with their output."""


def find_bindir() -> Path:
    """The folder with the server programs: ``$OKR_TEST_POSTGRES_BINDIR`` if set, else
    ``pg_config --bindir``, else the newest ``/usr/lib/postgresql/<version>/bin``."""
    configured = os.environ.get(BINDIR_VARIABLE)
    if configured:
        candidates = [Path(configured)]
        looked_in = f"${BINDIR_VARIABLE} ({configured})"
    else:
        newest_first = sorted(DEBIAN_VERSIONS.glob("*/bin"), key=_version, reverse=True)
        candidates = [*_pg_config_bindir(), *newest_first]
        looked_in = f"pg_config --bindir or {DEBIAN_VERSIONS}/*/bin"
    for bindir in candidates:
        if all(os.access(bindir / program, os.X_OK) for program in SERVER_PROGRAMS):
            return bindir
    raise BinariesMissing(
        f"PostgreSQL server binaries missing (no initdb in {looked_in}): {INSTALL_HINT}"
    )


def _pg_config_bindir() -> list[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return []
    try:
        done = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(done.stdout.strip())]


def _version(bindir: Path) -> tuple[int, ...]:
    """``(15,)`` for ``/usr/lib/postgresql/15/bin``; unversioned folders sort first."""
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return ()


def _tail(title: str, text: str) -> str:
    lines = text.strip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join([f"{title} (last lines):", *(f"  | {line}" for line in lines or ["-"])])


def _escaped(value: str) -> str:
    """A postgresql.conf string value: a quote is written twice."""
    return value.replace("'", "''")


def _decoded(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


class Cluster:
    """One cluster in its own temporary folder: ``data/``, ``server.log`` and the Unix
    socket. ``start`` brings it up; ``stop`` shuts it down and removes the folder."""

    def __init__(self, bindir: Path, dbname: str) -> None:
        self._bindir = bindir
        self._owner = self._system_user() if os.geteuid() == 0 else None
        self.server = PostgresServer(
            host="127.0.0.1", port=free_port(), user=SUPERUSER, password="", dbname=dbname
        )
        self.root = Path(tempfile.mkdtemp(prefix="okr-test-postgres-"))
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self._data = self.root / "data"
        self._log = self.root / "server.log"

    @classmethod
    def start(cls, bindir: Path, dbname: str) -> Cluster:
        """initdb, start the server and create ``dbname``; a failure leaves nothing behind."""
        cluster = cls(bindir, dbname)
        try:
            cluster._run(
                "initdb",
                *("-D", cluster._data, "-U", SUPERUSER, "--auth=trust"),
                # C collation needs no installed locale; no-sync: the cluster is discarded.
                *("--encoding=UTF8", "--locale=C", "--no-sync"),
            )
            cluster._configure()
            cluster._pg_ctl("start", "-l", cluster._log)
            cluster._create_database()
        except BaseException:
            with contextlib.suppress(ClusterError, OSError):
                cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Shut the server down and remove the folder (kept when the server will not stop)."""
        if (self._data / "postmaster.pid").exists():
            try:
                self._pg_ctl("stop", "-m", "fast")
            except ClusterError:
                # A fast shutdown still writes a checkpoint; nothing here needs one.
                self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root)

    @staticmethod
    def _system_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ClusterError(
                f"PostgreSQL does not run as root, and there is no {SYSTEM_USER} system user "
                f"to run it as ({INSTALL_HINT} creates one)"
            ) from None

    def _configure(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.server.port),
            "unix_socket_directories": str(self.root),
            # Nothing in this cluster outlives the session, so nothing must survive a crash.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
        }
        quoted = (f"{name} = '{_escaped(value)}'" for name, value in settings.items())
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write("\n# The test suite's throwaway cluster\n" + "\n".join(quoted) + "\n")

    def _pg_ctl(self, action: str, *args: str | Path) -> None:
        self._run("pg_ctl", action, "-w", "-t", str(PG_CTL_WAIT_SECONDS), "-D", self._data, *args)

    def _run(self, program: str, *args: str | Path) -> None:
        command = [str(self._bindir / program), *map(str, args)]
        owner = self._owner
        try:
            done = subprocess.run(
                command,
                cwd=self.root,
                capture_output=True,
                timeout=PROGRAM_DEADLINE_SECONDS,
                check=False,
                user=owner.pw_uid if owner else None,
                group=owner.pw_gid if owner else None,
                extra_groups=[] if owner else None,
            )
        except subprocess.TimeoutExpired as timeout:
            failure = f"did not finish within {PROGRAM_DEADLINE_SECONDS} s"
            output = _decoded(timeout.stdout) + _decoded(timeout.stderr)
        else:
            if done.returncode == 0:
                return
            failure = f"failed (exit {done.returncode})"
            output = _decoded(done.stdout) + _decoded(done.stderr)
        raise ClusterError(
            "\n".join([f"{program} {failure}: {' '.join(command)}", _tail(program, output)])
            + self._log_tail()
        )

    def _log_tail(self) -> str:
        if not self._log.exists():
            return ""
        return "\n" + _tail(f"server log {self._log}", self._log.read_text(errors="replace"))

    def _create_database(self) -> None:
        server = self.server
        try:
            with psycopg.connect(
                host=server.host,
                port=server.port,
                user=server.user,
                dbname="postgres",
                connect_timeout=10,
                autocommit=True,
            ) as connection:
                connection.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(server.dbname))
                )
        except psycopg.Error as error:
            raise ClusterError(
                f"creating database {server.dbname} on {server.host}:{server.port} failed: "
                f"{str(error).strip()}{self._log_tail()}"
            ) from error
