"""Load on the REST API: N concurrent identify clients against a real server process.

:func:`run` makes (or uses) a gallery, enrolls a few people through the API, starts
``uvicorn`` on 127.0.0.1 as a subprocess, lets ``clients`` threads (each one keep-alive
``httpx.Client``) call ``POST /v1/identify`` for ``seconds``, stops the server and checks the
audit ledger: one ``identify`` entry per answered request, every returned ``ledger_seq``
distinct and present, and the hash chain intact. The gallery is a SQLite file or a
PostgreSQL database (``Options.db``); the benchmark's own keys and checks go through
:class:`~faceledger.operations.Operations`, on the record like any other action.
:class:`Server` is shared with the crash-safety test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np

from faceledger.access import Role
from faceledger.config import load_config
from faceledger.errors import ConfigError, FaceledgerError
from faceledger.images import collect_images
from faceledger.operations import Acting, Operations

MAX_SECONDS = 600
MAX_CLIENTS = 64
MAX_REQUESTS = 100_000
"""Hard cap on identify requests in one run, whatever ``seconds`` allows."""
ENROLL_SUBJECTS = 8
"""People enrolled (one photo each) into a new gallery; the others stay strangers."""
MAX_PHOTOS = 64
"""Query photos cycled through by the clients (held in memory)."""
REQUEST_TIMEOUT = 60.0
READY_TIMEOUT = 120.0
PURPOSE = "load benchmark (faceledger bench service)"
LEGAL_BASIS = "load benchmark: synthetic test gallery"
HEADER = "X-API-Key"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn --factory faceledger.api.server:app_from_env`` on a free local port.

    ``env``: FACELEDGER_* settings (FACELEDGER_DB at least), added to this process's
    environment. Its output goes to ``log``. Use as a context manager: the process is
    always ended (killed if it does not stop) on the way out.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        port: int | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.command = command
        self.log = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> Server:
        """Start uvicorn, or ``command`` (given the port as ``--port N`` after it)."""
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "faceledger.api.server:app_from_env",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ] if self.command is None else [*self.command, "--port", str(self.port)]  # fmt: skip
        self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        return self

    def wait_ready(self, token: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Poll ``/healthz`` until it answers 200 (its body); raises if the server died."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, headers={HEADER: token}, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise FaceledgerError(f"the server exited at start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    answer = client.get("/healthz")
                    if answer.status_code == 200:
                        health: dict[str, Any] = answer.json()
                        return health
                    raise FaceledgerError(f"/healthz answered {answer.status_code}: {answer.text}")
                time.sleep(0.2)
        raise FaceledgerError(f"the server was not ready in {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind (the crash being simulated)."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGKILL)
        self._reap(10.0)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (uvicorn finishes the requests in flight), then SIGKILL after ``grace``."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._reap(10.0)

    def _reap(self, timeout: float) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=5.0)


# ---- the run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    clients: int = 4
    seconds: float = 60.0
    images: Path = Path("../shared/datasets/smoke/identities")
    """A folder of person folders: a few are enrolled, every photo is searched."""
    db: str | Path | None = None
    """An existing (or new) gallery to use instead of a temporary one: a SQLite file, or
    postgresql://user@host:port/name."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """FACELEDGER_* settings for the server (profile, embedder ...)."""
    max_requests: int = MAX_REQUESTS

    def check(self) -> None:
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise ConfigError(f"clients: 1 to {MAX_CLIENTS}, not {self.clients}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ConfigError(f"seconds: more than 0 and at most {MAX_SECONDS}, not {self.seconds}")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise ConfigError(f"max requests: 1 to {MAX_REQUESTS}, not {self.max_requests}")
        if not self.images.is_dir():
            raise ConfigError(f"{self.images}: not a folder of person folders")


@dataclass(frozen=True)
class Sample:
    seconds: float
    status: int | None
    """HTTP status; None when no answer came (``error`` says why)."""
    seq: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class LedgerCheck:
    entries: int
    """'identify' entries written under the benchmark's key."""
    answered: int
    """Identify requests the server answered (the warm-up included), whatever the status."""
    seqs_returned: int
    seqs_distinct: bool
    seqs_in_ledger: bool
    """Every returned ledger_seq is an 'identify' entry of the benchmark's key."""
    chain_ok: bool
    chain: str

    @property
    def ok(self) -> bool:
        return (
            self.entries == self.answered
            and self.seqs_distinct
            and self.seqs_in_ledger
            and self.chain_ok
        )


@dataclass(frozen=True)
class Result:
    profile: str
    model: str
    clients: int
    seconds: float
    """Measured length of the timed window."""
    requests: int
    """Requests sent in the timed window (answered or not)."""
    requests_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    errors: dict[str, int]
    """Count by HTTP status (or transport error) of every answer other than 200."""
    capped: bool
    """The run stopped at the request cap, before its seconds were up."""
    subjects: int
    photos: int
    cores: int | None
    ledger: LedgerCheck
    server_log: str = ""
    """The end of the server's output, when anything went wrong."""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_count"] = self.error_count
        out["ledger"]["ok"] = self.ledger.ok
        return out


def run(options: Options, say: Callable[[str], None] = lambda _: None) -> Result:
    """Enroll, serve, load, stop, check. ``say`` hears progress lines."""
    options.check()
    people = person_folders(options.images)
    with tempfile.TemporaryDirectory(prefix="faceledger-bench-") as tmp:
        db = str(options.db or Path(tmp) / "gallery.db")
        actor = f"bench-{os.getpid()}-{time.time_ns() % 10**9}"
        tokens = make_keys(db, actor)
        try:
            env = {**options.settings, "FACELEDGER_DB": db}
            with Server(env, Path(tmp) / "server.log") as server:
                say(f"starting the server on {server.url}")
                health = server.wait_ready(tokens[Role.operator])
                subjects = enroll(server.url, tokens[Role.enroller], people, say)
                photos = query_photos(people)
                say(f"{options.clients} clients for {options.seconds:g} s, {len(photos)} photos")
                warmup = identify_once(server.url, tokens[Role.operator], photos[0])
                samples, window = load(server.url, tokens[Role.operator], photos, options)
                server.stop()
                log = server.log_tail()
            check = check_ledger(db, actor, [warmup, *samples])
        finally:
            revoke_keys(db, tokens)
    return summarize(
        options,
        health=health,
        samples=samples,
        window=window,
        check=check,
        subjects=subjects,
        photos=len(photos),
        log=log,
    )


def person_folders(root: Path) -> dict[str, list[Path]]:
    """Person name -> photos, for every sub-folder of ``root`` holding images."""
    people = {
        folder.name: sorted(collect_images([folder]))
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }
    people = {name: files for name, files in people.items() if files}
    if not people:
        raise ConfigError(f"{root}: no person folders with photos")
    return people


def operations(db: str) -> Operations:
    """The gallery's operations (nothing loaded: keys and the ledger need no model)."""
    return Operations(load_config(db=db))


def bench_user() -> Acting:
    """Who changes the benchmark's keys: the OS user running it."""
    return Acting.os_user(purpose=PURPOSE)


def make_keys(db: str, actor: str) -> dict[Role, str]:
    """An enroller and an operator key named ``actor`` (revoked by :func:`revoke_keys`);
    both changes are in the ledger like any other."""
    with operations(db) as ops:
        return {
            role: ops.create_key(bench_user(), actor, role).value[0]
            for role in (Role.enroller, Role.operator)
        }


def revoke_keys(db: str, tokens: Mapping[Role, str]) -> None:
    with operations(db) as ops:
        for token in tokens.values():
            key = ops.authenticate(token)
            if key is not None:
                ops.revoke_key(bench_user(), key.id)


def enroll(
    url: str, token: str, people: Mapping[str, list[Path]], say: Callable[[str], None]
) -> int:
    """Enroll the first photo of the first people through the API (people already in the
    gallery are left as they are); returns how many are enrolled."""
    done = 0
    with httpx.Client(base_url=url, headers={HEADER: token}, timeout=REQUEST_TIMEOUT) as client:
        for name, files in list(people.items())[:ENROLL_SUBJECTS]:
            made = client.post("/v1/subjects", json={"name": name, "legal_basis": LEGAL_BASIS})
            if made.status_code == 409:
                done += 1
                continue
            _expect(made, 201, f"creating subject {name}")
            photo = files[0]
            sent = client.post(
                f"/v1/subjects/{name}/templates",
                files={"images": (photo.name, photo.read_bytes())},
                data={"largest": "true"},
            )
            _expect(sent, 201, f"enrolling {photo}")
            done += 1
    say(f"{done} subjects enrolled")
    return done


def _expect(answer: httpx.Response, status: int, doing: str) -> None:
    if answer.status_code != status:
        raise FaceledgerError(f"{doing}: the server answered {answer.status_code}: {answer.text}")


def query_photos(people: Mapping[str, list[Path]]) -> list[tuple[str, bytes]]:
    """Photos to search, in memory: each person's photos after the first (the first
    enrolled ones), interleaved across people; at most :data:`MAX_PHOTOS`."""
    rest = [files[1:] or files for files in people.values()]
    order: list[Path] = []
    for i in range(max(map(len, rest))):
        order.extend(files[i] for files in rest if i < len(files))
    return [(p.name, p.read_bytes()) for p in order[:MAX_PHOTOS]]


def identify_once(url: str, token: str, photo: tuple[str, bytes]) -> Sample:
    with httpx.Client(base_url=url, headers={HEADER: token}, timeout=REQUEST_TIMEOUT) as client:
        return _identify(client, photo)


def _identify(client: httpx.Client, photo: tuple[str, bytes]) -> Sample:
    started = time.perf_counter()
    try:
        answer = client.post("/v1/identify", files={"image": photo}, data={"purpose": PURPOSE})
    except httpx.TransportError as exc:
        return Sample(time.perf_counter() - started, None, error=type(exc).__name__)
    elapsed = time.perf_counter() - started
    seq = answer.json().get("ledger_seq") if answer.status_code == 200 else None
    return Sample(elapsed, answer.status_code, seq)


class _Budget:
    """At most ``total`` requests, taken one at a time by any thread."""

    def __init__(self, total: int) -> None:
        self.left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def load(
    url: str, token: str, photos: list[tuple[str, bytes]], options: Options
) -> tuple[list[Sample], float]:
    """Every client's samples, and the measured length of the window in seconds."""
    budget = _Budget(options.max_requests)
    samples: list[list[Sample]] = [[] for _ in range(options.clients)]
    started = time.monotonic()
    deadline = started + options.seconds
    threads = [
        threading.Thread(
            target=_client,
            kwargs={
                "url": url,
                "token": token,
                "photos": photos,
                "first": i,
                "deadline": deadline,
                "budget": budget,
                "sink": samples[i],
            },
            name=f"bench-client-{i}",
            daemon=True,
        )
        for i in range(options.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(options.seconds + REQUEST_TIMEOUT + 10)
    window = time.monotonic() - started
    return [s for per_client in samples for s in per_client], window


def _client(
    *,
    url: str,
    token: str,
    photos: list[tuple[str, bytes]],
    first: int,
    deadline: float,
    budget: _Budget,
    sink: list[Sample],
) -> None:
    with httpx.Client(base_url=url, headers={HEADER: token}, timeout=REQUEST_TIMEOUT) as client:
        i = first * 7  # clients start at different photos
        while time.monotonic() < deadline and budget.take():
            sample = _identify(client, photos[i % len(photos)])
            sink.append(sample)
            i += 1
            if sample.status is None:  # the server is gone or stuck: stop this client
                return


def check_ledger(db: str, actor: str, samples: list[Sample]) -> LedgerCheck:
    with operations(db) as ops:
        entries = ops.audit_entries(action="identify", actor=actor)
        report = ops.audit_verify()
    seqs = [s.seq for s in samples if s.seq is not None]
    recorded = {e.seq for e in entries}
    return LedgerCheck(
        entries=len(entries),
        answered=sum(1 for s in samples if s.status is not None),
        seqs_returned=len(seqs),
        seqs_distinct=len(set(seqs)) == len(seqs),
        seqs_in_ledger=set(seqs) <= recorded,
        chain_ok=report.ok,
        chain=report.reason,
    )


def summarize(
    options: Options,
    *,
    health: Mapping[str, Any],
    samples: list[Sample],
    window: float,
    check: LedgerCheck,
    subjects: int,
    photos: int,
    log: str,
) -> Result:
    answered = np.array([s.seconds for s in samples if s.status == 200], dtype=np.float64) * 1e3
    errors = Counter(str(s.status) if s.status is not None else str(s.error) for s in samples)
    errors.pop("200", None)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(answered, q)), 1) if answered.size else None

    return Result(
        profile=str(health.get("profile")),
        model=str(health.get("model")),
        clients=options.clients,
        seconds=round(window, 2),
        requests=len(samples),
        requests_per_s=round(len(samples) / window, 2) if window > 0 else 0.0,
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        mean_ms=round(float(answered.mean()), 1) if answered.size else None,
        errors=dict(sorted(errors.items())),
        capped=len(samples) >= options.max_requests,
        subjects=subjects,
        photos=photos,
        cores=os.cpu_count(),
        ledger=check,
        server_log=log if errors or not check.ok else "",
    )
