"""A new user's first hour (issue 13): what the README promises, tried at the command line
against real photos, real models and real temporary galleries."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import faceledger
from faceledger.cli.main import app
from faceledger.config import load_config
from faceledger.engine import Engine
from faceledger.images import load_image
from faceledger.models import catalog

runner = CliRunner()
IDS = "identities"
OBAMA = ("fr_obama", "face_recognition_obama.jpg")
BIDEN = ("fr_biden", "face_recognition_biden.jpg")


def run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def known(smoke: Path, tmp_path: Path) -> Path:
    root = tmp_path / "known"
    for person, (folder, photo) in (("obama", OBAMA), ("biden", BIDEN)):
        (root / person).mkdir(parents=True)
        shutil.copy(smoke / IDS / folder / photo, root / person)
    return root


# ---- --version ------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out == f"faceledger {faceledger.__version__}\n"
    assert faceledger.__version__ == importlib.metadata.version("faceledger")


# ---- --embedder / --detector ----------------------------------------------------------------


def test_embedder_and_detector_options_choose_the_models(
    known: Path, smoke: Path, tmp_path: Path, models_dir: Path
) -> None:
    """`--embedder mobilefacenet` works with either detector, as the README says."""
    db = tmp_path / "g.db"
    code, _, err = run(
        "enroll", known, "--basis", "consent", "--db", db,
        "--detector", "yunet", "--embedder", "mobilefacenet",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run("subjects", "list", "--db", db, "--json")
    assert {r["name"]: r["models"] for r in lines(out)} == {
        "obama": ["mobilefacenet"],
        "biden": ["mobilefacenet"],
    }
    probe = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    for detector in ("yunet", "scrfd_2.5g"):
        code, out, err = run(
            "identify", probe, "--db", db, "--json",
            "--detector", detector, "--embedder", "mobilefacenet",
        )  # fmt: skip
        assert code == 0, err
        assert lines(out)[0]["faces"][0]["subject"] == "obama", detector
    # the profile that pairs SCRFD with its flip-calibrated embedder takes it as well
    code, out, err = run(
        "identify", probe, "--db", db, "--json", "-p", "accurate", "--embedder", "mobilefacenet"
    )
    assert code == 0, err
    assert lines(out)[0]["faces"][0]["subject"] == "obama"


def test_an_unknown_embedder_is_a_usage_error_naming_the_models(smoke: Path) -> None:
    photo = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    code, _, err = run("verify", photo, photo, "--embedder", "turbo")
    assert code == 2
    assert "unknown model 'turbo'" in err and "mobilefacenet" in err


def test_a_profiles_flip_is_for_its_own_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another embedder runs without the profile's flip (its thresholds are calibrated
    without it), unless flip is asked for."""
    flipping = {name: dataclasses.replace(p, flip=True) for name, p in catalog.PROFILES.items()}
    monkeypatch.setattr(catalog, "PROFILES", flipping)
    own = catalog.PROFILES["accurate"].embedder
    other = next(c.name for c in catalog.CARDS if c.kind == "embedder" and c.name != own)
    assert Engine(load_config(profile="accurate")).flip is True
    assert Engine(load_config(profile="accurate", embedder=own)).flip is True
    assert Engine(load_config(profile="accurate", embedder=other)).flip is False
    assert Engine(load_config(profile="accurate", embedder=other, flip=True)).flip is True


# ---- configuration errors exit 2 ------------------------------------------------------------


def test_a_missing_model_is_a_configuration_error(
    smoke: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("FACELEDGER_MODEL_MIRROR", str(empty))
    monkeypatch.setenv("FACELEDGER_MODEL_CACHE", str(tmp_path / "cache"))
    photo = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    code, out, err = run("detect", photo, "-p", "fast", "--offline", "--db", tmp_path / "g.db")
    assert code == 2, err
    assert out == "" and "yunet" in err and "Traceback" not in err


def test_a_model_file_failing_its_checksum_is_a_configuration_error(
    smoke: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for spec in catalog.get_card("yunet").files:
        (mirror / spec.name).write_bytes(b"not the model")
    monkeypatch.setenv("FACELEDGER_MODEL_MIRROR", str(mirror))
    monkeypatch.setenv("FACELEDGER_MODEL_CACHE", str(tmp_path / "cache"))
    photo = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    code, _, err = run("detect", photo, "-p", "fast", "--offline", "--db", tmp_path / "g.db")
    assert code == 2, err
    assert "sha256" in err and "Traceback" not in err


def test_a_gallery_made_with_another_embedder_is_a_configuration_error(
    known: Path, smoke: Path, tmp_path: Path, models_dir: Path
) -> None:
    db = tmp_path / "g.db"
    assert run("enroll", known, "--basis", "consent", "--db", db)[0] == 0  # dlib
    probe = smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg"
    code, _, err = run("identify", probe, "--db", db, "--profile", "fast")
    assert code == 2
    assert "reembed" in err and "Traceback" not in err


# ---- enroll a folder that is not there ------------------------------------------------------


def test_enrolling_a_missing_folder_says_it_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    code, out, err = run("enroll", f"{missing}/", "--basis", "consent", "--db", tmp_path / "g.db")
    assert code == 2 and out == ""
    assert f"{missing}: no such file or folder" in err
    assert not (tmp_path / "g.db").exists()


# ---- identify --draw ------------------------------------------------------------------------


def test_identify_draws_names_and_unknown_on_a_copy_of_each_image(
    known: Path, smoke: Path, tmp_path: Path
) -> None:
    db = tmp_path / "g.db"
    assert run("enroll", known, "--basis", "consent", "--db", db)[0] == 0
    photos = [
        smoke / IDS / "fr_obama" / "face_recognition_obama1.jpg",  # obama
        smoke / IDS / "fr_kit_harington" / "face_recognition_john1.jpeg",  # a stranger
        smoke / "scenes" / "two_people.jpg",
    ]
    drawn = tmp_path / "drawn"
    code, out, err = run("identify", *photos, "--db", db, "--draw", drawn, "--json")
    assert code == 0, err
    subjects = [[f["subject"] for f in r["faces"]] for r in lines(out)]
    assert subjects[0] == ["obama"] and subjects[1] == [None]
    written = sorted(p.name for p in drawn.iterdir())
    assert written == sorted(p.stem + ".png" for p in photos)
    for photo in photos:
        original = load_image(photo, 10**9, 10**9)
        with Image.open(drawn / (photo.stem + ".png")) as copy:
            assert copy.size == (original.shape[1], original.shape[0])
            changed = np.any(np.asarray(copy.convert("RGB")) != original, axis=2)
        assert 0 < changed.mean() < 0.2, photo.name  # boxes and labels, not a new picture


# ---- scan and watch: one spelling, --jsonl --------------------------------------------------


def test_scan_writes_jsonl_and_still_takes_the_old_json_spelling(
    smoke: Path, tmp_path: Path, models_dir: Path
) -> None:
    clip = smoke / "video" / "short_hamilton_clip.mp4"
    db = tmp_path / "g.db"
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    code, _, err = run("scan", clip, "-p", "fast", "--every", "5", "--db", db, "--jsonl", new)
    assert code == 0, err
    assert "deprecated" not in err
    events = [json.loads(line) for line in new.read_text().splitlines()]
    assert events and all({"id", "subject", "score"} <= set(e) for e in events)
    code, _, err = run("scan", clip, "-p", "fast", "--every", "5", "--db", db, "--json", old)
    assert code == 0, err
    assert "note: scan --json FILE is deprecated; use --jsonl FILE" in err
    assert len(old.read_text().splitlines()) == len(events)
    code, _, err = run("scan", clip, "--db", db, "--json", old, "--jsonl", new)
    assert code == 2 and "--jsonl FILE only" in err
    code, out, _ = run("scan", "--help")
    assert "--jsonl" in out and "--json " not in out  # the old spelling is hidden
