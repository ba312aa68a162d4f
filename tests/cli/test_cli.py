"""The command line against real photos and real temporary galleries (embedded profile)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.cli.main import app

runner = CliRunner()
IDS = "identities"


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


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
    code, out, _ = run("detect", smoke / "scenes" / "two_people.jpg", "--draw", out_dir, "--json")
    assert code == 0
    faces = lines(out)[0]["faces"]
    assert len(faces) == 2 and len(faces[0]["landmarks"]) == 5
    assert (out_dir / "two_people.png").is_file()


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
    assert code == 1 and "reembed" in err
    code, _, err = run("gallery", "reembed", "--profile", "fast", "--db", gallery)
    assert code == 0, err
    code, out, _ = run("identify", probe, "--db", gallery, "--profile", "fast", "--json")
    assert code == 0
    assert lines(out)[0]["faces"][0]["subject"] == "obama"
