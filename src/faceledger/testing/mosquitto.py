"""A throw-away Mosquitto MQTT broker for tests, in a temporary directory.

::

    from faceledger.testing.mosquitto import MosquittoBroker, mosquitto_unavailable

    if mosquitto_unavailable() is None:
        with MosquittoBroker() as broker:       # started; mqtt://127.0.0.1:PORT
            ...
            broker.stop()                       # an outage: the process is terminated
            broker.start()                      # back, on the same port

The broker listens on 127.0.0.1 only, on a free TCP port, and takes anonymous clients, or,
given ``users={"name": "password"}``, only those (a ``password_file`` made with
``mosquitto_passwd -b``). ``persistence=True`` keeps retained messages, persistent sessions
and their queued messages across ``stop()``/``start()`` (saved when the broker stops).
Mosquitto runs as the current user (``user root`` when that is root: it would otherwise
switch to the ``mosquitto`` account, which cannot write to our directory). It is for tests.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from faceledger.testing.servers import LocalServer, free_port, tail

__all__ = ["MosquittoBroker", "find_mosquitto", "mosquitto_unavailable"]

START_TIMEOUT_S = 10.0
"""How long ``start()`` waits for the broker to answer on its port."""

STOP_TIMEOUT_S = 10.0
"""How long ``stop()`` waits after SIGTERM before it kills the broker."""

_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_PASSWD_TIMEOUT_S = 30.0


def find_mosquitto() -> Path | None:
    """The ``mosquitto`` program: on the PATH, else Debian's ``/usr/sbin/mosquitto``."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def _find_passwd() -> Path | None:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin")
    return Path(found) if found else None


def mosquitto_unavailable(*, users: bool = False) -> str | None:
    """None when a broker can be started here (with ``users``: also password files), else
    the reason in words. It starts nothing: ``MosquittoBroker.start`` says why a start fails."""
    if find_mosquitto() is None:
        return (
            "mosquitto not found (looked on the PATH and in /usr/sbin): install Debian's "
            "mosquitto package"
        )
    if users and _find_passwd() is None:
        return "mosquitto_passwd not found: install Debian's mosquitto package"
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "paho-mqtt is not installed: pip install 'paho-mqtt>=2.0'"
    return None


_PROBE_CONNECT = b"\x10\x17\x00\x04MQTT\x04\x02\x00\x05\x00\x0bstart-probe"
"""An MQTT 3.1.1 CONNECT (clean session, keepalive 5 s, client id ``start-probe``)."""


def _answers_mqtt(port: int) -> bool:
    """Whether an MQTT broker answers a CONNECT on ``port`` with a CONNACK (accepted or
    refused: either says it is up), not merely whether something accepts TCP there."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(_PROBE_CONNECT)
            answer = conn.recv(4)
            with contextlib.suppress(OSError):
                conn.sendall(b"\xe0\x00")  # DISCONNECT
            return answer[:2] == b"\x20\x02"
    except OSError:
        return False


def _read_from(path: Path, offset: int) -> str:
    with contextlib.suppress(OSError), path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", errors="replace")
    return ""


class MosquittoBroker(LocalServer):
    """One ``mosquitto`` process on 127.0.0.1; a context manager (started on enter)."""

    what = "the Mosquitto broker"
    log_name = "mosquitto.log"

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        persistence: bool = False,
        base: Path | str | None = None,
    ) -> None:
        super().__init__()
        self.users = dict(users or {})
        self.persistence = persistence
        self._base = base

    def __repr__(self) -> str:
        state = f"port {self._port}" if self._port else "not started"
        return f"MosquittoBroker({state}, {'running' if self.running else 'stopped'})"

    # -- where it is -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` (add ``user:password@`` yourself for a broker with users)."""
        return f"mqtt://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` of the broker's log, then of what it wrote to stderr (the
        directory holds ``mosquitto.conf``, ``mosquitto.log`` and ``stderr.log``)."""
        if self._root is None:
            return "(not started)"
        text = tail(self.log_path, lines)
        errors = tail(self._root / "stderr.log", lines)
        if not errors.startswith("("):
            text += f"\n--- stderr ---\n{errors}"
        return text

    # -- life ------------------------------------------------------------------------------

    def start(self) -> MosquittoBroker:
        """Start the broker (again, on the same port, after ``stop()``) and wait until it
        accepts connections; RuntimeError, with the log's tail, if it does not."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        program = find_mosquitto()
        if program is None:
            raise RuntimeError(f"cannot start Mosquitto: {mosquitto_unavailable()}")
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="faceledger-mqtt-", dir=self._base))
            atexit.register(self.close)  # a safety net should the owner never close it
            try:
                self._write_passwords()
            except BaseException:
                self.close()
                raise
        if self._port is not None:  # a restart keeps its port: clients come back to it
            self._launch(program, self._port)
            return self
        try:
            self._first_launch(program)
        except BaseException:
            self.close()
            raise
        return self

    def _first_launch(self, program: Path) -> None:
        for attempt in range(_PORT_ATTEMPTS):  # a free port may be taken before mosquitto binds
            try:
                self._launch(program, free_port())
                return
            except _PortTaken:
                self._port = None
                if attempt + 1 == _PORT_ATTEMPTS:
                    raise

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``): an outage.
        The directory and port stay for ``start()``. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL the broker: a crash (nothing saved, even with persistence)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self.stop()

    def close(self) -> None:
        """Stop the broker and remove its directory. Idempotent."""
        self.stop()
        root, self._root = self._root, None
        if root is not None:
            atexit.unregister(self.close)
            shutil.rmtree(root, ignore_errors=True)

    # -- inside ----------------------------------------------------------------------------

    def _write_passwords(self) -> None:
        if not self.users:
            return
        passwd = _find_passwd()
        if passwd is None:
            raise RuntimeError("cannot set broker users: mosquitto_passwd not found")
        path = self.directory / "passwords"
        path.touch(mode=0o600)
        for name, password in self.users.items():
            done = subprocess.run(
                [str(passwd), "-b", str(path), name, password],
                capture_output=True,
                text=True,
                timeout=_PASSWD_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                output = (done.stdout + done.stderr).strip()
                raise RuntimeError(f"mosquitto_passwd failed for user {name!r}: {output}")

    def _config(self, port: int) -> str:
        root = self.directory
        lines = [
            f"listener {port} 127.0.0.1",
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # root stays root (see above)
            f"log_dest file {root / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self.users:
            lines += ["allow_anonymous false", f"password_file {root / 'passwords'}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {root}{os.sep}",
                "autosave_interval 0",  # saved when it stops
            ]
        else:
            lines.append("persistence false")
        return "\n".join(lines) + "\n"

    def _launch(self, program: Path, port: int) -> None:
        root = self.directory
        conf = root / "mosquitto.conf"
        conf.write_text(self._config(port), encoding="utf-8")
        logs = [self.log_path, root / "stderr.log"]
        sizes = [path.stat().st_size if path.exists() else 0 for path in logs]
        with (root / "stderr.log").open("ab") as errors:
            self._process = subprocess.Popen(
                [str(program), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                cwd=root,
            )
        self._port = port
        started = time.monotonic()
        while time.monotonic() - started < START_TIMEOUT_S:
            if self._process.poll() is not None:
                break
            if _answers_mqtt(port):
                return
            time.sleep(0.02)
        code = self._process.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else "did not answer MQTT"
        new_log = "".join(_read_from(path, size) for path, size in zip(logs, sizes, strict=True))
        error = _PortTaken if "address already in use" in new_log.lower() else RuntimeError
        raise error(
            f"mosquitto {state} on port {port} after {time.monotonic() - started:.1f} s\n"
            f"--- tail of the broker's log ---\n{self.log_tail()}"
        )


class _PortTaken(RuntimeError):
    """Another process bound the port first."""
