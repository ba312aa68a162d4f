"""The accountable layer as a library user meets it: the package's own example, on real
photos, leaves one ledger entry per action, by the OS user, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

import faceledger
from faceledger import Acting, Operations, load_config
from faceledger.errors import ConfigError, InputError, StorageBusyError
from tests.conftest import SMOKE, need


@pytest.fixture
def photos() -> list[Path]:
    need(SMOKE)
    return sorted((SMOKE / "identities" / "deepface_id00").glob("*.jpg"))


def test_the_package_example_is_on_the_record(db_url: str, photos: list[Path]) -> None:
    assert "Operations" in (faceledger.__doc__ or "") and "Acting" in (faceledger.__doc__ or "")
    with Operations(load_config(profile="embedded", db=db_url)) as ops:
        me = Acting.os_user(purpose="door access check")
        report, entry = ops.enroll(me, "ada", photos[:2], "signed consent form 2026-11")
        assert report.enrolled and entry is not None and entry.action == "enroll"
        answer = ops.identify(me, photos[3])
        assert answer.value.faces and answer.value.faces[0].match is not None
        assert answer.value.faces[0].match.subject == "ada"
        entries = ops.audit_entries()
        assert [e.action for e in entries] == ["enroll", "identify"]
        assert answer.entry == entries[-1]
        assert {e.actor for e in entries} == {getpass.getuser()}
        assert {e.role for e in entries} == {"cli"}
        assert entries[-1].purpose == "door access check"
        assert ops.audit_verify().ok


def test_every_search_kind_leaves_its_entry_even_when_it_fails(
    db_url: str, photos: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    me = Acting("rita", "operator", "case work", "CASE-7")
    with Operations(load_config(profile="embedded", db=db_url)) as ops:
        assert ops.verify(me, photos[0], photos[1]).value.same
        assert len(ops.detect(me, photos[0]).value[0].faces) == 1
        with pytest.raises(InputError):
            ops.identify(me, broken)
        results = list(ops.identify_many(me, [photos[2], broken]))
        assert [r.value.error is None for r in results] == [True, False]
        entries = ops.audit_entries()
        assert [e.action for e in entries] == [
            "verify",
            "detect",
            "identify",
            "identify",
            "identify",
        ]
        assert [r.entry.seq for r in results] == [entries[-2].seq, entries[-1].seq]
        assert "error" in entries[2].result and "error" in entries[-1].result
        assert {(e.actor, e.role, e.purpose, e.case_ref) for e in entries} == {
            ("rita", "operator", "case work", "CASE-7")
        }
        assert ops.audit_verify().ok


def test_a_database_url_of_another_kind_is_refused_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("mysql://u:secret@host/db", "postgresql://u@host", "sqlite://relative.db"):
        with pytest.raises(ConfigError) as caught:
            load_config(db=url)
        assert "secret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_postgresql_url_is_a_server_not_a_folder(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once, --db postgresql://... made a SQLite file in a folder named 'postgresql:'."""
    monkeypatch.chdir(tmp_path)
    with Operations(load_config(db=pg_url)) as ops:
        assert ops.db.dialect == "postgresql"
        ops.create_watchlist(Acting.os_user(), "staff")
    assert list(tmp_path.iterdir()) == []


def test_a_camera_password_never_reaches_the_ledger_or_the_events(db_url: str) -> None:
    from support.events import decision

    url = "rtsp://admin:hunter2@10.0.0.7:554/stream1"
    with Operations(load_config(profile="embedded", db=db_url)) as ops:
        with ops.video_run(Acting.os_user(), "watch", f"door-1: {url}", camera="door-1") as run:
            event_id = run.record(decision(None, source=url))
        stored = ops.list_events()
        entries = ops.audit_entries()
        assert [e.action for e in entries] == ["watch.start", "watch.track", "watch.end"]
        assert entries[1].result["event"] == event_id
        assert entries[1].result["subject"] is None
        text = repr([e.as_json() for e in entries]) + repr([s.as_json() for s in stored])
        assert "hunter2" not in text and "admin:" not in text
        assert "rtsp://***@10.0.0.7:554/stream1" in text


def test_strangers_crops_erased_on_expiry_are_on_the_record(db_url: str) -> None:
    from datetime import timedelta

    from support.events import decision

    with Operations(load_config(profile="embedded", db=db_url)) as ops:
        with ops.video_run(Acting.os_user(), "scan", "door.mp4", keep_unknown=timedelta(0)) as run:
            run.record(decision(None))
        assert ops.purge_expired(Acting.os_user()) == 1
        assert ops.purge_expired(Acting.os_user()) == 0  # nothing left: no entry
        actions = [e.action for e in ops.audit_entries()]
        assert actions == ["scan.start", "scan.track", "scan.end", "retention.expired"]
        assert ops.audit_entries()[-1].result == {"unknown_erased": 1}


def test_a_redacted_copy_never_exists_without_its_entry(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need(SMOKE)
    scene = sorted((SMOKE / "scenes").glob("*.jpg"))[0]
    with Operations(load_config(profile="embedded", db=db_url)) as ops:
        me = Acting.os_user(purpose="publication")
        done = ops.redact(me, scene, tmp_path / "ok.jpg", image=True)
        assert (tmp_path / "ok.jpg").is_file() and done.entry.action == "redact"
        assert done.entry.result["faces_blurred"] == done.value.faces_blurred > 0

        def refuse(_record: object) -> None:
            raise StorageBusyError("the gallery: the database is busy; try again")

        monkeypatch.setattr(ops.ledger, "append", refuse)
        with pytest.raises(StorageBusyError):
            ops.redact(me, scene, tmp_path / "refused.jpg", image=True)
        assert sorted(p.name for p in tmp_path.iterdir() if "gallery.db" not in p.name) == [
            "ok.jpg"
        ]
