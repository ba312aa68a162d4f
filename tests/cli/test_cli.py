"""The command line against real photos and real temporary galleries (embedded profile)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.images import sha256_of

runner = CliRunner()
IDS = "identities"


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def ledger(db: Path | str, *args: str) -> list[dict]:
    code, out, err = run("audit", "list", "--db", db, "--json", *args)
    assert code == 0, err
    return lines(out)


@pytest.fixture
def known(smoke: Path, tmp_path: Path) -> Path:
    """A folder of person folders: Obama and Biden, one photo each."""
    root = tmp_path / "known"
    for person, photo in (
        ("obama", "fr_obama/face_recognition_obama.jpg"),
        ("biden", "fr_biden/face_recognition_biden.jpg"),
    ):
        (root / person).mkdir(parents=True)
        shutil.copy(smoke / IDS / photo, root / person)
    return root


@pytest.fixture
def gallery(known: Path, tmp_path: Path) -> Path:
    db = tmp_path / "g.db"
    code, _, err = run("enroll", known, "--basis", "signed consent, 2026-11", "--db", db)
    assert code == 0, err
    return db


def test_enroll_records_basis_and_subjects(gallery: Path) -> None:
    code, out, _ = run("subjects", "list", "--db", gallery, "--json")
    assert code == 0
    rows = {r["name"]: r for r in lines(out)}
    assert set(rows) == {"obama", "biden"}
    assert rows["obama"]["legal_basis"] == "signed consent, 2026-11"
    assert rows["obama"]["models"] == ["dlib_resnet128"]


def test_new_subject_without_basis_is_a_usage_error(known: Path, tmp_path: Path) -> None:
    code, _, err = run("enroll", known, "--db", tmp_path / "g.db")
    assert code == 2
    assert "--basis" in err


def test_reenrolling_adds_templates(gallery: Path, smoke: Path) -> None:
    photo = smoke / IDS / "fr_obama" / "face_recognition_obama2.jpg"
    code, _, err = run("enroll", "--name", "obama", photo, "--db", gallery)
    assert code == 0, err
    code, out, _ = run("subjects", "show", "obama", "--db", gallery, "--json")
    assert [t["source_name"] for t in lines(out)[0]["templates"]] == [
        "face_recognition_obama.jpg",
        "face_recognition_obama2.jpg",
    ]


def test_identify_json_and_batch_goes_on_after_bad_input(
    gallery: Path, smoke: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    probe = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    stranger = smoke / IDS / "fr_kit_harington" / "face_recognition_john1.jpeg"
    code, out, err = run(
        "identify", empty, probe, text, stranger, "--db", gallery, "--json", "--top", "2"
    )
    assert code == 1
    results = {Path(r["image"]).name: r for r in lines(out)}
    assert list(results) == [
        "empty.jpg",
        "face_recognition_obama1.jpg",
        "notes.jpg",
        "face_recognition_john1.jpeg",
    ]
    assert "empty" in results["empty.jpg"]["error"]
    assert "not an image" in results["notes.jpg"]["error"]
    face = results["face_recognition_obama1.jpg"]["faces"][0]
    assert face["subject"] == "obama" and face["score"] >= face["threshold"]
    assert [c["subject"] for c in face["candidates"]] == ["obama", "biden"]
    assert set(face) >= {"box", "det_score", "subject", "score", "threshold", "candidates"}
    assert all(f["subject"] is None for f in results["face_recognition_john1.jpeg"]["faces"])
    assert "empty.jpg" in err and "notes.jpg" in err


def test_identify_no_face_is_not_a_failure(gallery: Path, tmp_path: Path) -> None:
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    code, out, _ = run("identify", blank, "--db", gallery, "--json")
    assert code == 0
    assert lines(out) == [{"image": str(blank), "faces": [], "error": None}]


def test_identify_table_names_unknown_and_threshold(gallery: Path, smoke: Path) -> None:
    stranger = smoke / IDS / "fr_kit_harington" / "face_recognition_john1.jpeg"
    code, out, _ = run("identify", stranger, "--db", gallery)
    assert code == 0
    assert "unknown" in out
    assert "false-match rate" in out


def test_verify_same_and_different(smoke: Path) -> None:
    a = smoke / IDS / "fr_obama" / "face_recognition_obama.jpg"
    b = smoke / IDS / "fr_obama" / "face_recognition_obama2.jpg"
    c = smoke / IDS / "fr_biden" / "face_recognition_biden.jpg"
    code, out, _ = run("verify", a, b, "--json")
    assert code == 0 and lines(out)[0]["same"] is True
    code, out, _ = run("verify", a, c, "--json")
    assert code == 0 and lines(out)[0]["same"] is False


def test_verify_missing_file_names_it(smoke: Path, tmp_path: Path) -> None:
    a = smoke / IDS / "fr_obama" / "face_recognition_obama.jpg"
    code, _, err = run("verify", a, tmp_path / "nope.jpg")
    assert code == 1
    assert "nope.jpg" in err and "no such file" in err


def test_group_photo_needs_largest(smoke: Path, tmp_path: Path) -> None:
    group = smoke / "scenes" / "two_people.jpg"
    db = tmp_path / "g.db"
    code, _, err = run("enroll", "--name", "someone", group, "--basis", "test", "--db", db)
    assert code == 1
    assert "--largest" in err
    assert not db.exists() or run("subjects", "list", "--db", db, "--json")[1] == ""
    code, _, err = run(
        "enroll", "--name", "someone", group, "--basis", "test", "--db", db, "--largest"
    )
    assert code == 0, err


def test_detect_draws_annotated_copies(smoke: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "drawn"
    photo = smoke / "scenes" / "two_people.jpg"
    code, out, _ = run("detect", photo, "--draw", out_dir, "--json", "--db", tmp_path / "g.db")
    assert code == 0
    faces = lines(out)[0]["faces"]
    assert len(faces) == 2 and len(faces[0]["landmarks"]) == 5
    assert (out_dir / "two_people.png").is_file()


def test_detect_records_one_entry_per_image(smoke: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    two = smoke / "scenes" / "two_people.jpg"
    one = smoke / IDS / "fr_obama" / "face_recognition_obama.jpg"
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    code, out, err = run(
        "detect", two, bad, one, "--db", db, "--purpose", "crowd count", "--case", "C-7", "--json"
    )
    assert code == 1 and "notes.jpg" in err  # the bad image failed, the batch went on
    assert [len(r["faces"]) for r in lines(out)] == [2, 0, 1]
    found = ledger(db)
    assert [e["action"] for e in found] == ["detect", "detect", "detect"]
    assert [e["inputs"] for e in found] == [[sha256_of(two)], [sha256_of(bad)], [sha256_of(one)]]
    assert found[0]["result"] == {"faces": 2} and found[2]["result"] == {"faces": 1}
    assert set(found[1]["result"]) == {"error"} and "not an image" in found[1]["result"]["error"]
    assert {(e["purpose"], e["case_ref"], e["role"]) for e in found} == {
        ("crowd count", "C-7", "cli")
    }
    code, out, _ = run("audit", "verify", "--db", db)
    assert code == 0 and "3 entries verified" in out


def test_not_a_gallery_is_refused_and_left_alone(tmp_path: Path, smoke: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("my notes")
    code, _, err = run("identify", smoke / "scenes" / "couple.jpg", "--db", db)
    assert code == 1
    assert "notes.db" in err and "not a usable faceledger gallery" in err
    assert db.read_text() == "my notes"


def test_remove_subject(gallery: Path) -> None:
    code, out, _ = run("subjects", "remove", "biden", "--yes", "--db", gallery, "--json")
    assert code == 0 and lines(out) == [{"removed": "biden", "templates": 1}]
    code, _, err = run("subjects", "remove", "biden", "--yes", "--db", gallery)
    assert code == 1 and "no subject named 'biden'" in err


def test_postgresql_database_for_enroll_identify_and_audit(
    known: Path, smoke: Path, pg_url: str
) -> None:
    code, out, err = run("enroll", known, "--basis", "signed consent, 2026-11", "--db", pg_url)
    assert code == 0, err
    assert "postgresql://" in out
    probe = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    code, out, err = run("identify", probe, "--db", pg_url, "--purpose", "door", "--json")
    assert code == 0, err
    assert lines(out)[0]["faces"][0]["subject"] == "obama"
    code, out, _ = run("subjects", "list", "--db", pg_url, "--json")
    assert code == 0 and {r["name"] for r in lines(out)} == {"obama", "biden"}
    found = ledger(pg_url)
    assert [e["action"] for e in found] == ["enroll", "enroll", "identify"]
    assert found[2]["purpose"] == "door" and found[2]["inputs"] == [sha256_of(probe)]
    assert found[2]["gallery"].startswith("postgresql://")
    code, out, err = run("audit", "verify", "--db", pg_url, "--json")
    assert code == 0, err
    report = lines(out)[0]
    assert report["ok"] is True and report["entries"] == 3 and report["head"] == found[2]["hash"]


@pytest.mark.parametrize(
    "command",
    [
        ("enroll", "KNOWN", "--basis", "consent"),
        ("identify", "PHOTO"),
        ("verify", "PHOTO", "PHOTO"),
        ("detect", "PHOTO"),
        ("subjects", "list"),
        ("audit", "verify"),
        ("keys", "create", "--role", "admin", "--name", "x"),
        ("events", "list"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_an_unsupported_database_is_a_usage_error(
    command: tuple[str, ...], known: Path, smoke: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    photo = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    given = [{"KNOWN": str(known), "PHOTO": str(photo)}.get(a, a) for a in command]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = run(*given, "--db", "mysql://x/y")
    assert code == 2, err
    assert "cannot use 'mysql' databases" in err and "postgresql://" in err
    assert "Traceback" not in err and out == ""
    assert list(work.iterdir()) == []  # no file, no folder (not even 'mysql:')


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/faceledger"  # nothing listens on port 1
    code, out, err = run("keys", "list", "--db", url)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "busy" in err and "cannot reach the server" in err and "Traceback" not in err


def test_a_locked_gallery_is_one_line_and_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    assert run("watchlists", "create", "vip", "--db", db)[0] == 0
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock (5 s timeout)
        code, _, err = run("keys", "create", "--role", "auditor", "--name", "x", "--db", db)
    finally:
        holder.rollback()
        holder.close()
    assert code == 1
    assert err.count("\n") == 1 and "locked by another writer" in err
    assert "Traceback" not in err
    assert [e["action"] for e in ledger(db)] == ["watchlist.create"]  # nothing half-done


def test_unknown_profile_is_a_usage_error(smoke: Path) -> None:
    code, _, err = run("detect", smoke / "scenes" / "couple.jpg", "--profile", "turbo")
    assert code == 2
    assert "embedded, fast, accurate" in err


def test_models_list_and_verify(models_dir: Path) -> None:
    code, out, _ = run("models", "list", "--json")
    assert code == 0
    found = {r["name"]: r["found"] for r in lines(out)}
    assert found["dlib_resnet128"].startswith("package")
    assert found["yunet"].startswith("mirror")
    code, out, _ = run("models", "verify")
    assert code == 0 and "mismatch" not in out


def test_reembed_moves_gallery_to_another_model(
    gallery: Path, smoke: Path, models_dir: Path
) -> None:
    probe = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    code, _, err = run("identify", probe, "--db", gallery, "--profile", "fast")
    assert code == 2 and "reembed" in err  # a configuration error: the gallery's model
    code, _, err = run("gallery", "reembed", "--profile", "fast", "--db", gallery)
    assert code == 0, err
    code, out, _ = run("identify", probe, "--db", gallery, "--profile", "fast", "--json")
    assert code == 0
    assert lines(out)[0]["faces"][0]["subject"] == "obama"


PORTED = ("main", "admin", "service", "audit", "review")
"""CLI modules that act only through Operations (video and redact follow)."""
STORES = {"Gallery", "Ledger", "EventStore", "Reviews", "WatchLists", "KeyStore", "Database"}
STORE_ATTRIBUTES = {"gallery", "ledger", "events", "reviews", "watchlists", "keys", "db", "engine"}


@pytest.mark.parametrize("module", PORTED)
def test_the_cli_opens_no_store_and_no_sql(module: str) -> None:
    """Front ends go through Operations: no store, no SQL, no ledger writes of their own."""
    import ast

    import faceledger.cli

    source = Path(faceledger.cli.__file__).with_name(f"{module}.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names = {a.name for a in node.names}
            bad = [m for m in modules if m.split(".")[0] == "sqlalchemy" or m.startswith(
                "faceledger.db")]  # fmt: skip
            assert not bad, f"{module}.py:{node.lineno} imports {bad}"
            assert not names & STORES, f"{module}.py:{node.lineno} imports {names & STORES}"
        elif isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES:
            raise AssertionError(f"{module}.py:{node.lineno} reaches .{node.attr}")
