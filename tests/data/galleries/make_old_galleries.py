"""Make the old galleries in this folder with the old code itself (not collected by pytest).

Each ``vN.sql`` is a SQLite gallery that faceledger's own code, checked out at the commit
that introduced schema vN, created and filled: its ``Gallery`` and ``enroll`` (with its
``NewTemplate``), from v2 its ``EventStore.add`` and ``WebhookSink.send`` (one outbox row),
from v3 its ``Ledger.append``, and in v4 its ``KeyStore``, ``WatchLists`` and ``Reviews``.
The database is then dumped to SQL text (``sqlite3.Connection.iterdump``), and
``manifest.json`` records what each one holds, read back with plain ``sqlite3``.
``v4-from-v3.sql`` is a v3 gallery that the v4 code then opened (so upgraded) and filled.

Every value is synthetic: templates are random unit float32 vectors and every image (the
template crops, the event crops) is a tiny random-noise PNG, never a face. Clocks, random
generators and the API key's secret are fixed, so a rerun writes the same files.

Usage (from anywhere; the commits default to the ones below)::

    .venv/bin/python tests/data/galleries/make_old_galleries.py \\
        --v1 201a530 --v2 0760daf --v3 ab43f64 --v4 dc86966

Each commit's ``src`` is exported with ``git archive`` into a temporary folder and run in
a child process with that folder alone providing ``faceledger`` (the checkout's own
``src`` is taken off ``sys.path``; 201a530 has no ``faceledger/__init__.py``, so without
that the installed package would win). The venv must have the old code's dependencies
(numpy, SQLAlchemy, Pillow).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import itertools
import json
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEFAULT_COMMITS = {1: "201a530", 2: "0760daf", 3: "ab43f64", 4: "dc86966"}
DIM = 128
MODEL_ID = "synthetic_128"
"""Not a real embedder: the vectors are random."""
TOKEN_SECRET = "synthetic-test-key-not-a-secret"
MAX_SQL_BYTES = 200_000


# ---- the child: runs inside the old code ---------------------------------------------------


class FakeClock:
    """Fixed, strictly increasing time (one second a call) from ``start``."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment

    def text(self) -> str:
        """What the old ``gallery.store.now()`` returns, from this clock."""
        return self().isoformat(timespec="seconds")


@dataclass(frozen=True)
class FakeThreshold:
    value: float
    fmr: float


@dataclass(frozen=True)
class FakeMatch:
    subject: str | None
    score: float
    threshold: FakeThreshold


@dataclass(frozen=True)
class FakeDecision:
    """What ``EventStore.add`` reads of a ``video.scan.TrackDecision``."""

    source: str
    track_id: int
    first_t: float
    last_t: float
    best_crop: Any  # (h, w, 3) uint8
    match: FakeMatch


def old(module: str) -> Any:
    """A module of the old faceledger (in the child, the only one on sys.path); typed Any,
    since its API is the old one, not what this checkout's faceledger declares."""
    return importlib.import_module(module)


class Child:
    def __init__(self, level: int, db: Path, rng_seed: int) -> None:
        import numpy as np

        self.np = np
        self.level = level
        self.db = db
        self.rng = np.random.default_rng(rng_seed)
        self.clock = FakeClock(datetime(2026, 1, level, 9, 0, tzinfo=timezone.utc))
        self.report: dict[str, Any] = {"steps": []}

    def noise(self, size: int = 12) -> Any:
        return self.rng.integers(0, 256, size=(size, size, 3), dtype=self.np.uint8)

    def png(self, size: int = 12) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.noise(size)).save(buffer, format="PNG")
        return buffer.getvalue()

    def unit_vector(self) -> Any:
        vector = self.rng.standard_normal(DIM).astype(self.np.float32)
        return vector / self.np.linalg.norm(vector)

    # ---- steps, one per schema version ----

    def gallery(self) -> Any:
        return old("faceledger.gallery.store").Gallery(self.db)

    def enroll(self, gallery: Any) -> None:
        NewTemplate = old("faceledger.gallery.store").NewTemplate

        plan = [("ada", "consent", 3), ("grace", "contract", 2), ("linus", "consent", 2)]
        for name, basis, count in plan:
            new = []
            for i in range(count):
                png = self.png()
                new.append(
                    NewTemplate(
                        embedding=self.unit_vector(),
                        model_id=MODEL_ID,
                        source_name=f"{name}-{i}.png",
                        source_sha256=hashlib.sha256(png).hexdigest(),
                        quality=round(float(self.rng.uniform(0.5, 1.0)), 4),
                        det_score=round(float(self.rng.uniform(0.8, 1.0)), 4),
                        crop_png=png,
                        crop_geometry={"box": [1.0, 1.0, 11.0, 11.0], "landmarks": []},
                    )
                )
            gallery.enroll(name, basis, new[:-1])
            gallery.enroll(name, None, new[-1:])  # a second enrollment into the same subject
        self.report["steps"].append("enroll")

    def events(self, gallery: Any) -> None:
        EventStore = old("faceledger.events.store").EventStore
        store = EventStore(gallery, clock=self.clock)
        threshold = FakeThreshold(0.5, 1e-3)
        known = FakeDecision(
            "door.mp4", 1, 1.25, 4.5, self.noise(), FakeMatch("ada", 0.8, threshold)
        )
        unknown = FakeDecision(
            "door.mp4", 2, 5.0, 7.0, self.noise(), FakeMatch(None, 0.3, threshold)
        )
        kept = FakeDecision("lobby.mp4", 1, 0.5, 2.0, self.noise(), FakeMatch(None, 0.2, threshold))
        ids = [
            store.add(known, "door", MODEL_ID, started_at=self.clock()),
            store.add(unknown, "door", MODEL_ID),
            store.add(kept, None, MODEL_ID, keep_unknown=timedelta(days=7)),
        ]
        self.report["event_ids"] = ids
        self.outbox(gallery, ids[0])
        self.report["steps"].append("events")

    def outbox(self, gallery: Any, event_id: int) -> None:
        """One outbox row through ``WebhookSink.send``, without starting its delivery thread."""
        WebhookSink = old("faceledger.events.sinks").WebhookSink
        EventStore = old("faceledger.events.store").EventStore

        sink = object.__new__(WebhookSink)
        sink.name = sink.url = "http://hooks.invalid/faceledger"
        sink.label = sink.name
        sink.engine = gallery.engine
        sink.clock = self.clock
        sink.max_outbox = 10_000
        sink.dropped = 0
        sink._wake = threading.Event()
        sink.send(EventStore(gallery).get(event_id).as_json())

    def ledger(self, gallery: Any) -> None:
        Ledger = old("faceledger.ledger.chain").Ledger

        ledger = Ledger(gallery, clock=self.clock, gallery="synthetic-gallery")
        digest = hashlib.sha256(b"synthetic probe").hexdigest()
        entries = [
            ledger.append(
                "cli:alice",
                "operator",
                "enroll",
                result={"subject": "ada"},
                inputs=[digest],
                model=MODEL_ID,
            ),
            ledger.append(
                "cli:alice",
                "operator",
                "identify",
                purpose="investigation",
                case_ref="CASE-1",
                inputs=[digest],
                result={"matches": [{"subject": "ada", "score": 0.81}]},
                model=MODEL_ID,
            ),
            ledger.append(
                "cli:bob",
                "operator",
                "verify",
                purpose="access",
                inputs=[digest],
                result={"same": False, "score": 0.12},
                model=MODEL_ID,
            ),
            ledger.append(
                "cli:carol", "admin", "erase", result={"subject": "nobody", "templates": 0}
            ),
        ]
        self.report["ledger_head"] = entries[-1].hash
        self.report["steps"].append("ledger")

    def service(self, gallery: Any) -> None:
        access = old("faceledger.access")
        Reviews = old("faceledger.events.review").Reviews
        EventStore = old("faceledger.events.store").EventStore
        write_txn = old("faceledger.gallery.store").write_txn
        WatchLists = old("faceledger.gallery.watchlists").WatchLists

        serial = itertools.count(0xA0001)
        access.secrets = types.SimpleNamespace(
            token_hex=lambda n: f"{next(serial):0{2 * n}x}",
            token_urlsafe=lambda n: TOKEN_SECRET,
        )
        keys = access.KeyStore(gallery)
        token, key = keys.create("Synthetic Admin", access.Role.admin, "cli:setup")
        _, retired = keys.create("Old Reviewer", access.Role.reviewer, "cli:setup")
        keys.revoke(retired.id)
        lists = WatchLists(gallery)
        lists.create("door-two-person", two_person=True)
        lists.create("lobby-review", review=True)
        with write_txn(gallery.engine) as conn:
            lists.add(conn, "ada", ["door-two-person"])
            lists.add(conn, "grace", ["lobby-review", "door-two-person"])
            lists.add(conn, "linus", ["lobby-review"])
        store = EventStore(gallery, clock=self.clock)
        threshold = FakeThreshold(0.5, 1e-3)
        pending = store.add(
            FakeDecision("gate.mp4", 7, 0.0, 3.0, self.noise(), FakeMatch("ada", 0.9, threshold)),
            "gate",
            MODEL_ID,
        )
        confirmed = store.add(
            FakeDecision("gate.mp4", 8, 3.0, 6.0, self.noise(), FakeMatch("linus", 0.7, threshold)),
            "gate",
            MODEL_ID,
        )
        reviews = Reviews(gallery, clock=self.clock)
        reviews.decide(pending, "reviewer-1", "confirm", "looks like her")  # 1 of 2
        reviews.decide(confirmed, "reviewer-2", "confirm")
        self.report.update(key_prefix=key.id, key_token=token, review_events=[pending, confirmed])
        self.report["steps"].append("service")

    def run(self, steps: list[str]) -> dict[str, Any]:
        store_module = old("faceledger.gallery.store")

        fixed_now: Callable[[], str] = self.clock.text
        for module in list(sys.modules.values()):
            name = getattr(module, "__name__", "")
            if name.startswith("faceledger") and getattr(module, "now", None) is store_module.now:
                module.now = fixed_now  # type: ignore[attr-defined]
        store_module.now = fixed_now
        # modules that `from faceledger.gallery.store import now` later get the patched one
        gallery = self.gallery()
        try:
            for step in steps:
                getattr(self, step)(gallery)
        finally:
            gallery.close()
        self.report["schema_version"] = store_module.SCHEMA_VERSION
        self.report["code"] = str(Path(store_module.__file__).resolve())
        return self.report


def child_main(src: Path, level: int, db: Path, steps: list[str], seed: int) -> None:
    """Run ``steps`` with the faceledger in ``src`` (and no other) on the gallery ``db``."""
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "faceledger").exists()]
    sys.path.insert(0, str(src))
    where = Path(old("faceledger.gallery.store").__file__).resolve()
    if not where.is_relative_to(src.resolve()):
        raise SystemExit(f"imported {where}, not the code under {src}")
    report = Child(level, db, seed).run(steps)
    print(json.dumps(report))


# ---- the parent: exports the commits, runs the children, dumps and describes --------------

STEPS = {1: ["enroll"], 2: ["events"], 3: ["ledger"], 4: ["service"]}


def export(commit: str, into: Path) -> tuple[str, Path]:
    """``commit``'s src folder under ``into``; returns (full sha, src path)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", sha, "src"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    target = into / sha[:12]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return sha, target / "src"


def run_child(src: Path, level: int, db: Path, steps: list[str], seed: int) -> dict[str, Any]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", str(src), "--level", str(level),
        "--db", str(db), "--seed", str(seed), "--steps", ",".join(steps),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=src.parent)
    if done.returncode != 0:
        raise SystemExit(f"the v{level} code failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump()) + "\n"


def _rows(conn: sqlite3.Connection, sql: str) -> Iterator[tuple[Any, ...]]:
    yield from conn.execute(sql)


def describe(sql: str) -> dict[str, Any]:
    """What the dumped gallery holds, read back from the SQL text with plain sqlite3."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(sql)
    tables = [r[0] for r in _rows(conn, "SELECT name FROM sqlite_master WHERE type='table' "
                                        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]  # fmt: skip
    out: dict[str, Any] = {
        "tables": {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables},
        "indexes": sorted(r[0] for r in _rows(conn, "SELECT name FROM sqlite_master "
                                                     "WHERE type='index' AND sql IS NOT NULL")),
        "triggers": sorted(r[0] for r in _rows(conn, "SELECT name FROM sqlite_master "
                                                      "WHERE type='trigger'")),
        "meta": dict(_rows(conn, "SELECT key, value FROM meta ORDER BY key")),
        "subjects": [r[0] for r in _rows(conn, "SELECT name FROM subjects ORDER BY id")],
        "template_embeddings_sha256": {
            str(i): hashlib.sha256(blob).hexdigest()
            for i, blob in _rows(conn, "SELECT id, embedding FROM templates ORDER BY id")
        },
    }  # fmt: skip
    out["templates"] = out["tables"]["templates"]
    if "events" in tables:
        columns = [r[1] for r in _rows(conn, "PRAGMA table_info(events)")]
        out["events"] = out["tables"]["events"]
        out["events_columns"] = columns
        if "review" in columns:
            out["event_reviews"] = {
                str(i): [review, needed]
                for i, review, needed in _rows(
                    conn, "SELECT id, review, reviews_needed FROM events ORDER BY id"
                )
            }
    if "ledger" in tables:
        out["ledger_entries"] = out["tables"]["ledger"]
        head = conn.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        out["ledger_head"] = head[0] if head else None
    if "api_keys" in tables:
        out["api_keys"] = [list(r) for r in _rows(conn, "SELECT prefix, role, name, revoked_at "
                                                        "FROM api_keys ORDER BY id")]  # fmt: skip
        out["watchlists"] = {
            name: [review, two, members.split(",") if members else []]
            for name, review, two, members in _rows(
                conn,
                """
                SELECT w.name, w.review, w.two_person, group_concat(s.name)
                FROM watchlists w LEFT JOIN watchlist_members m ON m.watchlist_id = w.id
                LEFT JOIN subjects s ON s.id = m.subject_id GROUP BY w.id ORDER BY w.name""",
            )
        }
        out["reviews"] = out["tables"]["reviews"]
    conn.close()
    return out


def build(
    name: str, plan: list[tuple[int, str, Path]], workdir: Path, out_dir: Path
) -> dict[str, Any]:
    """Run each (level, sha, src) of ``plan`` in turn on one new gallery; dump it."""
    db = workdir / f"{name}.db"
    made_by: list[dict[str, Any]] = []
    reports: dict[str, Any] = {}
    for level, sha, src in plan:
        steps = [s for n in range(1, level + 1) for s in STEPS[n]] if not made_by else STEPS[level]
        report = run_child(src, level, db, steps, seed=1000 * level + len(made_by))
        made_by.append({"commit": sha, "schema_version": report["schema_version"], "steps": steps})
        reports.update({k: v for k, v in report.items() if k not in ("steps", "code")})
    sql = dump(db)
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise SystemExit(f"{name}.sql would be {len(sql.encode())} bytes (> {MAX_SQL_BYTES})")
    (out_dir / f"{name}.sql").write_text(sql, encoding="utf-8")
    entry = {"file": f"{name}.sql", "made_by": made_by, **describe(sql)}
    for key in ("ledger_head", "key_prefix", "key_token", "event_ids", "review_events"):
        if key in reports:
            entry[f"reported_{key}"] = reports[key]
    if "reported_ledger_head" in entry and entry["reported_ledger_head"] != entry["ledger_head"]:
        raise SystemExit(f"{name}: the ledger head read back is not the one appended")
    print(f"{name}.sql: {len(sql.encode())} bytes, made by {[m['commit'][:7] for m in made_by]}")
    return entry


def parent_main(commits: dict[int, str], out_dir: Path) -> None:
    manifest: dict[str, Any] = {
        "about": "Galleries made by old faceledger code; see README.md and make_old_galleries.py",
        "model_id": MODEL_ID,
        "dim": DIM,
        "galleries": {},
    }
    with tempfile.TemporaryDirectory(prefix="faceledger-old-") as tmp:
        work = Path(tmp)
        sources = {level: export(commit, work) for level, commit in commits.items()}
        for level in sorted(sources):
            sha, src = sources[level]
            manifest["galleries"][f"v{level}"] = build(
                f"v{level}", [(level, sha, src)], work, out_dir
            )
        if 3 in sources and 4 in sources:
            plan = [(3, *sources[3]), (4, *sources[4])]
            manifest["galleries"]["v4-from-v3"] = build("v4-from-v3", plan, work, out_dir)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for level, commit in DEFAULT_COMMITS.items():
        parser.add_argument(f"--v{level}", default=commit, help=f"commit of schema v{level}")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the .sql files")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--level", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child_main(args.child, args.level, args.db, args.steps.split(","), args.seed)
        return
    commits = {level: getattr(args, f"v{level}") for level in DEFAULT_COMMITS}
    parent_main(commits, args.out)


if __name__ == "__main__":
    main()
