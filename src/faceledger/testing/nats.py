"""A throw-away NATS server with JetStream for tests: one ``nats-server`` in a temporary
directory, on a free TCP port of 127.0.0.1.

::

    from faceledger.testing.nats import NatsServer, nats_unavailable

    if nats_unavailable() is None:
        with NatsServer() as server:
            url = server.url            # nats://127.0.0.1:PORT
            server.stop()               # an outage: SIGTERM (then SIGKILL)
            server.start()              # back on the same port, with the same JetStream data
            server.kill()               # a crash: SIGKILL
            server.freeze()             # a partition: SIGSTOP (thaw(): SIGCONT)

The server runs ``nats-server -js -a 127.0.0.1 -p PORT -sd DIR/jetstream -l DIR/server.log``
(no HTTP monitoring port, no authentication). Leaving the ``with`` block stops it and removes
its directory. It is for tests, never for data that matters.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from faceledger.testing.servers import LocalServer, free_port

__all__ = ["NatsServer", "find_nats_server", "nats_unavailable"]

START_TIMEOUT_S = 10.0
"""How long ``start()`` waits for the server to answer on its port with JetStream on."""

STOP_TIMEOUT_S = 10.0
"""How long ``stop()`` waits after SIGTERM before it sends SIGKILL."""

MIN_VERSION = (2, 9)
"""The oldest nats-server these helpers and faceledger.network.nats were tested with."""

_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 30
_PLACES = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")


def find_nats_server() -> Path | None:
    """The ``nats-server`` program: on the PATH, else in Debian's /usr/sbin (often not on
    a non-root PATH), /usr/bin or /usr/local/bin."""
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    for place in _PLACES:
        if os.access(place, os.X_OK):
            return Path(place)
    return None


def _version(program: Path) -> tuple[int, ...] | None:
    """``nats-server: v2.9.10`` -> (2, 9, 10); None when it does not say."""
    try:
        done = subprocess.run(
            [str(program), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", done.stdout + done.stderr)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def nats_unavailable() -> str | None:
    """None when a NATS server with JetStream can be started here, else the reason in words.

    This looks for nats-py (the client) and the ``nats-server`` program and its version; it
    does not start a server, so a start can still fail (``NatsServer.start`` then says why).
    """
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed: pip install 'nats-py>=2.6'"
    program = find_nats_server()
    if program is None:
        return (
            "nats-server not found (looked on the PATH and in /usr/sbin, /usr/bin, "
            "/usr/local/bin): install Debian's nats-server package"
        )
    version = _version(program)
    if version is None:
        return f"{program} --version does not say which version it is"
    if version[:2] < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        have = ".".join(map(str, version))
        return f"{program} is version {have}; JetStream key-value needs {wanted} or newer"
    return None


def _server_info(port: int, timeout: float) -> dict[str, object] | None:
    """The INFO the server sends a new client, or None if it does not answer (yet)."""
    try:
        with socket.create_connection((_HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0].decode("utf-8", errors="replace")
    if not line.startswith("INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


class NatsServer(LocalServer):
    """``nats-server`` with JetStream in a temporary directory, on a free port of 127.0.0.1.

    ``base`` is the directory to make the temporary directory in (the system's temp dir when
    None). ``stop()`` then ``start()`` is an outage: the server comes back on the same port
    with the same store directory, so streams, key-value buckets and their messages survive.
    ``close()`` (and leaving the ``with`` block) stops it and removes the directory.
    """

    what = "the NATS server"

    def __init__(self, base: Path | None = None) -> None:
        super().__init__()
        self._base = base

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> NatsServer:
        """Start the server (on the port and store of the last run, if any) and wait, at
        most START_TIMEOUT_S, until it answers with JetStream on. RuntimeError, with the
        log's tail, if it does not."""
        if self.running:
            raise RuntimeError(f"nats-server is already running on port {self._port}")
        reason = nats_unavailable()
        if reason is not None:
            raise RuntimeError(f"cannot start nats-server: {reason}")
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="faceledger-nats-", dir=self._base))
            atexit.register(self.close)  # a safety net should the owner never close it
        if self._port is None:
            self._port = free_port(_HOST)
        self._spawn(self._port)
        try:
            self._wait_ready(self._port)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; keeps the port and the store for a
        later ``start()``. Idempotent."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL at once (a crash); keeps the port and the store. Idempotent."""
        self._end(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the server stops answering but its connections stay open, as in a
        network partition (clients notice only through their own timeouts)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: a frozen server answers again (and handles what was sent meanwhile)."""
        self._signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory. Idempotent."""
        self.stop()
        root, self._root = self._root, None
        self._port = None
        if root is not None:
            atexit.unregister(self.close)
            shutil.rmtree(root, ignore_errors=True)

    # -- where it is -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``; it stays the same across stop() and start()."""
        return f"nats://{_HOST}:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.directory / "jetstream"

    # -- inside ----------------------------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        program = find_nats_server()
        assert program is not None  # checked by nats_unavailable()
        return [
            str(program),
            "-js",
            "-a", _HOST,
            "-p", str(port),
            "-sd", str(self.store_dir),
            "-l", str(self.log_path),
        ]  # fmt: skip

    def _spawn(self, port: int) -> None:
        try:
            self._process = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.directory,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot run nats-server: {exc}") from exc

    def _wait_ready(self, port: int) -> None:
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        process = self._process
        assert process is not None
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise RuntimeError(
                    f"nats-server exited with code {code} before it answered on port {port}"
                    f"\n--- tail of {self.log_path} ---\n{self.log_tail()}"
                )
            info = _server_info(port, timeout=0.5)
            if info is not None and info.get("jetstream"):
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"nats-server did not answer with JetStream on port {port} within "
            f"{START_TIMEOUT_S:.0f} s\n--- tail of {self.log_path} ---\n{self.log_tail()}"
        )

    def _signal(self, which: signal.Signals) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("nats-server is not running")
        process.send_signal(which)

    def _end(self, first: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(first)
        try:
            process.wait(timeout=STOP_TIMEOUT_S if first != signal.SIGKILL else 5.0)
            return
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5.0)
