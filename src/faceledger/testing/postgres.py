"""A throw-away PostgreSQL server for tests: a fresh cluster in a temporary directory.

::

    from faceledger.testing.postgres import PostgresCluster, unavailable

    if unavailable() is None:
        with PostgresCluster() as pg:
            url = pg.create_database("gallery")   # postgresql://postgres@127.0.0.1:PORT/gallery

The cluster trusts every local connection (``initdb -A trust``), listens on 127.0.0.1 only,
on a free TCP port, and trades durability for speed (``fsync=off``). It is for tests, never
for data that matters. PostgreSQL refuses to run as root: when this process is root, the
directory is given to the ``postgres`` user and every server command runs through
``runuser -u postgres --``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from faceledger.testing.servers import free_port, tail

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresCluster", "find_bindir", "port_is_free", "unavailable"]

SERVER_USER = "postgres"
"""The superuser of the cluster, and the OS account the server runs as when we are root."""

START_TIMEOUT_S = 30
"""How long ``pg_ctl start -w`` (and ``stop``) may wait for the server."""

_COMMAND_TIMEOUT_S = 60.0
"""The limit on any one command (initdb, pg_ctl) run here."""

_PORT_ATTEMPTS = 3
"""Starts tried, each on another free port, when the port was taken meanwhile."""

_LOG_TAIL_LINES = 30
_SOCKET_PATH_MAX = 90
"""A Unix socket's path must fit in 107 bytes; ``.s.PGSQL.NNNNN`` takes 16 of them."""

_PORT_TAKEN = re.compile(
    r"could not bind|address already in use|could not create any TCP/IP sockets", re.IGNORECASE
)
_REQUIRED = ("initdb", "pg_ctl", "postgres")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _has_programs(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED)


def _version_key(path: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); unparsable versions sort first."""
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)


def find_bindir() -> Path | None:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are: the newest Debian
    ``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``, else the PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_programs(Path(candidate)):
            return Path(candidate)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            done = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            bindir = Path(done.stdout.strip())
            if _has_programs(bindir):
                return bindir
    initdb = shutil.which("initdb")
    if initdb is not None:
        bindir = Path(initdb).resolve().parent
        if _has_programs(bindir):
            return bindir
    return None


def unavailable() -> str | None:
    """None when a PostgreSQL server can be started here, else the reason in words.

    This looks for the programs, the ``postgres`` account (when root) and psycopg; it does
    not start a server, so a start can still fail (``PostgresCluster.start`` then says why).
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'psycopg[binary]>=3.1'"
    bindir = find_bindir()
    if bindir is None:
        return (
            "initdb not found (looked in /usr/lib/postgresql/*/bin, pg_config --bindir and "
            "the PATH): install Debian's postgresql package"
        )
    if _is_root():
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return (
                f"running as root, and PostgreSQL refuses to run as root, but there is no "
                f"{SERVER_USER!r} user to run it as (Debian's postgresql package creates one)"
            )
        if shutil.which("runuser") is None:
            return "running as root, and runuser (util-linux) is not found to drop to postgres"
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now: bind with SO_REUSEADDR, as
    PostgreSQL does, so a connection of the stopped server's lingering in TIME-WAIT or
    FIN-WAIT-2 does not count as the port being taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


class PostgresCluster:
    """A fresh PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1.

    ``base`` is the directory to make the temporary directory in (the system's temp dir when
    None). When running as root, the ``postgres`` user must be able to reach it: pytest's
    ``tmp_path`` (under a 0700 directory of root's) will not do, the default will.
    """

    def __init__(self, base: Path | None = None) -> None:
        self._base = base
        self._root: Path | None = None
        self._bindir: Path | None = None
        self._port: int | None = None
        self._running = False
        self._as: list[str] = []
        self._extra_dirs: list[Path] = []
        self._socket_dir: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> PostgresCluster:
        """initdb a fresh cluster and start it; RuntimeError (with the log's tail) if it fails."""
        if self._root is not None:
            raise RuntimeError("this PostgresCluster is already started; stop() it first")
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"cannot start PostgreSQL: {reason}")
        self._bindir = find_bindir()
        self._root = Path(tempfile.mkdtemp(prefix="faceledger-pg-", dir=self._base))
        atexit.register(self.stop)  # a safety net should the owner never stop it
        try:
            self._prepare()
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove its directory. Idempotent.

        RuntimeError if the server would not stop (its directory is then left in place)."""
        root = self._root
        if root is None:
            return
        atexit.unregister(self.stop)
        failure = ""
        try:
            if self._running:
                failure = self._stop_server(root / "data")
        finally:
            self._running = False
            self._port = None
            self._root = None
            if not failure:
                shutil.rmtree(root, ignore_errors=True)
                for extra in self._extra_dirs:
                    shutil.rmtree(extra, ignore_errors=True)
                self._extra_dirs.clear()
        if failure:
            raise RuntimeError(f"PostgreSQL in {root} would not stop: {failure}")

    def _stop_server(self, data: Path) -> str:
        """``pg_ctl stop``, fast then immediate: '' once stopped, else what went wrong."""
        failure = ""
        for mode in ("fast", "immediate"):
            try:
                done = self._run(
                    "pg_ctl", "stop", "-D", str(data), "-m", mode, "-w", "-t", str(START_TIMEOUT_S)
                )
            except RuntimeError as exc:
                failure = str(exc)
                continue
            if done.returncode == 0 or not (data / "postmaster.pid").exists():
                return ""
            failure = (done.stdout + done.stderr).strip() or f"pg_ctl exit {done.returncode}"
        return failure

    # -- where it is -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None or not self._running:
            raise RuntimeError("the PostgreSQL cluster is not running: start() it first")
        return self._port

    @property
    def running(self) -> bool:
        return self._running

    @property
    def directory(self) -> Path:
        """The temporary directory: ``data/`` (the cluster), ``server.log``, the socket."""
        if self._root is None:
            raise RuntimeError("the PostgreSQL cluster is not started")
        return self._root

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname`` (no password: trust)."""
        return f"postgresql://{SERVER_USER}@{self.host}:{self.port}/{dbname}"

    # -- databases -------------------------------------------------------------------------

    def connect(
        self, dbname: str = "postgres", *, autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        """A psycopg 3 connection to ``dbname`` as the superuser."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=SERVER_USER,
            dbname=dbname,
            autocommit=autocommit,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; returns its url."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Terminate ``name``'s connections, then DROP DATABASE IF EXISTS."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    # -- inside ----------------------------------------------------------------------------

    def _prepare(self) -> None:
        root = self.directory
        (root / "data").mkdir(mode=0o700)
        socket_dir = root
        if len(str(socket_dir)) > _SOCKET_PATH_MAX:
            socket_dir = Path(tempfile.mkdtemp(prefix="fl-pg-"))
            self._extra_dirs.append(socket_dir)
        self._socket_dir = socket_dir
        if _is_root():
            account = pwd.getpwnam(SERVER_USER)
            for directory in (root, *self._extra_dirs):
                _chown_tree(directory, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", SERVER_USER, "--"]
            probe = self._run_quiet_raw([*self._as, "test", "-w", str(root)])
            if probe is None or probe.returncode != 0:
                raise RuntimeError(
                    f"the {SERVER_USER} user cannot write to {root}: a directory above it is "
                    f"closed to it (pass a base that {SERVER_USER} can reach, e.g. None)"
                )

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        return env

    def _command(self, program: str, *args: str) -> list[str]:
        assert self._bindir is not None
        return [*self._as, str(self._bindir / program), *args]

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = self._command(program, *args)
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT_S,
                check=False,
                cwd=self.directory,  # the server user may not reach our own cwd
                env=self._environment(),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{program} did not finish in {_COMMAND_TIMEOUT_S:.0f} s: {shlex.join(cmd)}"
            ) from exc
        except OSError as exc:
            raise RuntimeError(f"cannot run {program}: {exc}") from exc

    def _run_quiet(self, program: str, *args: str) -> subprocess.CompletedProcess[str] | None:
        """As ``_run``, but None instead of an exception (for stopping)."""
        try:
            return self._run(program, *args)
        except RuntimeError:
            return None

    def _run_quiet_raw(self, cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT_S,
                check=False,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return None

    def _initdb(self) -> None:
        done = self._run(
            "initdb",
            "-D",
            str(self.directory / "data"),
            "-A",
            "trust",
            "-U",
            SERVER_USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise RuntimeError(f"initdb failed (exit {done.returncode}):\n{output}")

    def _start_server(self) -> None:
        data = str(self.directory / "data")
        failure = ""
        for attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            options = [
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={port}",
                "-c", f"unix_socket_directories={self._socket_dir}",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
            ]  # fmt: skip
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            started = time.monotonic()
            done = self._run(
                "pg_ctl",
                "start",
                "-D",
                data,
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                shlex.join(options),  # pg_ctl hands -o to /bin/sh
            )
            if done.returncode == 0:
                self._port = port
                self._running = True
                return
            # a server that came up too late for -w must not be left behind
            self._run_quiet("pg_ctl", "stop", "-D", data, "-m", "immediate")
            log = tail(self.log_path)
            failure = (
                f"pg_ctl start failed (attempt {attempt + 1} of {_PORT_ATTEMPTS}, exit "
                f"{done.returncode}, port {port}, after "
                f"{time.monotonic() - started:.1f} s): {(done.stdout + done.stderr).strip()}\n"
                f"--- tail of {self.log_path} ---\n{log}"
            )
            new_log = self._read_from(self.log_path, log_size)
            if not _PORT_TAKEN.search(new_log):
                break
        raise RuntimeError(failure)

    @staticmethod
    def _read_from(path: Path, offset: int) -> str:
        with contextlib.suppress(OSError), path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
        return ""
