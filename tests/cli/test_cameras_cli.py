"""`faceledger cameras` on real temporary galleries: add, list, show, pause, resume and
remove, each on the audit ledger; bad input refused with a clear message and a non-zero
exit; and a camera's credentials in no output (tables, JSON, messages, the ledger)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.config import load_config
from faceledger.gallery.cameras import CameraSettings
from faceledger.operations import Operations

runner = CliRunner()
SECRET = "Wh1sper-s3cret"
URL = f"rtsp://door-user:{SECRET}@10.0.0.5:554/stream1"
SUB = f"rtsp://door-user:{SECRET}@10.0.0.5:554/stream2"
PURPOSE = "access control, door 1"
BASIS = "works agreement 2026-04"


def run(*args: object) -> tuple[int, str, str]:
    """One command; tables as wide as they want (each cell on one line)."""
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def ledger(db: Path) -> list[dict]:
    code, out, err = run("audit", "list", "--db", db, "--json")
    assert code == 0, err
    assert SECRET not in out
    return lines(out)


def export_text(db: Path, tmp_path: Path) -> str:
    target = tmp_path / "export.jsonl"
    code, out, err = run("audit", "export", "--db", db, "--out", target)
    assert code == 0, err
    return target.read_text() + out + err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A gallery with two watch lists and no camera yet."""
    gallery = tmp_path / "g.db"
    for name in ("staff", "banned"):
        code, _, err = run("watchlists", "create", name, "--db", gallery)
        assert code == 0, err
    return gallery


def add(db: Path, name: str = "door-1", url: str = URL, *extra: object) -> tuple[int, str, str]:
    return run(
        "cameras", "add", name, url, "--purpose", PURPOSE, "--basis", BASIS,
        "--watchlists", "staff,banned", "--db", db, *extra,
    )  # fmt: skip


def test_add_list_and_show_never_show_the_secret(db: Path, tmp_path: Path) -> None:
    code, out, err = add(db, "door-1", URL, "--detect-url", SUB, "--detect-fps", "2.5",
                         "--min-face", "24", "--transport", "udp", "--timeout", "7")  # fmt: skip
    assert code == 0, err
    assert "door-1" in out and "rtsp://***@10.0.0.5:554/stream1" in out
    assert "recorded as ledger entry" in out
    shown_outputs = [out, err]

    code, out, err = run("cameras", "list", "--db", db)
    assert code == 0, err
    assert "door-1" in out and "running" in out and "1 cameras" in out
    shown_outputs += [out, err]

    code, out, err = run("cameras", "list", "--db", db, "--json")
    assert code == 0, err
    (listed,) = lines(out)
    assert listed["url"] == "rtsp://***@10.0.0.5:554/stream1"
    assert listed["detect_url"] == "rtsp://***@10.0.0.5:554/stream2"
    assert listed["watchlists"] == ["banned", "staff"]
    assert (listed["purpose"], listed["legal_basis"]) == (PURPOSE, BASIS)
    assert (listed["detect_fps"], listed["min_face"], listed["transport"]) == (2.5, 24, "udp")
    assert listed["timeout"] == 7.0 and listed["paused"] is False
    assert listed["health"] is None
    shown_outputs += [out, err]

    code, out, err = run("cameras", "show", "door-1", "--db", db)
    assert code == 0, err
    for text in ("rtsp://***@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream2", PURPOSE,
                 BASIS, "banned, staff", "2.5", "24 px", "udp", "7 s", "running"):  # fmt: skip
        assert text in out, text
    shown_outputs += [out, err]

    code, out, err = run("cameras", "show", "door-1", "--db", db, "--json")
    assert code == 0, err
    assert lines(out) == [listed]
    shown_outputs += [out, err]
    assert all(SECRET not in text for text in shown_outputs)
    assert SECRET not in json.dumps(ledger(db)) + export_text(db, tmp_path)


def test_pause_resume_remove_each_write_an_entry_without_the_secret(
    db: Path, tmp_path: Path
) -> None:
    code, out, err = add(db, "door-1", URL, "--detect-url", SUB)
    assert code == 0, err
    shown_outputs = [out, err]
    code, out, err = run("cameras", "pause", "door-1", "--db", db)
    assert code == 0, err
    assert "paused camera door-1" in out and "recorded as ledger entry" in out
    shown_outputs += [out, err]
    code, out, _ = run("cameras", "show", "door-1", "--db", db, "--json")
    assert lines(out)[0]["paused"] is True
    code, out, _ = run("cameras", "list", "--db", db)
    assert "paused" in out and "1 paused" in out

    code, out, err = run("cameras", "resume", "door-1", "--db", db, "--json")
    assert code == 0, err
    resumed = lines(out)[0]
    assert resumed["paused"] is False and resumed["ledger_seq"] > 0
    shown_outputs += [out, err]

    code, out, err = run("cameras", "remove", "door-1", "--yes", "--db", db)
    assert code == 0, err
    assert "removed camera door-1" in out
    shown_outputs += [out, err]
    code, out, _ = run("cameras", "list", "--db", db, "--json")
    assert code == 0 and lines(out) == []

    assert all(SECRET not in text for text in shown_outputs)
    entries = [e for e in ledger(db) if e["action"].startswith("camera.")]
    assert [e["action"] for e in entries] == [
        "camera.add", "camera.pause", "camera.resume", "camera.remove",
    ]  # fmt: skip
    assert entries[-2]["seq"] == resumed["ledger_seq"]
    assert all(e["role"] == "cli" for e in entries)
    assert entries[0]["result"]["url"] == "rtsp://***@10.0.0.5:554/stream1"
    assert entries[0]["result"]["purpose"] == PURPOSE
    assert SECRET not in json.dumps(entries)
    assert SECRET not in export_text(db, tmp_path)


def test_each_command_prints_the_seq_of_its_own_entry(db: Path) -> None:
    seqs = []
    for args in (("pause",), ("resume",), ("remove", "--yes")):
        if not seqs:
            code, out, err = add(db, "door-2", URL, "--json")
            assert code == 0, err
            seqs.append(lines(out)[0]["ledger_seq"])
        code, out, err = run("cameras", args[0], "door-2", *args[1:], "--db", db, "--json")
        assert code == 0, err
        seqs.append(lines(out)[0]["ledger_seq"])
    by_seq = {e["seq"]: e["action"] for e in ledger(db)}
    assert [by_seq[s] for s in seqs] == [
        "camera.add", "camera.pause", "camera.resume", "camera.remove",
    ]  # fmt: skip


def test_watch_lists_may_be_repeated_or_comma_separated(db: Path) -> None:
    code, _, err = run(
        "cameras", "add", "gate", "http://10.0.0.9/video", "--purpose", PURPOSE,
        "--basis", BASIS, "-w", "staff", "--watchlist", "banned,staff", "--db", db,
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run("cameras", "show", "gate", "--db", db, "--json")
    assert lines(out)[0]["watchlists"] == ["banned", "staff"]
    assert lines(out)[0]["url"] == "http://10.0.0.9/video"


def test_a_name_taken_is_refused(db: Path) -> None:
    assert add(db)[0] == 0
    code, out, err = add(db, "door-1", URL.replace("stream1", "other"))
    assert code == 1
    assert "a camera named 'door-1' exists already" in err
    assert SECRET not in out + err
    assert [e["action"] for e in ledger(db)].count("camera.add") == 1


def test_a_missing_watch_list_is_named_and_nothing_is_added(db: Path) -> None:
    code, out, err = run(
        "cameras", "add", "door-1", URL, "--purpose", PURPOSE, "--basis", BASIS,
        "--watchlists", "staff,visitors", "--db", db,
    )  # fmt: skip
    assert code == 1
    assert "no watch list named 'visitors'" in err and "watchlists create" in err
    assert SECRET not in out + err
    assert run("cameras", "list", "--db", db, "--json")[1] == ""
    assert "camera.add" not in [e["action"] for e in ledger(db)]


BAD = {
    "bad-name": (("door 1", URL), "camera name 'door 1'"),
    "bad-scheme": (("door-1", f"ftp://door-user:{SECRET}@10.0.0.5/x"), "ftp://***@10.0.0.5/x"),
    "no-scheme": (("door-1", f"door-user:{SECRET}@10.0.0.5/x"), "cannot be told apart"),
    "space-in-password": (("door-1", f"rtsp://u:{SECRET} x@10.0.0.5/x"), "spaces"),
    "slash-in-password": (("door-1", f"rtsp://u:{SECRET}/x@10.0.0.5/x"), "cannot be told apart"),
    "control-in-address": (("door-1", f"rtsp://u:{SECRET}@10.0.0.5/x\x1b"), "control characters"),
    "empty-purpose": (("door-1", URL, "--purpose", " "), "purpose"),
    "empty-basis": (("door-1", URL, "--basis", "\x00\t"), "legal basis"),
    "no-watch-list": (("door-1", URL, "--watchlists", " , "), "name the watch lists"),
    "fps-zero": (("door-1", URL, "--detect-fps", "0"), "detect fps 0.0 is not in 0.1-60"),
    "fps-nan": (("door-1", URL, "--detect-fps", "nan"), "detect fps nan is not in 0.1-60"),
    "fps-huge": (("door-1", URL, "--detect-fps", "1e9"), "is not in 0.1-60"),
    "min-face": (("door-1", URL, "--min-face", "2"), "min face 2 is not in 8-2000"),
    "transport": (("door-1", URL, "--transport", "quic"), "transport 'quic'"),
    "timeout": (("door-1", URL, "--timeout", "0"), "timeout 0.0 s is not in 0.5-300"),
    "bad-sub-stream": (("door-1", URL, "--detect-url", f"file://u:{SECRET}@h/x"), "sub-stream"),
}


@pytest.mark.parametrize(("args", "message"), BAD.values(), ids=BAD.keys())
def test_bad_input_is_a_usage_error_that_names_it_and_never_shows_the_secret(
    db: Path, args: tuple[str, ...], message: str
) -> None:
    name, url, *options = args
    given = dict(zip(options[::2], options[1::2], strict=True))
    settings = {"--purpose": PURPOSE, "--basis": BASIS, "--watchlists": "staff", **given}
    flat = [item for pair in settings.items() for item in pair]
    code, out, err = run("cameras", "add", name, url, *flat, "--db", db)
    assert code == 2, (out, err)
    assert "error:" in err and message in err, err
    assert SECRET not in out + err
    assert "camera.add" not in [e["action"] for e in ledger(db)]


@pytest.mark.parametrize("command", ["show", "pause", "resume", "remove"])
def test_an_unknown_camera_is_named(db: Path, command: str) -> None:
    extra = ("--yes",) if command == "remove" else ()
    code, out, err = run("cameras", command, "nowhere", *extra, "--db", db)
    assert code == 1
    assert "no camera named 'nowhere'" in err and out == ""


def test_remove_without_yes_refuses_without_a_terminal(db: Path) -> None:
    assert add(db)[0] == 0
    code, _, err = run("cameras", "remove", "door-1", "--db", db)
    assert code == 2
    assert "pass --yes" in err
    code, out, _ = run("cameras", "list", "--db", db, "--json")
    assert [c["name"] for c in lines(out)] == ["door-1"]
    assert "camera.remove" not in [e["action"] for e in ledger(db)]


def test_a_missing_gallery_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    code, _, err = run("cameras", "list", "--db", missing)
    assert code != 0 and err
    assert not missing.exists()


def test_health_is_shown_and_scrubbed_of_the_secret(db: Path) -> None:
    assert add(db, "door-1", URL, "--detect-url", SUB)[0] == 0
    config = load_config(db=str(db), offline=True)
    with Operations(config, create=False) as ops:
        reported = {
            "state": "reconnecting",
            "fps": 4.8,
            "last_error": f"could not open {URL}: 401 (user door-user:{SECRET})",
            "detail": {"tried": [SUB, f"password {SECRET}"]},
        }
        assert ops.report_camera_health("door-1", "node-a", reported)
    code, out, err = run("cameras", "list", "--db", db)
    assert code == 0, err
    assert "reconnecting" in out and "node-a" in out
    code, out, err = run("cameras", "show", "door-1", "--db", db)
    assert code == 0, err
    assert "reconnecting" in out and "last_error" in out and "fps: 4.8" in out
    assert "rtsp://***@10.0.0.5:554/stream1" in out
    code, js, err = run("cameras", "show", "door-1", "--db", db, "--json")
    assert code == 0, err
    health = lines(js)[0]["health"]
    assert health["state"] == "reconnecting" and health["fps"] == 4.8
    assert lines(js)[0]["node"] == "node-a" and lines(js)[0]["health_at"]
    listed = run("cameras", "list", "--db", db, "--json")[1]
    assert all(SECRET not in text for text in (out, js, listed))


def test_every_command_has_an_example_in_its_help() -> None:
    for command in ("add", "list", "show", "pause", "resume", "remove"):
        code, out, _ = run("cameras", command, "--help")
        assert code == 0
        assert "Example" in out and f"faceledger cameras {command}" in out, command


def test_a_password_holding_an_at_is_hidden_and_one_holding_a_slash_refused() -> None:
    """Everything from the scheme to the last '@' is hidden, whatever the password holds;
    a '/' there would be read as the end of the host, so it is refused (percent-encode)."""
    from faceledger.errors import ConfigError
    from faceledger.gallery.cameras import masked

    at = f"rtsp://u:{SECRET}@x@10.0.0.5/x"
    assert masked(at) == "rtsp://***@10.0.0.5/x"
    assert SECRET not in str(CameraSettings("door-9", at, "p", "b", ("staff",)))
    with pytest.raises(ConfigError) as refused:
        CameraSettings("door-9", f"rtsp://u:{SECRET}/x@10.0.0.5/x", "p", "b", ("staff",))
    assert "percent-encoded" in str(refused.value) and SECRET not in str(refused.value)
