"""Hostile request bodies against a real server process (issue 13, "Requests and inputs").

A server (``python -m faceledger serve``, embedded profile, ``max_upload`` 2 MB, its own
``TMPDIR``) is sent 300 MB bodies over raw sockets, generated lazily (never held here):
chunked (no Content-Length) with a valid key, and without a key as JSON and as multipart.
Each must be answered (413 / 401) quickly, without the server reading the body: its peak
resident memory (``VmHWM``, reset before each case through ``/proc/PID/clear_refs``) may
not grow by more than about twice the cap, and no temporary file it holds (sampled from
``/proc/PID/fd``) may grow past the cap. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faceledger.access import KeyStore, Role
from faceledger.bench.service import Server
from faceledger.gallery.store import Gallery

CAP = 2_000_000
"""``FACELEDGER_MAX_UPLOAD`` of the server under test."""
BIG = 300_000_000
"""Each hostile body, in bytes (generated, never held in memory)."""
GROWTH = 2 * CAP
"""Most the server's peak resident memory may grow by, answering one hostile body."""
BLOCK = 64 * 1024
CASE_SECONDS = 20.0
BOUNDARY = "hostileboundary7MA4YWxkTrZu0gW"


# ---- lazy bodies ------------------------------------------------------------------------


def filler(total: int) -> Iterator[bytes]:
    """``total`` bytes of ``a``, in blocks (one block object reused)."""
    block = b"a" * BLOCK
    whole, rest = divmod(total, BLOCK)
    for _ in range(whole):
        yield block
    if rest:
        yield block[:rest]


def json_body(total: int) -> Iterator[bytes]:
    """A valid JSON subject of ``total`` bytes (its legal basis is the bulk)."""
    head = b'{"name": "hostile", "legal_basis": "'
    tail = b'"}'
    yield head
    yield from filler(total - len(head) - len(tail))
    yield tail


def multipart_body(total: int) -> Iterator[bytes]:
    """A valid multipart identify request of ``total`` bytes (one huge image part)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nhostile\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    yield head
    yield from filler(total - len(head) - len(tail))
    yield tail


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` framed as HTTP/1.1 chunks, then the last chunk."""
    for piece in pieces:
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


# ---- a raw HTTP/1.1 client that stops sending once the server answers -------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    """Body bytes the server's socket accepted before it answered or closed."""
    seconds: float

    def error(self) -> dict[str, str]:
        error: dict[str, str] = json.loads(self.body)["error"]
        return error


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, head: bytes, body: Iterator[bytes], timeout: float) -> Reply:
    """Send ``head`` then ``body`` until the server answers (or takes it all), then read
    the answer."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = memoryview(b"")
        while time.monotonic() - started < timeout:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                break  # the server answered (or closed): stop sending
            if not writable:
                continue
            if not pending:
                piece = next(body, None)
                if piece is None:
                    break
                pending = memoryview(piece)
            try:
                count = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += count
            pending = pending[count:]
        sock.setblocking(True)
        sock.settimeout(max(1.0, timeout - (time.monotonic() - started)))
        raw = read_answer(sock)
    status, headers, payload = parse_answer(raw)
    return Reply(status, headers, payload, sent, time.monotonic() - started)


def read_answer(sock: socket.socket) -> bytes:
    raw = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        raw += data
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")[1:]
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(rest) >= length:
                break
    return raw


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError(f"no HTTP answer came back: {raw[:200]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, payload


# ---- watching the server process --------------------------------------------------------


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def temp_file_sizes(pid: int, folder: Path) -> list[int]:
    """Sizes of the files under ``folder`` that process ``pid`` holds open (deleted too)."""
    sizes = []
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.is_dir() else ():
        try:
            if os.readlink(fd).startswith(str(folder)):
                sizes.append(os.stat(fd).st_size)
        except OSError:
            continue
    return sizes


@dataclass
class Watch:
    """The server's peak memory growth and largest temporary file over one case."""

    pid: int
    tmp: Path
    rss_before_kb: int = 0
    largest_temp: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
        self.rss_before_kb = status_kb(self.pid, "VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.largest_temp = max([self.largest_temp, *temp_file_sizes(self.pid, self.tmp)])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_kb = status_kb(self.pid, "VmHWM")
        self.temp_left = sum(p.stat().st_size for p in self.tmp.rglob("*") if p.is_file())

    @property
    def growth(self) -> int:
        return (self.peak_kb - self.rss_before_kb) * 1024


# ---- the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    server: Server
    tmp: Path
    enroller: str
    operator: str

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure the server's memory")
    base = tmp_path_factory.mktemp("hostile-bodies")
    db, tmp = base / "g.db", base / "server-tmp"
    tmp.mkdir()
    with Gallery(db) as gallery:
        enroller, _ = KeyStore(gallery).create("hostile enroller", Role.enroller, "test")
        operator, _ = KeyStore(gallery).create("hostile operator", Role.operator, "test")
    env = {
        "FACELEDGER_DB": str(db),
        "FACELEDGER_PROFILE": "embedded",  # from PyPI alone: no ../shared needed
        "FACELEDGER_OFFLINE": "1",
        "FACELEDGER_MODEL_CACHE": str(base / "model-cache"),
        "FACELEDGER_MAX_UPLOAD": str(CAP),
        "TMPDIR": str(tmp),
    }
    command = [sys.executable, "-m", "faceledger", "serve"]
    with Server(env, base / "serve.log", command=command) as server:
        server.wait_ready(enroller)
        running = Running(server, tmp, enroller, operator)
        warm_up(running)
        yield running
        server.stop()
        assert "Traceback" not in server.log.read_text(errors="replace"), server.log_tail()


def warm_up(running: Running) -> None:
    """One ordinary request of each kind, so that lazy start-up costs are not measured."""
    body = json.dumps({"name": "warm-up", "legal_basis": "test"}).encode()
    head = request_head(
        "/v1/subjects",
        {"X-API-Key": running.enroller, "Content-Type": "application/json",
         "Content-Length": str(len(body))},
    )  # fmt: skip
    reply = exchange(running.server.port, head, iter([body]), 10.0)
    assert reply.status == 201, reply.body


def hostile(running: Running, name: str, path: str, headers: dict[str, str],
            body: Iterator[bytes]) -> tuple[Reply, Watch]:  # fmt: skip
    with Watch(running.pid, running.tmp) as watch:
        reply = exchange(running.server.port, request_head(path, headers), body, CASE_SECONDS)
    print(
        f"\n{name}: {reply.status} in {reply.seconds:.2f} s; server accepted "
        f"{reply.sent / 1e6:.1f} MB of {BIG / 1e6:.0f} MB; peak RSS "
        f"{watch.rss_before_kb / 1024:.1f} -> {watch.peak_kb / 1024:.1f} MiB (growth "
        f"{watch.growth / 1e6:.2f} MB, cap {CAP / 1e6:.0f} MB); largest temp file "
        f"{watch.largest_temp / 1e6:.2f} MB"
    )
    assert running.server.running, running.server.log_tail()
    return reply, watch


def assert_cheap(reply: Reply, watch: Watch) -> None:
    assert reply.seconds < CASE_SECONDS / 2
    assert watch.growth < GROWTH, f"server memory grew {watch.growth:,} bytes"
    assert watch.largest_temp <= CAP + 64 * 1024
    assert watch.temp_left == 0


JSON = {"Content-Type": "application/json"}
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
STREAMED = {"Transfer-Encoding": "chunked"}
DECLARED = {"Content-Length": str(BIG)}


# ---- the cases --------------------------------------------------------------------------


def test_a_chunked_body_over_the_cap_with_a_key_is_413_as_it_passes_it(running: Running) -> None:
    reply, watch = hostile(
        running, "chunked JSON, valid key", "/v1/subjects",
        {"X-API-Key": running.enroller, **JSON, **STREAMED}, chunked(json_body(BIG)),
    )  # fmt: skip
    assert reply.status == 413, reply.body
    assert reply.error()["type"] == "PayloadTooLarge"
    assert reply.headers.get("connection") == "close"
    assert reply.sent < BIG // 10  # the rest was never taken
    assert_cheap(reply, watch)


def test_a_chunked_upload_over_the_cap_with_a_key_spools_at_most_the_cap(
    running: Running,
) -> None:
    reply, watch = hostile(
        running, "chunked multipart, valid key", "/v1/identify",
        {"X-API-Key": running.operator, **MULTIPART, **STREAMED}, chunked(multipart_body(BIG)),
    )  # fmt: skip
    assert reply.status == 413, reply.body
    assert reply.error()["type"] == "PayloadTooLarge"
    assert reply.sent < BIG // 10
    assert_cheap(reply, watch)


def test_a_declared_length_over_the_cap_with_a_key_is_413_at_once(running: Running) -> None:
    reply, watch = hostile(
        running, "declared JSON, valid key", "/v1/subjects",
        {"X-API-Key": running.enroller, **JSON, **DECLARED}, json_body(BIG),
    )  # fmt: skip
    assert reply.status == 413, reply.body
    assert reply.error()["type"] == "PayloadTooLarge"
    assert_cheap(reply, watch)


@pytest.mark.parametrize("framing", ["declared", "chunked"])
@pytest.mark.parametrize("key", ["none", "unknown"])
def test_a_json_body_without_a_valid_key_is_401_unread(
    running: Running, framing: str, key: str
) -> None:
    headers = {**JSON, **(DECLARED if framing == "declared" else STREAMED)}
    if key == "unknown":
        headers["X-API-Key"] = "fl_00000000_" + "x" * 43
    body = json_body(BIG) if framing == "declared" else chunked(json_body(BIG))
    reply, watch = hostile(running, f"{framing} JSON, key {key}", "/v1/subjects", headers, body)
    assert reply.status == 401, reply.body
    assert reply.error()["type"] == "Unauthorized"
    assert reply.headers.get("www-authenticate") == "X-API-Key"
    assert reply.sent < BIG // 10
    assert_cheap(reply, watch)


@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_a_multipart_upload_without_a_key_is_401_and_spools_nothing(
    running: Running, framing: str
) -> None:
    headers = {**MULTIPART, **(DECLARED if framing == "declared" else STREAMED)}
    body = multipart_body(BIG) if framing == "declared" else chunked(multipart_body(BIG))
    reply, watch = hostile(running, f"{framing} multipart, no key", "/v1/identify", headers, body)
    assert reply.status == 401, reply.body
    assert reply.error()["type"] == "Unauthorized"
    assert reply.sent < BIG // 10
    assert watch.largest_temp == 0
    assert_cheap(reply, watch)


def test_routes_without_a_key_or_a_body_still_answer(running: Running) -> None:
    import httpx

    url = running.server.url
    assert httpx.get(f"{url}/openapi.json", timeout=10).status_code == 200
    assert httpx.get(f"{url}/docs", timeout=10).status_code == 200
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 401  # a key, no body
    made = httpx.post(
        f"{url}/v1/subjects",
        json={"name": "ordinary", "legal_basis": "test"},
        headers={"X-API-Key": running.enroller},
        timeout=10,
    )
    assert made.status_code == 201, made.text
