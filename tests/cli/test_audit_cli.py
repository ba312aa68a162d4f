"""The audit ledger and service administration from the command line: every logged action
writes its entry, the chain verifies and exports, keys, watch lists, reviews with the
two-person rule, retention. Real photos, real temporary galleries (embedded profile)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support.events import decision
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.events import EventStore
from faceledger.gallery import Gallery
from faceledger.images import sha256_of
from faceledger.ledger import GENESIS, Ledger, entry_hash
from faceledger.ledger.chain import LedgerRecord
from faceledger.operations import Acting

runner = CliRunner()
IDS = "identities"
BASIS = "signed consent, 2026-11"
OBAMA = f"{IDS}/fr_obama/face_recognition_obama.jpg"
BIDEN = f"{IDS}/fr_biden/face_recognition_biden.jpg"
PROBE = f"{IDS}/fr_obama/face_recognition_obama1.jpg"


def run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def entries(db: Path, *args: str) -> list[dict[str, Any]]:
    code, out, err = run("audit", "list", "--db", db, "--json", *args)
    assert code == 0, err
    return lines(out)


@pytest.fixture
def known(smoke: Path, tmp_path: Path) -> Path:
    """A folder of person folders: Obama and Biden, one photo each."""
    root = tmp_path / "known"
    for person, photo in (("obama", OBAMA), ("biden", BIDEN)):
        (root / person).mkdir(parents=True)
        shutil.copy(smoke / photo, root / person)
    return root


def enroll(known: Path, db: Path) -> Path:
    code, _, err = run("enroll", known, "--basis", BASIS, "--db", db)
    assert code == 0, err
    return db


_ENROLLED: list[Path] = []
"""A gallery enrolled once (Obama, Biden), copied for each test that needs one."""


@pytest.fixture
def gallery(known: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a gallery with Obama and Biden enrolled (two ledger entries)."""
    if not _ENROLLED:
        _ENROLLED.append(enroll(known, tmp_path_factory.mktemp("enrolled") / "g.db"))
    db = tmp_path / "g.db"
    source, target = sqlite3.connect(_ENROLLED[0]), sqlite3.connect(db)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return db


def add_event(db: Path, subject: str | None, at: datetime | None = None) -> int:
    """An event stored with its ledger entry in one transaction, as a camera node's scan
    stores it (created at ``at``, else now)."""
    with Gallery(db) as g:
        store = EventStore(g) if at is None else EventStore(g, clock=lambda: at)
        ledger = Ledger(g)

        def within(conn: Any, event_id: int, _stored: Any) -> None:
            result = {"event": event_id, "camera": "door", "subject": subject}
            record = LedgerRecord(
                "door-node", "operator", "watch.track", result=result, model="dlib_resnet128"
            )
            ledger.append_in(conn, record)

        return store.add(decision(subject), "door", "dlib_resnet128", within=within)


def as_os_user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Run the next commands as another person logged in to this machine."""
    monkeypatch.setattr("getpass.getuser", lambda: name)


# ---- what each action records ---------------------------------------------------------------


def test_enroll_writes_one_entry_per_subject(known: Path, tmp_path: Path) -> None:
    gallery = enroll(known, tmp_path / "g.db")
    found = entries(gallery)
    assert [e["action"] for e in found] == ["enroll", "enroll"]
    by_subject = {e["result"]["subject"]: e for e in found}
    obama = by_subject["obama"]
    assert obama["result"] == {
        "subject": "obama",
        "created": True,
        "templates": 1,
        "legal_basis": BASIS,
    }
    assert obama["inputs"] == [sha256_of(known / "obama" / Path(OBAMA).name)]
    me = Acting.os_user()
    assert (obama["actor"], obama["role"]) == (me.actor, "cli")
    assert obama["model"] == "dlib_resnet128"
    assert obama["gallery"] == str(gallery)


def test_identify_records_purpose_case_and_image_hashes(
    gallery: Path, smoke: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.jpg"
    code, _, _ = run(
        "identify", smoke / PROBE, missing, "--db", gallery,
        "--purpose", "door check", "--case", "C-42", "--json",
    )  # fmt: skip
    assert code == 1  # the missing file failed; it is still logged
    found = entries(gallery, "--action", "identify")
    assert len(found) == 2
    hit, failed = found
    assert hit["inputs"] == [sha256_of(smoke / PROBE)]
    assert (hit["purpose"], hit["case_ref"], hit["model"]) == (
        "door check",
        "C-42",
        "dlib_resnet128",
    )
    assert hit["result"]["known"] == 1
    assert hit["result"]["matches"][0]["subject"] == "obama"
    assert "threshold" in hit["result"] and "box" not in json.dumps(hit["result"])
    assert failed["inputs"] == [] and failed["result"] == {"error": "no such file"}


def test_identify_without_purpose_records_none(gallery: Path, smoke: Path) -> None:
    code, _, err = run("identify", smoke / PROBE, "--db", gallery)
    assert code == 0, err
    (entry,) = entries(gallery, "--action", "identify")
    assert entry["purpose"] is None and entry["case_ref"] is None


def test_verify_records_both_hashes_and_failures(smoke: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    a, b = smoke / OBAMA, smoke / PROBE
    code, out, err = run("verify", a, b, "--db", db, "--purpose", "id check", "--json")
    assert code == 0, err
    assert lines(out)[0]["same"] is True
    code, _, err = run("verify", a, tmp_path / "nope.jpg", "--db", db)
    assert code == 1 and "nope.jpg" in err
    ok, failed = entries(db, "--action", "verify")
    assert ok["inputs"] == [sha256_of(a), sha256_of(b)]
    assert ok["purpose"] == "id check"
    assert ok["result"]["same"] is True and set(ok["result"]) == {
        "score",
        "same",
        "decision",
        "threshold",
        "threshold_fmr",
    }
    assert failed["result"] == {"error": "no such file"}
    assert failed["inputs"] == [sha256_of(a)]


def test_erasure_is_recorded_without_the_name(gallery: Path) -> None:
    code, _, err = run("subjects", "remove", "biden", "--yes", "--db", gallery)
    assert code == 0, err
    (entry,) = entries(gallery, "--action", "subject.delete")
    assert entry["result"] == {
        "subject_sha256": hashlib.sha256(b"biden").hexdigest(),
        "templates": 1,
        "evidence_crops": 0,
    }
    assert len(entry["inputs"]) == 1
    assert "biden" not in json.dumps(entry).lower()


def test_reembed_is_recorded(gallery: Path) -> None:
    code, _, err = run("gallery", "reembed", "--db", gallery)
    assert code == 0, err
    (entry,) = entries(gallery, "--action", "gallery.reembed")
    assert entry["result"] == {"templates": 2, "model": "dlib_resnet128"}


def test_enroll_onto_watch_lists_in_the_same_transaction(
    gallery: Path, smoke: Path, tmp_path: Path
) -> None:
    photo = smoke / IDS / "fr_obama" / "face_recognition_obama2.jpg"
    code, _, err = run("enroll", "--name", "obama", photo, "--db", gallery, "--watchlist", "vip")
    assert code == 2 and "no watch list named 'vip'" in err
    assert len(entries(gallery, "--action", "enroll")) == 2  # nothing enrolled
    assert run("watchlists", "create", "vip", "--review", "--db", gallery)[0] == 0
    code, _, err = run("enroll", "--name", "obama", photo, "--db", gallery, "-w", "vip")
    assert code == 0, err
    code, out, _ = run("watchlists", "list", "--db", gallery, "--json")
    assert lines(out)[0]["subjects"] == ["obama"]
    last = entries(gallery, "--action", "enroll")[-1]
    assert last["result"]["created"] is False and last["result"]["watchlists"] == ["vip"]
    assert last["result"]["legal_basis"] is None


# ---- audit verify / export / list -----------------------------------------------------------


def test_audit_verify_then_tampering_is_named(gallery: Path) -> None:
    code, out, _ = run("audit", "verify", "--db", gallery)
    assert code == 0 and "2 entries verified" in out
    code, out, _ = run("audit", "verify", "--db", gallery, "--json")
    report = lines(out)[0]
    assert report["ok"] is True and report["first_bad"] is None
    head = report["head"]
    assert run("audit", "verify", "--db", gallery, "--head", head)[0] == 0

    with sqlite3.connect(gallery) as conn:
        conn.execute("DROP TRIGGER ledger_no_update")
        conn.execute("DROP TRIGGER ledger_no_delete")
        conn.execute("""UPDATE ledger SET result = '{"subject":"someone else"}' WHERE seq = 2""")
    conn.close()
    code, _, err = run("audit", "verify", "--db", gallery)
    assert code == 1
    assert "entry 2" in err and "altered" in err
    code, out, _ = run("audit", "verify", "--db", gallery, "--json")
    assert code == 1 and lines(out)[0]["first_bad"] == 2


def test_audit_verify_detects_a_cut_off_end(gallery: Path) -> None:
    head = lines(run("audit", "verify", "--db", gallery, "--json")[1])[0]["head"]
    with sqlite3.connect(gallery) as conn:
        conn.execute("DROP TRIGGER ledger_no_delete")
        conn.execute("DELETE FROM ledger WHERE seq = 2")
    conn.close()
    assert run("audit", "verify", "--db", gallery)[0] == 0  # the chain alone looks fine
    code, _, err = run("audit", "verify", "--db", gallery, "--head", head)
    assert code == 1 and "cut off" in err


def test_audit_export_lines_recompute(gallery: Path, smoke: Path, tmp_path: Path) -> None:
    run("identify", smoke / PROBE, "--db", gallery, "--purpose", "export test")
    target = tmp_path / "out" / "ledger.jsonl"
    target.parent.mkdir()
    code, _, err = run("audit", "export", "--out", target, "--db", gallery)
    assert code == 0, err
    exported = lines(target.read_text())
    assert len(exported) == 3
    prev = GENESIS
    for seq, entry in enumerate(exported, 1):
        assert entry["seq"] == seq and entry["prev_hash"] == prev
        assert entry_hash(entry) == entry["hash"]
        prev = entry["hash"]
    assert "3 entries" in err and prev in err
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind

    code, out, _ = run("audit", "export", "--db", gallery)
    assert code == 0 and lines(out) == exported
    future = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    code, out, err = run("audit", "export", "--db", gallery, "--since", future)
    assert code == 0 and out == "" and "0 entries" in err
    code, _, err = run("audit", "export", "--db", gallery, "--since", "last tuesday")
    assert code == 2 and "ISO" in err


def test_audit_list_table_and_filters(gallery: Path) -> None:
    code, out, _ = run("audit", "list", "--db", gallery)
    assert code == 0
    assert "enroll" in out and "subject=obama" in out and "2 entries" in out
    assert len(entries(gallery, "--limit", "1")) == 1
    assert entries(gallery, "--actor", "nobody-at-all") == []


def test_audit_on_a_missing_gallery_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    code, _, err = run("audit", "verify", "--db", db)
    assert code == 2 and "no gallery" in err
    assert not db.exists()


@pytest.mark.parametrize(
    "command",
    [
        ("audit", "list"),
        ("audit", "export"),
        ("subjects", "list"),
        ("subjects", "show", "obama"),
        ("subjects", "remove", "obama", "--yes"),
        ("gallery", "info"),
        ("keys", "list"),
        ("keys", "revoke", "abc"),
        ("watchlists", "list"),
        ("watchlists", "add", "vip", "obama"),
        ("events", "list"),
        ("events", "show", "1"),
        ("events", "review", "1", "--confirm"),
        ("retention", "run"),
    ],
    ids=" ".join,
)
def test_commands_on_a_missing_gallery_leave_none_behind(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    db = tmp_path / "sub" / "none.db"
    code, _, err = run(*command, "--db", db)
    assert code == 2 and "no gallery" in err, err
    assert list(tmp_path.iterdir()) == []


# ---- keys -----------------------------------------------------------------------------------


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    code, out, err = run("keys", "create", "--role", "operator", "--name", "door", "--db", db)
    assert code == 0, err
    token = next(word for word in out.split() if word.startswith("fl_"))
    assert out.count(token) == 1 and "not stored" in err
    key_id = token.split("_")[1]

    code, out, _ = run("keys", "list", "--db", db, "--json")
    (listed,) = lines(out)
    assert listed["id"] == key_id and listed["role"] == "operator"
    assert listed["revoked_at"] is None and "token" not in listed
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT secret_sha256 FROM api_keys").fetchall()
        dump = "\n".join(conn.iterdump())
    conn.close()
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    assert token not in dump and token.split("_", 2)[2] not in dump

    assert run("keys", "revoke", key_id, "--db", db)[0] == 0
    code, _, err = run("keys", "revoke", key_id, "--db", db)
    assert code == 1 and "revoked already" in err
    assert lines(run("keys", "list", "--db", db, "--json")[1])[0]["revoked_at"] is not None
    logged = entries(db)
    assert [e["action"] for e in logged] == ["key.create", "key.revoke"]
    assert logged[0]["result"] == {"key": key_id, "name": "door", "role": "operator"}
    assert token not in json.dumps(logged)


def test_keys_json_and_unknown_role(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    code, out, _ = run("keys", "create", "-r", "auditor", "-n", "dpo", "--db", db, "--json")
    assert code == 0 and lines(out)[0]["token"].startswith("fl_")
    code, _, err = run("keys", "create", "--role", "boss", "--name", "x", "--db", db)
    assert code == 2 and "admin, enroller, operator, reviewer, auditor" in err
    assert run("keys", "revoke", "nope", "--db", db)[0] == 1


# ---- watch lists, events and their review ---------------------------------------------------


def test_two_person_review(gallery: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("watchlists", "create", "vip", "--two-person", "--db", gallery)[0] == 0
    code, _, err = run("watchlists", "add", "vip", "obama", "--db", gallery)
    assert code == 0, err
    assert run("watchlists", "add", "vip", "nobody", "--db", gallery)[0] == 1
    event = add_event(gallery, "obama")

    code, out, _ = run("events", "list", "--review", "pending", "--db", gallery, "--json")
    assert [e["id"] for e in lines(out)] == [event]
    assert lines(out)[0]["reviews_needed"] == 2

    as_os_user(monkeypatch, "alice")
    code, out, err = run("events", "review", event, "--confirm", "--db", gallery)
    assert code == 0, err
    assert "alice confirmed" in out and "1 of 2" in out
    code, _, err = run("events", "review", event, "--confirm", "--db", gallery)
    assert code == 1 and "alice has already reviewed" in err
    as_os_user(monkeypatch, "bob")
    code, out, err = run(
        "events", "review", event, "--confirm", "-m", "checked", "--db", gallery, "--json"
    )
    assert code == 0, err
    assert lines(out)[0]["review"] == "confirmed"
    as_os_user(monkeypatch, "carol")
    code, _, err = run("events", "review", event, "--reject", "--db", gallery)
    assert code == 1 and "already confirmed" in err

    reviewed = entries(gallery, "--action", "event.review")
    assert [(e["actor"], e["role"]) for e in reviewed] == [("alice", "cli"), ("bob", "cli")]
    assert [e["result"]["review"] for e in reviewed] == ["pending", "confirmed"]
    assert [e["result"]["decision"] for e in reviewed] == ["confirm", "confirm"]
    assert [r["reviewer"] for r in reviewed[-1]["result"]["reviews"]] == ["alice", "bob"]
    assert [e["action"] for e in entries(gallery)][2:4] == ["watchlist.create", "watchlist.add"]

    code, out, _ = run("events", "show", event, "--db", gallery)
    assert code == 0 and "alice" in out and "bob" in out and "confirmed" in out


def test_reviewer_is_the_os_user_never_a_name_given(gallery: Path) -> None:
    """One person cannot confirm twice under two names on a two-person watch list."""
    assert run("watchlists", "create", "vip", "--two-person", "--db", gallery)[0] == 0
    assert run("watchlists", "add", "vip", "obama", "--db", gallery)[0] == 0
    event = add_event(gallery, "obama")
    code, _, err = run("events", "review", event, "--confirm", "--as", "alice", "--db", gallery)
    assert code == 2 and "No such option: --as" in err
    assert entries(gallery, "--action", "event.review") == []

    me = Acting.os_user().actor
    code, out, err = run("events", "review", event, "--confirm", "--db", gallery)
    assert code == 0 and "1 of 2" in out, err
    code, _, err = run("events", "review", event, "--confirm", "--db", gallery)
    assert code == 1 and f"{me} has already reviewed" in err
    code, out, _ = run("events", "show", event, "--db", gallery, "--json")
    shown = lines(out)[0]
    assert shown["review"] == "pending" and [r["reviewer"] for r in shown["reviews"]] == [me]
    (entry,) = entries(gallery, "--action", "event.review")
    assert entry["actor"] == me and entry["result"]["confirmations"] == 1


def test_review_needs_exactly_one_decision(gallery: Path) -> None:
    event = add_event(gallery, "obama")
    code, _, err = run("events", "review", event, "--db", gallery)
    assert code == 2 and "--confirm or --reject" in err
    code, _, _ = run("events", "review", event, "--confirm", "--reject", "--db", gallery)
    assert code == 2
    assert run("events", "review", 999, "--reject", "--db", gallery)[0] == 1


def test_event_crop_is_written_and_logged(gallery: Path, tmp_path: Path) -> None:
    event = add_event(gallery, "obama")
    crop = tmp_path / "crop.png"
    code, _, err = run("events", "show", event, "--crop", crop, "--db", gallery)
    assert code == 0, err
    assert crop.read_bytes().startswith(b"\x89PNG")
    (entry,) = entries(gallery, "--action", "event.crop.view")
    assert entry["result"] == {"event": event}
    assert (entry["actor"], entry["role"]) == (Acting.os_user().actor, "cli")
    assert entries(gallery, "--action", "event.crop") == []  # the old action name is gone
    stranger = add_event(gallery, None)
    code, _, err = run("events", "show", stranger, "--crop", tmp_path / "none.png", "--db", gallery)
    assert code == 1 and "no face crop" in err
    assert not (tmp_path / "none.png").exists()
    assert len(entries(gallery, "--action", "event.crop.view")) == 1  # nothing was viewed


def test_event_show_without_crop_records_no_viewing(gallery: Path) -> None:
    event = add_event(gallery, "obama")
    code, out, err = run("events", "show", event, "--db", gallery, "--json")
    assert code == 0, err
    shown = lines(out)[0]
    assert shown["id"] == event and shown["has_crop"] is True and "crop_png" not in shown
    assert entries(gallery, "--action", "event.crop.view") == []


# ---- retention ------------------------------------------------------------------------------


def test_retention_deletes_old_events(gallery: Path) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=40)
    stale = add_event(gallery, "obama", at=old)
    fresh = add_event(gallery, "obama")
    code, out, err = run(
        "retention", "run", "--keep-events", "30d", "--keep-evidence", "7d", "--db", gallery,
        "--json",
    )  # fmt: skip
    assert code == 0, err
    report = lines(out)[0]
    assert report["events_deleted"] == 1 and report["evidence_erased"] == 0
    code, out, _ = run("events", "list", "--db", gallery, "--json")
    assert [e["id"] for e in lines(out)] == [fresh]
    assert run("events", "show", stale, "--db", gallery)[0] == 1
    (entry,) = entries(gallery, "--action", "retention.run")
    assert entry["seq"] == report["ledger_seq"] and entry["result"]["events_deleted"] == 1


def test_retention_uses_the_configured_lifetimes(
    gallery: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_event(gallery, "obama", at=datetime.now(timezone.utc) - timedelta(days=3))
    code, out, _ = run("retention", "run", "--db", gallery)
    assert code == 0 and "deleted 0 events" in out  # default: a year
    monkeypatch.setenv("FACELEDGER_KEEP_EVIDENCE", "1d")
    code, out, _ = run("retention", "run", "--db", gallery, "--json")
    assert code == 0 and lines(out)[0]["evidence_erased"] == 1
    code, _, err = run("retention", "run", "--keep-events", "soon", "--db", gallery)
    assert code == 2 and "--keep-events" in err
