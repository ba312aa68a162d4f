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
from faceledger.events import EventRecord
from faceledger.ledger import LedgerEntry
from faceledger.operations import Acting, Operations

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def enroll(db: Path | str, name: str, photo: Path) -> None:
    with Operations(load_config(db=db, profile="fast")) as ops:
        report, entry = ops.enroll(Acting.os_user(), name, [photo], "test fixture")
    assert report.enrolled and entry is not None, report.failures


def stored(db: Path | str) -> tuple[list[EventRecord], dict[str, list[LedgerEntry]]]:
    """The gallery's events (oldest first) and its scan entries by action."""
    with Operations(load_config(db=db, profile="fast"), create=False) as ops:
        events = sorted(ops.list_events(limit=10_000), key=lambda e: e.id)
        entries = {a: ops.audit_entries(action=a) for a in ("scan.start", "scan.track", "scan.end")}
    return events, entries


def check_tracks_named(events: list[EventRecord], tracks: list[LedgerEntry]) -> None:
    """Every stored event has exactly one scan.track entry naming it, and no entry names
    an event that is not stored; each entry says what its event says."""
    named = [entry.result["event"] for entry in tracks]
    assert sorted(named) == [e.id for e in events]
    by_id = {e.id: e for e in events}
    for entry in tracks:
        event = by_id[entry.result["event"]]
        assert entry.result["subject"] == event.subject
        assert entry.result["track"] == event.track_id
        assert entry.result["score"] == round(event.score, 4)
        assert entry.result["source"] == event.source


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
    # Alex at the piano (a 26 px face, 10 px between the eyes) is too small to decide: his
    # track is not matched, and says why, rather than naming him or calling him unknown.
    assert not [e for e in events if e["subject"] == "alex-lacamoire"]
    piano = [e for e in events if e["first_t"] == 0.0 and e["decision"] == "insufficient_quality"]
    assert piano and "between the eyes" in piano[0]["reason"]
    print(
        "tracks:",
        [(e["track"], e["subject"], e["first_t"], e["last_t"], e["score"]) for e in events],
    )

    # Every event is in the gallery database; only known subjects' crops are kept.
    events_in_db, entries = stored(db)
    assert len(events_in_db) == len(events)
    assert all(e.has_crop == (e.subject is not None) for e in events_in_db)

    # The scan is on the record: a start entry (the file's hash), one entry per event as
    # it was decided, and an end entry with who was named; no crops.
    clip = (video / "short_hamilton_clip.mp4").read_bytes()
    digest = (hashlib.sha256(clip).hexdigest(),)
    assert [len(entries[a]) for a in ("scan.start", "scan.track", "scan.end")] == [
        1, len(events), 1
    ]  # fmt: skip
    start, end = entries["scan.start"][0], entries["scan.end"][0]
    seqs = [e.seq for e in entries["scan.track"]]
    assert start.seq < min(seqs) and max(seqs) < end.seq
    check_tracks_named(events_in_db, entries["scan.track"])
    assert sorted(e["id"] for e in events) == [e.id for e in events_in_db]
    for entry in (start, end, *entries["scan.track"]):
        assert entry.inputs == digest
        assert (entry.purpose, entry.case_ref, entry.role) == (
            "rehearsal footage review", "T-7", "cli"
        )  # fmt: skip
    assert start.result["source"] == str(video / "short_hamilton_clip.mp4")
    assert {k["subject"] for k in end.result["known"]} == claimed
    assert end.result["tracks"] == len(events)
    assert end.result["events"] == [events_in_db[0].id, events_in_db[-1].id]
    assert "error" not in end.result


def test_each_stored_event_has_exactly_one_scan_track_entry(smoke: Path, db_url: str) -> None:
    """Two scans into one gallery (SQLite or PostgreSQL): every event, exactly one entry."""
    video = smoke / "video"
    enroll(db_url, "lin-manuel-miranda", video / "lin-manuel-miranda.png")
    clip = video / "short_hamilton_clip.mp4"
    runs = []
    for every in (2, 3):
        code, stdout, stderr = invoke(
            "scan", clip, "-p", "fast", "--db", db_url, "--json", "-", "--every", every
        )
        assert code == 0, stderr
        runs.append(events_of(stdout))
    events, entries = stored(db_url)
    assert len(events) == sum(len(r) for r in runs) > 0
    check_tracks_named(events, entries["scan.track"])
    assert len(entries["scan.start"]) == len(entries["scan.end"]) == 2
    for printed, end in zip(runs, entries["scan.end"], strict=True):
        ids = [e["id"] for e in printed]
        assert end.result["events"] == [min(ids), max(ids)]
        assert end.result["tracks"] == len(ids)
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    print(f"{backend}: {[len(r) for r in runs]} events, one scan.track each")


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
    # each file is on the record, with why it could not be scanned
    _, entries = stored(tmp_path / "g.db")
    assert len(entries["scan.start"]) == len(entries["scan.end"]) == 4
    errors = [e.result.get("error") for e in entries["scan.end"]]
    assert all(errors), errors
    assert "no such file" in errors[1]
