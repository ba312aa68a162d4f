"""Bulk commands on several workers: the same answers, in the same order, as one worker;
per-file failures reported and the batch going on; every answer recorded (one ledger
entry per image) with the chain intact. Real photos from the smoke set."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from support.clocks import Ticker
from typer.testing import CliRunner

from faceledger import engine as engine_module
from faceledger.cli.main import app
from faceledger.gallery import Gallery
from faceledger.ledger.chain import GENESIS, Ledger, LedgerRecord, entry_hash
from faceledger.runtime.pool import OrderedPool

runner = CliRunner()
IDS = "identities"
PEOPLE = ("fr_obama", "deepface_id00", "deepface_id02")


def run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def entries(db: Path, action: str) -> list[dict]:
    code, out, err = run("audit", "list", "--db", db, "--json", "--action", action)
    assert code == 0, err
    return lines(out)


@pytest.fixture
def known(smoke: Path, tmp_path: Path) -> Path:
    """Person folders: one photo each of three people."""
    root = tmp_path / "known"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        photo = sorted((smoke / IDS / person).iterdir())[0]
        shutil.copy(photo, root / person)
    return root


@pytest.fixture
def probes(smoke: Path, tmp_path: Path) -> Path:
    """Nine photos of those people (others than enrolled) with a corrupt file in the middle."""
    folder = tmp_path / "probes"
    folder.mkdir()
    photos = [p for person in PEOPLE for p in sorted((smoke / IDS / person).iterdir())[1:4]]
    for i, photo in enumerate(photos):
        shutil.copy(photo, folder / f"{i:02d}_{photo.name}")
    (folder / "04_corrupt.jpg").write_bytes(b"this is not a jpeg")
    return folder


def enrolled(known: Path, db: Path, *options: object) -> list[dict]:
    code, out, err = run("enroll", known, "--basis", "test consent", "--db", db, "--json", *options)
    assert code == 0, err
    return lines(out)


def same_answers(a: list[dict], b: list[dict]) -> None:
    """Same images in the same order, the same faces, names and scores (within 1e-5)."""
    assert [r["image"] for r in a] == [r["image"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["error"] == rb["error"]
        assert len(ra["faces"]) == len(rb["faces"])
        for fa, fb in zip(ra["faces"], rb["faces"], strict=True):
            assert fa.get("subject") == fb.get("subject")
            assert fa["box"] == pytest.approx(fb["box"], abs=1e-3)
            for key in ("score", "det_score"):
                if key in fa:
                    assert fa[key] == pytest.approx(fb[key], abs=1e-5)


def test_identify_on_two_workers_matches_one(known: Path, probes: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    enrolled(known, db, "--profile", "fast")
    answers = {}
    for workers in (1, 2):
        code, out, err = run(
            "identify", probes, "--db", db, "--profile", "fast", "--workers", workers, "--json"
        )
        assert code == 1, err  # the corrupt file
        assert "04_corrupt.jpg" in err and "not an image" in err
        answers[workers] = lines(out)
    same_answers(answers[1], answers[2])
    images = answers[2]
    assert len(images) == 10
    assert images[4]["image"].endswith("04_corrupt.jpg") and images[4]["error"]
    assert all(r["error"] is None for i, r in enumerate(images) if i != 4)  # the batch went on
    named = {f.get("subject") for r in images for f in r["faces"]}
    assert set(PEOPLE) <= named
    # one entry per image and run (the failure too), written in input order
    recorded = entries(db, "identify")
    assert len(recorded) == 20
    assert [e["result"].get("error") is not None for e in recorded[10:]] == [
        i == 4 for i in range(10)
    ]
    code, out, err = run("audit", "verify", "--db", db)
    assert code == 0, err + out


def test_enroll_and_detect_on_two_workers_match_one(
    known: Path, probes: Path, tmp_path: Path
) -> None:
    reports = {w: enrolled(known, tmp_path / f"w{w}.db", "--profile", "fast", "--workers", w)
               for w in (1, 2)}  # fmt: skip
    assert reports[1] == reports[2]
    assert [r["subject"] for r in reports[2]] == sorted(PEOPLE)
    templates = {}
    for w in (1, 2):
        code, out, _ = run("subjects", "list", "--db", tmp_path / f"w{w}.db", "--json")
        assert code == 0
        templates[w] = [(r["name"], r["templates"]) for r in lines(out)]
    assert templates[1] == templates[2]
    found = {}
    for w in (1, 2):
        db = tmp_path / f"w{w}.db"
        code, out, err = run("detect", probes, "--db", db, "-p", "fast", "--workers", w, "--json")
        assert code == 1 and "04_corrupt.jpg" in err
        found[w] = lines(out)
        assert len(entries(db, "detect")) == 10
    same_answers(found[1], found[2])


def test_detect_draw_on_two_workers(probes: Path, tmp_path: Path) -> None:
    drawn = tmp_path / "drawn"
    db = tmp_path / "g.db"
    code, _, err = run(
        "detect", probes, "--db", db, "-p", "fast", "--workers", "2", "--draw", drawn
    )
    assert code == 1, err
    assert len(list(drawn.iterdir())) == 9  # every readable photo, not the corrupt one


def test_reembed_on_two_workers_matches_one(known: Path, probes: Path, tmp_path: Path) -> None:
    first = tmp_path / "w1.db"
    enrolled(known, first, "--profile", "fast")
    second = tmp_path / "w2.db"
    shutil.copy(first, second)
    answers = {}
    for w, db in ((1, first), (2, second)):
        code, out, err = run("gallery", "reembed", "--db", db, "-p", "fast", "--workers", w)
        assert code == 0, err
        assert "re-embedded 3 templates" in out
        code, out, _ = run("identify", probes, "--db", db, "-p", "fast", "-j", "1", "--json")
        answers[w] = lines(out)
    same_answers(answers[1], answers[2])


def test_scan_of_several_files_in_order(smoke: Path, known: Path, tmp_path: Path) -> None:
    clip = smoke / "video" / "short_hamilton_clip.mp4"
    videos = [tmp_path / "a.mp4", tmp_path / "bad.mp4", tmp_path / "b.mp4"]
    shutil.copy(clip, videos[0])
    videos[1].write_bytes(b"not a video")
    shutil.copy(clip, videos[2])
    events = {}
    for w in (1, 2):
        db = tmp_path / f"s{w}.db"
        enrolled(known, db, "--profile", "fast")
        jsonl = tmp_path / f"s{w}.jsonl"
        code, _, err = run("scan", *videos, "-p", "fast", "--every", "5", "--db", db,
                           "--workers", w, "--jsonl", jsonl)  # fmt: skip
        assert code == 1 and "bad.mp4" in err
        events[w] = [json.loads(line) for line in jsonl.read_text().splitlines()]
        starts = entries(db, "scan.start")
        ends = entries(db, "scan.end")
        assert [e["result"]["source"] for e in starts] == [str(v) for v in videos]
        assert [e["result"]["source"] for e in ends] == [str(v) for v in videos]
        assert [e["result"].get("error") is not None for e in ends] == [False, True, False]
        code, out, err = run("audit", "verify", "--db", db)
        assert code == 0, err + out
    strip = [{k: v for k, v in e.items() if k != "id"} for e in events[1]]
    assert strip == [{k: v for k, v in e.items() if k != "id"} for e in events[2]]
    sources = [e["source"] for e in events[2]]
    first_b = sources.index(str(videos[2]))  # a's events, then b's
    assert first_b > 0 and set(sources[:first_b]) == {str(videos[0])}
    assert set(sources[first_b:]) == {str(videos[2])}


def test_embedded_profile_on_worker_processes(
    known: Path, probes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlib holds the GIL: its workers are processes (forced here for a few photos)."""
    monkeypatch.setattr(engine_module, "PROCESS_MIN_ITEMS", 1)
    answers, reports = {}, {}
    for w in (1, 2):
        db = tmp_path / f"e{w}.db"
        reports[w] = enrolled(known, db, "--workers", w)
        code, out, err = run("identify", probes, "--db", db, "--workers", w, "--json")
        assert code == 1 and "04_corrupt.jpg" in err
        answers[w] = lines(out)
        assert len(entries(db, "identify")) == 10
    assert reports[1] == reports[2]
    same_answers(answers[1], answers[2])
    assert any(f.get("subject") == "fr_obama" for r in answers[2] for f in r["faces"])


# ---- the pieces ---------------------------------------------------------------------------


def test_append_many_chains_as_one_at_a_time(db_url: str, tmp_path: Path) -> None:
    records = [LedgerRecord("ada", "cli", "identify", result={"faces": i}) for i in range(5)]
    with Gallery(tmp_path / "one.db") as g:
        one = Ledger(g, clock=Ticker(), gallery="g")
        singles = [one.append(r) for r in records]
    with Gallery(db_url) as g:
        many = Ledger(g, clock=Ticker(), gallery="g")
        batched = many.append_many(records[:2]) + many.append_many(records[2:])
        assert many.append_many([]) == []
        assert many.verify().ok
    assert [e.hash for e in batched] == [e.hash for e in singles]
    assert [e.seq for e in batched] == [1, 2, 3, 4, 5]
    assert batched[0].prev_hash == GENESIS
    assert all(entry_hash(e.as_json()) == e.hash for e in batched)


def _slow_square(state: dict, item: int) -> int:
    with state["lock"]:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
    time.sleep(0.002 * (item % 3))  # answers finish out of order
    with state["lock"]:
        state["now"] -= 1
    return item * item


def test_pool_answers_in_input_order_with_a_bounded_window() -> None:
    shared = {"lock": threading.Lock(), "now": 0, "most": 0}
    submitted: list[int] = []
    pool: OrderedPool[dict, int, int] = OrderedPool(lambda: shared, _slow_square, 3, window=5)

    def fed() -> object:
        for i in range(40):
            assert i - len(submitted) == 0
            yield i

    def on_submit(index: int, item: int) -> None:
        submitted.append(item)
        # never more than the window (5) ahead of what the caller has, and the batch (4)
        # being handed to it
        assert index - got_count() < 5 + 4

    got: list[int] = []

    def got_count() -> int:
        return len(got)

    for batch in pool.batches(fed(), 4, on_submit):
        assert 1 <= len(batch) <= 4
        got.extend(batch)
    assert got == [i * i for i in range(40)]
    assert submitted == list(range(40))
    assert shared["most"] <= 3


def test_pool_stopped_early_stops_its_workers() -> None:
    shared = {"lock": threading.Lock(), "now": 0, "most": 0}
    pool: OrderedPool[dict, int, int] = OrderedPool(lambda: shared, _slow_square, 2)
    answers = pool.map(range(1000))
    assert [next(answers) for _ in range(3)] == [0, 1, 4]
    answers.close()  # cancels what was not started, waits for what was
    assert shared["now"] == 0
