"""What the test servers here share (PostgreSQL, NATS, Mosquitto, the cameras): a free
port of 127.0.0.1, a log's tail for error messages, and the shape of a server run as a
child process in a temporary directory."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TypeVar

HOST = "127.0.0.1"
LOG_TAIL_LINES = 30
S = TypeVar("S", bound="Managed")


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on now (the OS picks it; another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` of a server's log, for an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no server log at {path}: {exc.strerror})"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(the server log is empty)"


class Managed:
    """A test server as a context manager: ``start()`` on entering, ``close()`` on
    leaving (subclasses define both)."""

    def start(self: S) -> S:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalServer(Managed):
    """A server process on a port of 127.0.0.1 with a temporary directory, with its
    port, directory, log and state. Subclasses set :attr:`what`, :attr:`log_name`,
    ``start`` and ``close``."""

    what = "the server"
    log_name = "server.log"

    def __init__(self) -> None:
        self._root: Path | None = None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.what} was never started: start() it first")
        return self._port

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def directory(self) -> Path:
        """The temporary directory (its log and data)."""
        if self._root is None:
            raise RuntimeError(f"{self.what} is not started")
        return self._root

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_name

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)
