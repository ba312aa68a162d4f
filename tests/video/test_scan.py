"""`faceledger scan` on the real clip and on synthetic clips with ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.synth import LFW_IMAGES, SCENES, write_video
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.config import load_config
from faceledger.engine import Engine
from faceledger.events import EventStore
from faceledger.gallery import Gallery
from faceledger.ledger import Ledger
from tests.conftest import standin_env

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def enroll(db: Path, name: str, photo: Path) -> None:
    code, _, stderr = invoke(
        "enroll", "--name", name, photo, "--basis", "test fixture", "-p", "fast", "--db", db
    )
    assert code == 0, stderr


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_real_clip_finds_lin_manuel_miranda_and_claims_nobody_else(
    smoke: Path, tmp_path: Path
) -> None:
    db = tmp_path / "g.db"
    video = smoke / "video"
    enroll(db, "lin-manuel-miranda", video / "lin-manuel-miranda.png")
    enroll(db, "alex-lacamoire", video / "alex-lacamoire.png")
    code, stdout, stderr = invoke(
        "scan", video / "short_hamilton_clip.mp4", "-p", "fast", "--db", db, "--json", "-",
        "--purpose", "rehearsal footage review", "--case", "T-7",
    )  # fmt: skip
    assert code == 0, stderr
    events = events_of(stdout)
    claimed = {e["subject"] for e in events} - {None}
    assert claimed <= {"lin-manuel-miranda", "alex-lacamoire"}
    lin = [e for e in events if e["subject"] == "lin-manuel-miranda"]
    # He is on stage in the shot from 2.74 s to 7.01 s (cuts end tracks): one track.
    assert any(e["first_t"] < 3.0 and e["last_t"] > 6.9 and e["score"] > 0.5 for e in lin)
    assert all(e["last_t"] < 7.04 for e in lin)  # the audience shot after it is not him
    if not standin_env():  # fast's own EdgeFace-XXS (not the
        # MobileFaceNet stand-in used without PyTorch) also names Alex at the piano (26 px)
        alex = [e for e in events if e["subject"] == "alex-lacamoire"]
        assert [(e["first_t"], round(e["last_t"], 2)) for e in alex] == [(0.0, 0.63)]
    print(
        "tracks:",
        [(e["track"], e["subject"], e["first_t"], e["last_t"], e["score"]) for e in events],
    )

    # Every event is in the gallery database; only known subjects' crops are kept.
    with Engine(load_config(db=db, profile="fast")) as engine:
        stored = EventStore(engine.gallery).list(limit=1000)
    assert len(stored) == len(events)
    assert all(e.has_crop == (e.subject is not None) for e in stored)

    # The scan is one ledger entry: the file's hash, who was named, no crops.
    with Gallery(db) as gallery:
        scans = Ledger(gallery).entries(action="scan")
    assert len(scans) == 1
    entry = scans[0]
    clip = (video / "short_hamilton_clip.mp4").read_bytes()
    assert entry.inputs == (hashlib.sha256(clip).hexdigest(),)
    assert (entry.purpose, entry.case_ref, entry.role) == ("rehearsal footage review", "T-7", "cli")
    assert {k["subject"] for k in entry.result["known"]} == claimed
    assert entry.result["tracks"] == len(events)


@pytest.mark.parametrize("scene_name", ["scaling", "enter_leave"])
def test_synthetic_clip_one_decision_per_person(scene_name: str, tmp_path: Path) -> None:
    if not LFW_IMAGES.is_dir():
        pytest.skip(f"{LFW_IMAGES} is absent: needs the shared LFW images")
    scene = SCENES[scene_name]
    clip = tmp_path / f"{scene_name}.mp4"
    write_video(scene, clip)
    db = tmp_path / "g.db"
    for name in scene.names:  # enrolled from another photo than the one in the clip
        enroll(db, name, LFW_IMAGES / name / f"{name}_0002.jpg")
    code, stdout, stderr = invoke("scan", clip, "-p", "fast", "--db", db, "--json", "-")
    assert code == 0, stderr
    events = events_of(stdout)
    assert sorted(e["subject"] for e in events) == sorted(scene.names)


def test_scan_bad_inputs_are_named_and_the_batch_goes_on(smoke: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    clip = smoke / "video" / "short_hamilton_clip.mp4"
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[:200_000])
    unknown_codec = tmp_path / "zzzz.mp4"  # the H.264 sample entry renamed: no decoder
    unknown_codec.write_bytes(clip.read_bytes().replace(b"avc1", b"zzzz"))
    code, _, stderr = invoke(
        "scan", text, tmp_path / "missing.mp4", truncated, unknown_codec, "-p", "fast",
        "--db", tmp_path / "g.db", "--json", "-",
    )  # fmt: skip
    assert code == 1
    assert "notes.mp4" in stderr and "missing.mp4" in stderr and "cut.mp4" in stderr
    assert "no such file" in stderr
    assert "zzzz.mp4: video codec" in stderr and "cannot be decoded" in stderr
