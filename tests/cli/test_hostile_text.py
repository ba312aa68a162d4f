"""Hostile text at the command line: names the API could not show or erase are refused
where subjects are made (by the rule every front end shares), names already stored still
list, show and erase, and nothing stored reaches the terminal raw (escape sequences, bidi
overrides, rich markup). Tests write old galleries' rows through the stores directly."""

from __future__ import annotations

import io
import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from faceledger.access import KeyStore, Role
from faceledger.cli import render
from faceledger.cli.main import app
from faceledger.events.review import Reviews
from faceledger.events.store import EventStore
from faceledger.gallery.store import Gallery
from faceledger.ledger import Ledger
from faceledger.ledger.chain import LedgerRecord
from faceledger.types import Candidate, FaceResult, ImageResult, Match, Threshold
from tests.support.events import decision

runner = CliRunner()
HOSTILE = "\x1b]0;pwned\x07\x1b[2J"
"""Sets the terminal's title and clears its screen, if it reaches the terminal raw."""
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u200b")
"""What must never reach the terminal raw."""


def run(*args: str | Path, columns: int = 80) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


def assert_no_raw(*texts: str) -> None:
    for text in texts:
        found = [c for c in RAW if c in text]
        assert not found, f"raw {found!r} reached the terminal: {text!r}"


@pytest.fixture
def png(tmp_path: Path) -> Path:
    """A photo file (never decoded: the name is refused before any photo is read)."""
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (120, 110, 100)).save(path)
    return path


# ---- new names are refused ------------------------------------------------------------------

BAD_NAMES = [
    ("a/b", "SOLIDUS (U+002F)"),
    ("a\\b", "REVERSE SOLIDUS (U+005C)"),
    ("tab\there", "CHARACTER TABULATION (U+0009)"),
    ("new\nline", "LINE FEED (U+000A)"),
    ("esc\x1b[2J", "ESCAPE (U+001B)"),
    ("obama\u200b", "ZERO WIDTH SPACE (U+200B)"),
    ("\u202eobama", "RIGHT-TO-LEFT OVERRIDE (U+202E)"),
    ("x" * 300, "300 characters long; at most 200"),
]


@pytest.mark.parametrize(("name", "named"), BAD_NAMES, ids=[n for _, n in BAD_NAMES])
def test_enroll_refuses_a_bad_name_naming_the_character(
    name: str, named: str, png: Path, tmp_path: Path
) -> None:
    db = tmp_path / "g.db"
    code, out, err = run("enroll", "--name", name, png, "--basis", "consent", "--db", db)
    assert code == 2, err
    assert named in err
    assert_no_raw(out, err)
    code, out, _ = run("subjects", "list", "--db", db, "--json")
    assert code == 0 and out.strip() == ""


def test_a_new_name_is_normalised(smoke: Path, tmp_path: Path) -> None:
    photo = smoke / "identities" / "fr_obama" / "face_recognition_obama.jpg"
    db = tmp_path / "g.db"
    code, _, err = run("enroll", "--name", "  Jose\u0301 ", photo, "--basis", "consent", "--db", db)
    assert code == 0, err
    code, out, _ = run("subjects", "list", "--db", db, "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["José"]


def test_a_refused_folder_fails_alone_and_the_others_enroll(smoke: Path, tmp_path: Path) -> None:
    root = tmp_path / "known"
    photo = smoke / "identities" / "fr_obama" / "face_recognition_obama.jpg"
    refused = ["tab\tname", "esc\x1b[2J", "zw\u200bobama", "back\\slash", "x" * 201]
    for folder in ["obama", *refused]:
        (root / folder).mkdir(parents=True)
        shutil.copy(photo, root / folder)
    db = tmp_path / "g.db"
    code, out, err = run("enroll", root, "--basis", "consent", "--db", db)
    assert code == 1, err
    assert f"{len(refused)} input(s) failed" in err
    for named in ("CHARACTER TABULATION", "ESCAPE", "ZERO WIDTH SPACE", "REVERSE SOLIDUS"):
        assert named in err
    assert "201 characters long" in err and "rename the folder" in err
    assert_no_raw(out, err)
    code, out, _ = run("subjects", "list", "--db", db, "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["obama"]


def test_only_refused_folders_are_listed_before_the_usage_error(png: Path, tmp_path: Path) -> None:
    root = tmp_path / "known"
    (root / "esc\x1b[2J").mkdir(parents=True)
    shutil.copy(png, root / "esc\x1b[2J")
    code, out, err = run("enroll", root, "--basis", "consent", "--db", tmp_path / "g.db")
    assert code == 2
    assert "ESCAPE (U+001B)" in err and "no image files to enroll" in err
    assert_no_raw(out, err)


# ---- names already stored still list, show and erase -----------------------------------------

LEGACY = [
    "tab\there",
    "esc\x1b[31mred",
    "zw\u200bobama",
    "\u202eevil",
    "a/b",
    "back\\slash",
    "[bold]markup[/bold]",
]


def legacy_names(db: str) -> list[str]:
    """Names an old gallery could hold (a 300-character one only where the column does not
    hold it to 200: SQLite)."""
    return LEGACY + ([] if db.startswith("postgresql") else ["y" * 300])


def test_legacy_names_list_show_and_erase(db_url: str) -> None:
    names = legacy_names(db_url)
    with Gallery(db_url) as gallery:
        for name in names:
            gallery.create_subject(name, f"old basis of {name}\x1b[2J")
    code, out, err = run("subjects", "list", "--db", db_url, "--json")
    assert code == 0, err
    assert sorted(json.loads(line)["name"] for line in out.splitlines()) == sorted(names)
    code, out, err = run("subjects", "list", "--db", db_url, columns=400)
    assert code == 0, err
    assert_no_raw(out, err)
    assert "\\x1b[31mred" in out and "\\u202eevil" in out and "[bold]markup[/bold]" in out
    for name in names:
        code, out, err = run("subjects", "show", name, "--db", db_url)
        assert code == 0, (name, err)
        assert_no_raw(out, err)
        code, out, err = run("subjects", "remove", name, "--yes", "--db", db_url, "--json")
        assert code == 0, (name, err)
        assert json.loads(out)["removed"] == name
    code, out, _ = run("subjects", "list", "--db", db_url, "--json")
    assert code == 0 and out.strip() == ""


def test_removing_a_legacy_name_prints_it_escaped(tmp_path: Path) -> None:
    db = str(tmp_path / "g.db")
    with Gallery(db) as gallery:
        gallery.create_subject("esc\x1b[2J", "old basis")
    code, out, err = run("subjects", "remove", "esc\x1b[2J", "--yes", "--db", db)
    assert code == 0, err
    assert "removed esc\\x1b[2J" in out
    assert_no_raw(out, err)


# ---- stored text never reaches the terminal raw --------------------------------------------


def test_audit_list_shows_a_hostile_purpose_escaped(db_url: str) -> None:
    with Gallery(db_url) as gallery:  # an old gallery's entry: written before Acting cleaned
        Ledger(gallery).append(
            LedgerRecord(
                actor=f"ops{HOSTILE}",
                role="operator\x1b[5m",
                action="identify",
                purpose=HOSTILE + " [red]door[/red] \u202echeck",
                case_ref="\x1b[31mT-1",
                result={"faces": 1, "known": 1, "matches": [{"subject": f"s{HOSTILE}"}]},
            )
        )
    code, out, err = run("audit", "list", "--db", db_url, columns=400)
    assert code == 0, err
    assert_no_raw(out, err)
    assert "ops\\x1b]0;pwned\\x07\\x1b[2J" in out
    assert "\\x1b]0;pwned\\x07\\x1b[2J [red]door[/red] \\u202echeck (case \\x1b[31mT-1)" in out
    code, out, _ = run("audit", "list", "--db", db_url, "--json")  # JSON stays exact
    entry = json.loads(out.splitlines()[-1])
    assert entry["purpose"] == HOSTILE + " [red]door[/red] \u202echeck"
    assert entry["case_ref"] == "\x1b[31mT-1"


def test_a_purpose_given_at_the_command_line_is_recorded_clean(png: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    code, _, err = run("detect", png, "--purpose", f"door{HOSTILE} check", "--db", db)
    assert code == 0, err
    code, out, _ = run("audit", "list", "--db", db, "--json")
    assert json.loads(out.splitlines()[-1])["purpose"] == "door]0;pwned[2J check"


def test_events_show_and_list_escape_stored_text(db_url: str) -> None:
    with Gallery(db_url) as gallery:
        made = decision(subject=f"ada{HOSTILE}", source=f"cam{HOSTILE}.mp4")
        event_id = EventStore(gallery).add(made, f"door{HOSTILE}", "model\x1b[5m")
        Reviews(gallery).decide(event_id, f"rev{HOSTILE}", "confirm", f"ok{HOSTILE}")
    for command in (("events", "show", str(event_id)), ("events", "list")):
        code, out, err = run(*command, "--db", db_url)
        assert code == 0, err
        assert_no_raw(out, err)
        assert "\\x1b" in out
    code, out, _ = run("events", "show", str(event_id), "--db", db_url, "--json")
    shown_event = json.loads(out)
    assert shown_event["reviews"][0]["comment"] == f"ok{HOSTILE}"


def test_a_review_comment_is_recorded_clean(tmp_path: Path) -> None:
    db = str(tmp_path / "g.db")
    with Gallery(db) as gallery:
        event_id = EventStore(gallery).add(decision(subject="ada"), None, "model")
    code, _, err = run("events", "review", str(event_id), "--confirm", "-m", HOSTILE, "--db", db)
    assert code == 0, err
    code, out, _ = run("events", "show", str(event_id), "--db", db, "--json")
    assert json.loads(out)["reviews"][0]["comment"] == "]0;pwned[2J"


def test_keys_list_escapes_key_names(tmp_path: Path) -> None:
    db = str(tmp_path / "g.db")
    with Gallery(db) as gallery:
        KeyStore(gallery).create(f"ops{HOSTILE}", Role.operator, f"admin{HOSTILE}")
    code, out, err = run("keys", "list", "--db", db)
    assert code == 0, err
    assert_no_raw(out, err)
    assert "\\x1b" in out


# ---- the identify table ---------------------------------------------------------------------

THRESHOLD = Threshold(0.6, 1e-3, "LFW 10-fold")
FOLDER = "/home/someone/photos/2026/november/party"


def _face(subject: str | None, score: float) -> FaceResult:
    candidates = (Candidate("barack_obama", 0.712), Candidate("joe_biden", 0.31))
    match = Match(subject, score, THRESHOLD, candidates)
    return FaceResult((1012.0, 233.0, 1340.0, 611.0), 0.99, ((0.0, 0.0),) * 5, match)


RESULTS = [
    ImageResult(
        f"{FOLDER}/IMG_20261114_193512_HDR.jpg",
        (_face("barack_obama", 0.712), _face(None, 0.21)),
    ),
    ImageResult(f"{FOLDER}/IMG_20261114_193600.jpg"),
    ImageResult(f"{FOLDER}/evil\x1b[2J.jpg", (_face(f"s{HOSTILE}", 0.9),)),
    ImageResult(f"{FOLDER}/broken.jpg", error="not an image file [bold]x[/bold]"),
]


def printed(width: int, top: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(render.identify_table(RESULTS, top))
    return console.export_text().splitlines()


@pytest.mark.parametrize("top", [1, 3])
def test_the_identify_table_fits_80_columns(top: int) -> None:
    lines = printed(80, top)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert lines[1].endswith("┓") and lines[-1].endswith("┘"), "the table was cut off"
    text = "\n".join(lines)
    for name in ("IMG_20261114_193512_HDR.jpg", "IMG_20261114_193600.jpg", "broken.jpg"):
        assert name in text, f"{name} not shown whole:\n{text}"
    assert "threshold" not in text  # the threshold line under the table states it
    rows = [line for line in lines if line.startswith("│")]
    assert "IMG_20261114_193512_HDR.jpg" in rows[0] and "barack_obama" in rows[0]
    if top == 1:  # one line per face
        assert "unknown" in rows[1] and "IMG_20261114_193600.jpg" in rows[2], text
    assert_no_raw(text)
    assert "evil\\x1b[2J.jpg" in text and "[bold]x[/bold]" in text


def test_a_wide_terminal_gets_the_threshold_and_whole_paths() -> None:
    text = "\n".join(printed(160, 1))
    assert "threshold" in text and "0.600" in text
    assert f"{FOLDER}/IMG_20261114_193512_HDR.jpg" in text
    assert_no_raw(text)


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("/a/b/photo.jpg", 20, "/a/b/photo.jpg"),
        ("/a/b/photo.jpg", 10, "…photo.jpg"),
        ("/x/李小龍.jpg", 8, "…龍.jpg"),  # wide characters take two cells
    ],
)
def test_path_end_keeps_the_file_name(text: str, width: int, expected: str) -> None:
    assert render.path_end(text, width) == expected


def test_the_table_prints_nothing_invisible() -> None:
    lines = printed(100, 1)
    assert all(unicodedata.category(c) not in ("Cc", "Cf") for line in lines for c in line)
