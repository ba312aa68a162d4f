"""One PostgreSQL database, several processes at once: does the shared backend hold?

:func:`run` starts ``servers`` API servers (``python -m faceledger serve`` subprocesses on
free local ports, all with the same ``--db``) and ``cli_loops`` command-line loops, and for
``seconds`` they all enroll, identify and erase at the same time:

- each server is driven by ``clients`` threads of this process (one keep-alive
  ``httpx.Client`` each), cycling ``POST /v1/subjects``, ``POST /v1/subjects/NAME/templates``,
  ``identifies`` x ``POST /v1/identify`` and ``DELETE /v1/subjects/NAME``, under an API key
  of its own (enroller + operator keys with one holder name per server);
- each CLI loop is one Python process that imports the ``faceledger`` command once and then
  calls it in-process, one command at a time: ``enroll PHOTO --name NAME``, ``identify
  PHOTO`` x ``identifies``, ``subjects remove NAME --yes`` (acting as the OS user, as the
  command always does). A fresh ``faceledger`` process per command would spend about two
  seconds importing before each one; in-process, a command still opens the database and
  loads its models as the real command does, but that costs a few hundred milliseconds.

Afterwards the ledger is read back through :class:`~faceledger.operations.Operations`:
every answered request or command must have exactly one entry of its action and actor,
every ``ledger_seq`` an API answer carried must be distinct and be an entry of that actor
and action, no sequence number may be used twice or skipped, and ``Ledger.verify()`` (with
the head noted before the run) must pass. Nothing else should write to the database during
the run: its entries would count as unexplained.

``db`` None: a throw-away PostgreSQL cluster (:class:`~faceledger.testing.postgres.PostgresCluster`)
is started for the run and removed after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from faceledger.access import Role
from faceledger.bench.service import HEADER, Server, person_folders
from faceledger.config import load_config
from faceledger.db.url import parse_db
from faceledger.errors import ConfigError, FaceledgerError
from faceledger.operations import Acting, Operations

MAX_SECONDS = 600
MAX_PROCESSES = 8
"""At most this many servers, and this many CLI loops."""
MAX_CLIENTS = 8
"""Client threads per server."""
MAX_IDENTIFIES = 50
REQUEST_TIMEOUT = 60.0
READY_TIMEOUT = 180.0
"""Start-up of every process (imports, model loading) on a busy machine."""
FINISH_GRACE = 120.0
"""How long after the deadline a process may take to finish its last cycle."""
PROGRESS_EVERY = 10.0
PURPOSE = "shared-database benchmark (faceledger bench shared-db)"
LEGAL_BASIS = "shared-database benchmark: synthetic test subjects, erased within seconds"
STANDIN = {"FACELEDGER_EMBEDDER": "mobilefacenet", "FACELEDGER_FLIP": "0"}
"""Runs the `fast` profile where EdgeFace's source file is absent: MobileFaceNet (no flip)
in EdgeFace's place."""
CLI_MODE = "in-process loop (the faceledger command called repeatedly in one process)"
ACTIONS = ("subject.create", "enroll", "identify", "subject.delete")
SEQ_OPTIONAL: frozenset[str] = frozenset()
"""API answers that may come without ``ledger_seq`` (none: every answer names its entry)."""


# ---- options and results ------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    db: str | None = None
    """postgresql://user@host:port/name; None: a throw-away cluster for the run."""
    seconds: float = 60.0
    servers: int = 2
    cli_loops: int = 2
    clients: int = 2
    """Client threads per server."""
    identifies: int = 4
    """Identify requests (or commands) per enroll-identify-erase cycle."""
    profile: str | None = None
    """None: `fast` if its models load here (or its stand-in does), else `embedded`."""
    images: Path = Path("../shared/datasets/smoke/identities")
    """A folder of person folders: enrolled (the first photo of each) and searched."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """FACELEDGER_* settings for every process (model mirror, offline ...)."""

    def check(self) -> None:
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ConfigError(f"seconds: more than 0 and at most {MAX_SECONDS}, not {self.seconds}")
        for name, value in (("servers", self.servers), ("cli loops", self.cli_loops)):
            if not 0 <= value <= MAX_PROCESSES:
                raise ConfigError(f"{name}: 0 to {MAX_PROCESSES}, not {value}")
        if self.servers + self.cli_loops < 1:
            raise ConfigError("servers and cli loops: at least one process in all")
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise ConfigError(f"clients: 1 to {MAX_CLIENTS} per server, not {self.clients}")
        if not 0 <= self.identifies <= MAX_IDENTIFIES:
            raise ConfigError(f"identifies: 0 to {MAX_IDENTIFIES} per cycle, not {self.identifies}")
        if self.db is not None and parse_db(self.db).dialect != "postgresql":
            raise ConfigError(
                f"{parse_db(self.db).shown}: the shared-database benchmark needs a PostgreSQL "
                "database (postgresql://user@host:port/name), or no --db for a throw-away one"
            )
        if not self.images.is_dir():
            raise ConfigError(f"{self.images}: not a folder of person folders")


@dataclass(frozen=True)
class Process:
    """One of the processes sharing the database, and what it got done."""

    name: str
    kind: str
    """'api server' or 'cli loop'."""
    actor: str
    """Who its actions are recorded as: the API key holder's name, or the OS user."""
    seconds: float
    """From the start signal to its last answer."""
    actions: dict[str, int]
    """Answered (successful) requests or commands, by ledger action."""
    errors: dict[str, int]
    mean_ms: dict[str, float]
    error_samples: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.actions.values())

    @property
    def per_s(self) -> float:
        return round(self.answered / self.seconds, 2) if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class Tally:
    actor: str
    action: str
    answered: int
    """Successful requests/commands of this action by this actor, counted by the clients
    (the benchmark's own key changes included)."""
    entries: int
    """Ledger entries of this action and actor written during the run."""

    @property
    def ok(self) -> bool:
        return self.answered == self.entries


@dataclass(frozen=True)
class LedgerCheck:
    before: int
    """Entries in the ledger before the run (the run's are numbered after them)."""
    entries: int
    """Entries written during the run."""
    by_action: dict[str, int]
    tallies: list[Tally]
    seqs_returned: int
    """ledger_seq values carried by API answers."""
    seqs_distinct: bool
    seqs_in_ledger: bool
    """Each returned ledger_seq is an entry of the same action and actor."""
    seqs_missing: dict[str, int]
    """Successful API answers without a ledger_seq, by action."""
    seqs_unique: bool
    """No sequence number is used twice in the ledger."""
    seqs_contiguous: bool
    """The run's entries are numbered before+1, before+2, ... with no gap."""
    chain_ok: bool
    chain: str

    @property
    def counts_ok(self) -> bool:
        return all(t.ok for t in self.tallies)

    @property
    def ok(self) -> bool:
        return (
            self.counts_ok
            and self.seqs_distinct
            and self.seqs_in_ledger
            and not (set(self.seqs_missing) - SEQ_OPTIONAL)
            and self.seqs_unique
            and self.seqs_contiguous
            and self.chain_ok
        )


@dataclass(frozen=True)
class Result:
    db: str
    throwaway: bool
    """The database was a throw-away cluster started (and removed) by the run."""
    profile: str
    model: str
    models_note: str
    cli_mode: str
    seconds: float
    """From the start signal to the last process's last answer."""
    servers: int
    cli_loops: int
    clients: int
    identifies: int
    cores: int | None
    processes: list[Process]
    ledger: LedgerCheck
    logs: dict[str, str] = field(default_factory=dict)
    """The end of each process's output, when anything went wrong."""

    @property
    def answered(self) -> int:
        return sum(p.answered for p in self.processes)

    @property
    def per_s(self) -> float:
        return round(self.answered / self.seconds, 2) if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(p.error_count for p in self.processes)

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and self.ledger.ok

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for doc, proc in zip(out["processes"], self.processes, strict=True):
            doc.update(answered=proc.answered, per_s=proc.per_s, error_count=proc.error_count)
        for doc, tally in zip(out["ledger"]["tallies"], self.ledger.tallies, strict=True):
            doc["ok"] = tally.ok
        out["ledger"].update(counts_ok=self.ledger.counts_ok, ok=self.ledger.ok)
        out.update(
            answered=self.answered, per_s=self.per_s, error_count=self.error_count, ok=self.ok
        )
        return out


# ---- the run ------------------------------------------------------------------------------


Say = Callable[[str], None]


def run(options: Options, say: Say = lambda _: None) -> Result:
    """Start, load, stop, check. ``say`` hears progress lines."""
    options.check()
    people = person_folders(options.images)
    with contextlib.ExitStack() as stack:
        db = options.db
        if db is None:
            db = stack.enter_context(throwaway_database(say))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faceledger-shared-")))
        models = choose_models(options, say)
        env = {**options.settings, **models.settings, "FACELEDGER_DB": db}
        bench = _Run(options, db=db, env=env, models=models, people=people, tmp=tmp, say=say)
        return bench.go(throwaway=options.db is None)
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: ExitStack may swallow)


@contextlib.contextmanager
def throwaway_database(say: Say) -> Iterator[str]:
    """A fresh database on a throw-away PostgreSQL cluster, removed afterwards."""
    from faceledger.testing.postgres import PostgresCluster, unavailable

    reason = unavailable()
    if reason is not None:
        raise ConfigError(f"no --db given, and a throw-away PostgreSQL cannot run here: {reason}")
    cluster = PostgresCluster()
    try:
        cluster.start()
    except RuntimeError as exc:
        raise ConfigError(
            f"no --db given, and a throw-away PostgreSQL did not start: {exc}"
        ) from exc
    try:
        url = cluster.create_database("faceledger_shared_bench")
        say(f"no --db: started a throw-away PostgreSQL server, database {url} (removed after)")
        yield url
    finally:
        cluster.stop()


@dataclass(frozen=True)
class Models:
    profile: str
    model: str
    settings: dict[str, str]
    note: str


def choose_models(options: Options, say: Say) -> Models:
    """The first model set that loads in a fresh process with these settings: the profile
    asked for (default `fast`), then its stand-in (MobileFaceNet), then `embedded`."""
    wanted = options.profile or "fast"
    tries: list[tuple[str, dict[str, str], str]] = [(wanted, {}, "")]
    own_models = any(k in options.settings for k in ("FACELEDGER_EMBEDDER", "FACELEDGER_FLIP"))
    if wanted in ("fast", "accurate") and not own_models:
        tries.append((wanted, dict(STANDIN), "stand-in: MobileFaceNet (no flip) for EdgeFace"))
    if options.profile is None:
        tries.append(("embedded", {}, ""))
    failures: list[str] = []
    for profile, extra, note in tries:
        settings = {"FACELEDGER_PROFILE": profile, **extra}
        model, problem = probe({**options.settings, **settings})
        if model is not None:
            shown = "; ".join(filter(None, [note, *failures]))
            say(f"models: profile {profile}, {model}" + (f" ({shown})" if shown else ""))
            return Models(profile, model, settings, shown)
        failures.append(f"{profile}{' ' + note if note else ''} did not load: {problem}")
    raise ConfigError("no model set loads here:\n" + "\n".join(failures))


_PROBE = (
    "import json; from faceledger.config import load_config; from faceledger.engine import "
    "Engine; e = Engine(load_config()); e.load(); print(json.dumps(e.model_id))"
)


def probe(settings: Mapping[str, str]) -> tuple[str | None, str]:
    """(model id, '') if the models load in a fresh process with ``settings``, else
    (None, why not): what the servers and loops will see, not this process's state."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
        check=False,
    )
    if done.returncode == 0:
        return str(json.loads(done.stdout.strip().splitlines()[-1])), ""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    if not lines:
        return None, f"exit {done.returncode}"
    reason = re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])  # the message, not its class
    return None, reason if len(reason) <= 120 else reason[:119] + "…"


def operations(db: str) -> Operations:
    """The gallery's operations, no model loaded (keys and the ledger need none)."""
    return Operations(load_config(db=db))


class _Tally:
    """What one process got done, added to by its client threads."""

    def __init__(self) -> None:
        self.actions: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.ms: dict[str, float] = {}
        self.seqs: list[tuple[int, str]] = []
        self.seqs_missing: Counter[str] = Counter()
        self.samples: list[str] = []
        self.last = 0.0
        self._lock = threading.Lock()

    def answered(self, action: str, ms: float, seq: int | None) -> None:
        with self._lock:
            self.actions[action] += 1
            self.ms[action] = self.ms.get(action, 0.0) + ms
            if seq is None:
                self.seqs_missing[action] += 1
            else:
                self.seqs.append((seq, action))
            self.last = time.monotonic()

    def failed(self, action: str, what: str, sample: str) -> None:
        with self._lock:
            self.errors[f"{action}: {what}"] += 1
            if len(self.samples) < 5:
                self.samples.append(f"{action}: {sample}"[:500])
            self.last = time.monotonic()

    def total(self) -> tuple[int, int]:
        with self._lock:
            return sum(self.actions.values()), sum(self.errors.values())


@dataclass
class _Loop:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    ready: Path
    result: Path

    def read(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(self.result.read_text())
        except (OSError, ValueError):
            return None
        return doc


@dataclass(frozen=True)
class _Collected:
    processes: list[Process]
    window: float
    returned: list[tuple[int, str, str]]
    """(ledger_seq, actor, action) of every API answer that carried one."""
    missing: dict[str, int]
    logs: dict[str, str]


class _Run:
    def __init__(
        self,
        options: Options,
        *,
        db: str,
        env: Mapping[str, str],
        models: Models,
        people: Mapping[str, list[Path]],
        tmp: Path,
        say: Say,
    ) -> None:
        self.options = options
        self.db = db
        self.env = dict(env)
        self.models = models
        self.tmp = tmp
        self.say = say
        self.tag = f"shared-{secrets.token_hex(3)}"
        """Names this run's key holders and subjects."""
        self.me = Acting.os_user(purpose=PURPOSE)
        self.own: Counter[tuple[str, str]] = Counter()
        """The benchmark's own recorded actions (its keys), by (actor, action)."""
        self.enroll_photos = [files[0] for files in people.values()]
        rest = [files[1:] or files for files in people.values()]
        self.query_photos = [
            files[i] for i in range(max(map(len, rest))) for files in rest if i < len(files)
        ][:64]

    # -- the whole run ----------------------------------------------------------------------

    def go(self, *, throwaway: bool) -> Result:
        with operations(self.db) as ops:
            before = ops.audit_verify()
            head = ops.audit_head()
            name = ops.db_name
        if not before.ok:
            raise FaceledgerError(
                f"{name}: the ledger does not verify before the run: {before.reason}"
            )
        started_at = datetime.now(timezone.utc)
        keys = [self._make_keys(f"{self.tag}-api{i}") for i in range(self.options.servers)]
        try:
            got = self._load(keys)
        finally:
            self._revoke(keys)
        processes = got.processes
        check = self._check(
            before=before.entries,
            head=head,
            started_at=started_at,
            processes=processes,
            returned=got.returned,
            missing=got.missing,
        )
        failed = sum(p.error_count for p in processes) > 0 or not check.ok
        return Result(
            db=name,
            throwaway=throwaway,
            profile=self.models.profile,
            model=self.models.model,
            models_note=self.models.note,
            cli_mode=CLI_MODE,
            seconds=round(got.window, 2),
            servers=self.options.servers,
            cli_loops=self.options.cli_loops,
            clients=self.options.clients,
            identifies=self.options.identifies,
            cores=os.cpu_count(),
            processes=processes,
            ledger=check,
            logs=got.logs if failed else {},
        )

    def _load(self, keys: list[tuple[str, dict[Role, str]]]) -> _Collected:
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(self._server(i)) for i in range(len(keys))]
            loops = [stack.enter_context(self._loop(i)) for i in range(self.options.cli_loops)]
            for i, server in enumerate(servers):
                health = server.wait_ready(keys[i][1][Role.operator], READY_TIMEOUT)
                if health.get("model") != self.models.model:
                    raise FaceledgerError(
                        f"api-{i} serves {health.get('model')}, not {self.models.model}"
                    )
                self.say(f"api-{i}: ready on {server.url}")
            loop_actors = [self._wait_loop(loop) for loop in loops]
            tallies, window = self._timed(servers, keys, loops)
            died = [i for i, s in enumerate(servers) if not s.running]
            for server in servers:
                server.stop()
            processes: list[Process] = []
            returned: list[tuple[int, str, str]] = []
            missing: Counter[str] = Counter()
            for i, (tally, window_s) in enumerate(tallies):
                actor = keys[i][0]
                if i in died:
                    tally.failed("server", "exited during the run", servers[i].log_tail(5))
                processes.append(_process(f"api-{i}", "api server", actor, window_s, tally))
                returned.extend((seq, actor, action) for seq, action in tally.seqs)
                missing.update(tally.seqs_missing)
            for loop, actor in zip(loops, loop_actors, strict=True):
                processes.append(self._loop_process(loop, actor))
            logs = {f"api-{i}": s.log_tail() for i, s in enumerate(servers)}
            logs.update({loop.name: _tail(loop.log) for loop in loops})
        return _Collected(processes, window, returned, dict(missing), logs)

    # -- the timed window -------------------------------------------------------------------

    def _timed(
        self,
        servers: Sequence[Server],
        keys: Sequence[tuple[str, dict[Role, str]]],
        loops: Sequence[_Loop],
    ) -> tuple[list[tuple[_Tally, float]], float]:
        seconds = self.options.seconds
        start = time.monotonic()
        deadline = start + seconds
        wall_deadline = time.time() + seconds
        for loop in loops:
            assert loop.process.stdin is not None
            loop.process.stdin.write(f"{wall_deadline!r}\n".encode())
            loop.process.stdin.close()
        tallies = [_Tally() for _ in servers]
        threads = [
            threading.Thread(
                target=self._client,
                kwargs={
                    "url": server.url,
                    "tokens": keys[i][1],
                    "tally": tallies[i],
                    "prefix": f"{self.tag}-api{i}c{c}",
                    "first": c,
                    "deadline": deadline,
                },
                name=f"shared-bench-api{i}-c{c}",
                daemon=True,
            )
            for i, server in enumerate(servers)
            for c in range(self.options.clients)
        ]
        for thread in threads:
            thread.start()
        self.say(
            f"{len(servers)} servers ({self.options.clients} clients each) and {len(loops)} CLI "
            f"loops for {seconds:g} s"
        )
        end_by = deadline + FINISH_GRACE
        shown = start
        while time.monotonic() < end_by and (
            any(t.is_alive() for t in threads) or any(lp.process.poll() is None for lp in loops)
        ):
            time.sleep(0.25)
            if time.monotonic() - shown >= PROGRESS_EVERY:
                shown = time.monotonic()
                self.say(self._progress(shown - start, tallies, loops))
        for i, thread in enumerate(threads):
            if thread.is_alive():  # a request still waiting after the grace
                tallies[i // self.options.clients].failed("client", "stuck", thread.name)
        for loop in loops:
            if loop.process.poll() is None:
                loop.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                loop.process.wait(10)
        ends = [t.last for t in tallies if t.last] + [
            start + float(doc.get("seconds", 0.0))
            for doc in (loop.read() for loop in loops)
            if doc is not None
        ]
        window = max([*ends, deadline]) - start
        return [(t, (t.last or deadline) - start) for t in tallies], window

    def _progress(self, elapsed: float, tallies: Sequence[_Tally], loops: Sequence[_Loop]) -> str:
        parts = []
        for i, tally in enumerate(tallies):
            done, bad = tally.total()
            parts.append(f"api-{i} {done}" + (f" ({bad} errors)" if bad else ""))
        for loop in loops:
            doc = loop.read() or {}
            done = sum(doc.get("actions", {}).values())
            bad = sum(doc.get("errors", {}).values())
            parts.append(f"{loop.name} {done}" + (f" ({bad} errors)" if bad else ""))
        return f"{elapsed:.0f} s: " + ", ".join(parts)

    def _client(
        self,
        *,
        url: str,
        tokens: Mapping[Role, str],
        tally: _Tally,
        prefix: str,
        first: int,
        deadline: float,
    ) -> None:
        headers = {HEADER: tokens[Role.enroller]}
        search = {HEADER: tokens[Role.operator]}
        photos = [(p.name, p.read_bytes()) for p in self.enroll_photos]
        queries = [(p.name, p.read_bytes()) for p in self.query_photos]
        n = first * 7  # clients start at different photos
        cycle = 0
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
            call = _Caller(client, tally)
            while time.monotonic() < deadline and not call.gone:
                name = f"{prefix}-{cycle}"
                photo = photos[(first + cycle) % len(photos)]
                cycle += 1
                body = {"name": name, "legal_basis": LEGAL_BASIS}
                if not call("subject.create", 201, "POST", "/v1/subjects", headers, json=body):
                    continue
                enrolled = call(
                    "enroll", 201, "POST", f"/v1/subjects/{name}/templates", headers,
                    files={"images": photo}, data={"largest": "true"},
                )  # fmt: skip
                for _ in range(self.options.identifies if enrolled else 0):
                    if time.monotonic() >= deadline or call.gone:
                        break
                    query = queries[n % len(queries)]
                    n += 1
                    call(
                        "identify", 200, "POST", "/v1/identify", search,
                        files={"image": query}, data={"purpose": PURPOSE},
                    )  # fmt: skip
                if not call.gone:  # erase what was made, even past the deadline
                    call("subject.delete", 200, "DELETE", f"/v1/subjects/{name}", headers)

    # -- processes --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _server(self, i: int) -> Iterator[Server]:
        command = [sys.executable, "-m", "faceledger", "serve", "--db", self.db]
        server = Server(self.env, self.tmp / f"api-{i}.log", command=command)
        with server:
            self.say(f"api-{i}: starting `faceledger serve` on {server.url}")
            yield server

    @contextlib.contextmanager
    def _loop(self, i: int) -> Iterator[_Loop]:
        name = f"cli-{i}"
        spec: dict[str, Any] = {
            "db": self.db,
            "prefix": f"{self.tag}-cli{i}",
            "first": i,
            "identifies": self.options.identifies,
            "enroll": [str(p) for p in self.enroll_photos],
            "queries": [str(p) for p in self.query_photos],
            "ready": str(self.tmp / f"{name}.ready"),
            "result": str(self.tmp / f"{name}.json"),
        }
        spec_file = self.tmp / f"{name}.spec.json"
        spec_file.write_text(json.dumps(spec))
        log = self.tmp / f"{name}.log"
        # one inference thread per command, as `faceledger serve` uses per request
        env = {**os.environ, "FACELEDGER_THREADS": "1", **self.env}
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _LOOP_MAIN, str(spec_file)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        loop = _Loop(name, process, log, Path(spec["ready"]), Path(spec["result"]))
        self.say(f"{name}: starting a CLI loop (pid {process.pid})")
        try:
            yield loop
        finally:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    def _wait_loop(self, loop: _Loop) -> str:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if loop.ready.is_file():
                actor = str(json.loads(loop.ready.read_text())["actor"])
                self.say(f"{loop.name}: ready, acting as the OS user {actor!r}")
                return actor
            if loop.process.poll() is not None:
                raise FaceledgerError(f"{loop.name} exited at start-up:\n{_tail(loop.log)}")
            time.sleep(0.2)
        raise FaceledgerError(f"{loop.name} was not ready in {READY_TIMEOUT:.0f} s")

    def _loop_process(self, loop: _Loop, actor: str) -> Process:
        doc = loop.read()
        if doc is None or not doc.get("done"):
            doc = doc or {}
            errors = Counter(doc.get("errors", {}))
            errors[f"process: exited {loop.process.returncode} before finishing"] += 1
            doc["errors"] = dict(errors)
        elif loop.process.returncode != 0:
            doc["errors"] = {
                **doc.get("errors", {}),
                f"process: exit {loop.process.returncode}": 1,
            }
        actions = {k: int(v) for k, v in doc.get("actions", {}).items()}
        ms = doc.get("ms", {})
        return Process(
            name=loop.name,
            kind="cli loop",
            actor=str(doc.get("actor", actor)),
            seconds=round(float(doc.get("seconds", 0.0)), 2),
            actions=_ordered(actions),
            errors=dict(sorted(doc.get("errors", {}).items())),
            mean_ms={a: round(ms[a] / n, 1) for a, n in _ordered(actions).items() if n and a in ms},
            error_samples=list(doc.get("samples", [])),
        )

    # -- keys and the check -----------------------------------------------------------------

    def _make_keys(self, holder: str) -> tuple[str, dict[Role, str]]:
        """An enroller and an operator key held by ``holder`` (one actor for the server)."""
        with operations(self.db) as ops:
            tokens = {
                role: ops.create_key(self.me, holder, role).value[0]
                for role in (Role.enroller, Role.operator)
            }
        self.own[(self.me.actor, "key.create")] += len(tokens)
        return holder, tokens

    def _revoke(self, keys: Sequence[tuple[str, Mapping[Role, str]]]) -> None:
        with operations(self.db) as ops:
            for _holder, tokens in keys:
                for token in tokens.values():
                    key = ops.authenticate(token)
                    if key is not None:
                        ops.revoke_key(self.me, key.id)
                        self.own[(self.me.actor, "key.revoke")] += 1

    def _check(
        self,
        *,
        before: int,
        head: str,
        started_at: datetime,
        processes: Sequence[Process],
        returned: Sequence[tuple[int, str, str]],
        missing: Mapping[str, int],
    ) -> LedgerCheck:
        with operations(self.db) as ops:
            since = started_at - timedelta(minutes=5)  # a margin for clock steps
            entries = [e for e in ops.audit_entries(since=since) if e.seq > before]
            report = ops.audit_verify(expected_head=head)
        expected = Counter(self.own)
        for proc in processes:
            for action, count in proc.actions.items():
                expected[(proc.actor, action)] += count
        recorded = Counter((e.actor, e.action) for e in entries)
        tallies = [
            Tally(actor, action, expected[(actor, action)], recorded[(actor, action)])
            for actor, action in sorted(set(expected) | set(recorded))
        ]
        by_seq = {e.seq: e for e in entries}
        seqs = [e.seq for e in entries]
        answered_seqs = [seq for seq, _, _ in returned]
        return LedgerCheck(
            before=before,
            entries=len(entries),
            by_action=_ordered(dict(Counter(e.action for e in entries))),
            tallies=tallies,
            seqs_returned=len(answered_seqs),
            seqs_distinct=len(set(answered_seqs)) == len(answered_seqs),
            seqs_in_ledger=all(
                seq in by_seq and (by_seq[seq].actor, by_seq[seq].action) == (actor, action)
                for seq, actor, action in returned
            ),
            seqs_missing=_ordered(missing),
            seqs_unique=len(set(seqs)) == len(seqs),
            seqs_contiguous=sorted(seqs) == list(range(before + 1, before + 1 + len(seqs))),
            chain_ok=report.ok,
            chain=report.reason,
        )


class _Caller:
    """One HTTP call, timed and tallied: True when it got the expected status."""

    def __init__(self, client: httpx.Client, tally: _Tally) -> None:
        self.client = client
        self.tally = tally
        self.gone = False
        """The server stopped answering: the client stops."""

    def __call__(
        self,
        action: str,
        status: int,
        method: str,
        path: str,
        headers: Mapping[str, str],
        **kwargs: Any,
    ) -> bool:
        started = time.perf_counter()
        try:
            answer = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            self.gone = True
            self.tally.failed(action, type(exc).__name__, f"{method} {path}: {exc}")
            return False
        ms = (time.perf_counter() - started) * 1e3
        if answer.status_code != status:
            self.tally.failed(
                action, f"HTTP {answer.status_code}", f"{method} {path}: {answer.text}"
            )
            return False
        seq = answer.json().get("ledger_seq")
        self.tally.answered(action, ms, seq if isinstance(seq, int) else None)
        return True


def _process(name: str, kind: str, actor: str, seconds: float, tally: _Tally) -> Process:
    actions = _ordered(dict(tally.actions))
    return Process(
        name=name,
        kind=kind,
        actor=actor,
        seconds=round(seconds, 2),
        actions=actions,
        errors=dict(sorted(tally.errors.items())),
        mean_ms={a: round(tally.ms[a] / n, 1) for a, n in actions.items() if n},
        error_samples=list(tally.samples),
    )


def _ordered(counts: Mapping[str, int]) -> dict[str, int]:
    """The benchmark's actions first, in cycle order, then any other."""
    rank = {a: i for i, a in enumerate(ACTIONS)}
    return dict(sorted(counts.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---- the CLI loop (runs in its own process) -------------------------------------------------

_LOOP_MAIN = "import sys; from faceledger.bench.shared import cli_loop; cli_loop(sys.argv[1])"


def cli_loop(spec_file: str) -> None:
    """The body of one CLI loop process: ``faceledger`` commands, in-process, one at a time,
    until the deadline read from stdin; counts written to the spec's result file."""
    spec: dict[str, Any] = json.loads(Path(spec_file).read_text())
    from faceledger.cli.main import app  # every command registered, imported once

    actor = Acting.os_user().actor
    Path(spec["ready"]).write_text(json.dumps({"actor": actor, "pid": os.getpid()}))
    deadline = float(sys.stdin.readline())
    began = time.monotonic()
    state: dict[str, Any] = {
        "actor": actor,
        "actions": Counter(),
        "errors": Counter(),
        "ms": Counter(),
        "samples": [],
        "seconds": 0.0,
        "done": False,
    }

    def command(action: str, *args: str) -> bool:
        started = time.perf_counter()
        try:
            code = app([*args, "--db", spec["db"]], standalone_mode=False)
        except SystemExit as exc:  # pragma: no cover  (standalone_mode=False returns codes)
            code = exc.code
        except Exception as exc:  # everything is counted; the loop goes on
            state["errors"][f"{action}: {type(exc).__name__}"] += 1
            if len(state["samples"]) < 5:
                state["samples"].append(f"{action}: {exc}"[:500])
            return False
        finally:
            state["seconds"] = time.monotonic() - began
        if code not in (None, 0):
            state["errors"][f"{action}: exit {code}"] += 1
            return False
        state["actions"][action] += 1
        state["ms"][action] += (time.perf_counter() - started) * 1e3
        return True

    enroll, queries = spec["enroll"], spec["queries"]
    first, cycle, n = int(spec["first"]), 0, int(spec["first"]) * 7
    written = time.monotonic()
    while time.time() < deadline:
        name = f"{spec['prefix']}-{cycle}"
        photo = enroll[(first + cycle) % len(enroll)]
        cycle += 1
        if command("enroll", "enroll", photo, "--name", name, "--basis", LEGAL_BASIS,
                   "--largest", "--json"):  # fmt: skip
            for _ in range(int(spec["identifies"])):
                if time.time() >= deadline:
                    break
                command("identify", "identify", queries[n % len(queries)], "--json",
                        "--purpose", PURPOSE)  # fmt: skip
                n += 1
            command("subject.delete", "subjects", "remove", name, "--yes", "--json")
        if time.monotonic() - written >= 2.0:
            _write_json(Path(spec["result"]), state)
            written = time.monotonic()
    state["done"] = True
    _write_json(Path(spec["result"]), state)


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    part = path.with_suffix(".part")
    part.write_text(json.dumps(doc))
    os.replace(part, path)
