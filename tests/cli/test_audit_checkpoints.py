"""Signed checkpoints and inclusion proofs from the command line, end to end: make a key,
sign a checkpoint, let the ledger grow, verify it, prove one entry and check the proof
with the standalone script; truncation, a wrong key and unusable files are named."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from faceledger import Operations, load_config
from faceledger.ledger.chain import LedgerRecord

runner = CliRunner()
SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "verify_inclusion.py"


def run(*args: object) -> tuple[int, str, str]:
    from faceledger.cli.main import app

    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def fill(db: str, n: int) -> None:
    """``n`` more entries, as searches would leave them."""
    with Operations(load_config(db=db)) as ops:
        for i in range(n):
            ops.ledger.append(
                LedgerRecord("officer", "operator", "identify", purpose="door", result={"i": i})
            )


def tamper(db: str, statement: str) -> None:
    """Raw SQL past the ledger's append-only triggers, as the database's owner could."""
    with Operations(load_config(db=db)) as ops, ops.db.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("ALTER TABLE ledger DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_no_delete")
        conn.exec_driver_sql(statement)
        if postgres:
            conn.exec_driver_sql("ALTER TABLE ledger ENABLE TRIGGER USER")


@pytest.fixture
def db(db_url: str) -> str:
    fill(db_url, 3)
    return db_url


@pytest.fixture
def signed(db: str, tmp_path: Path) -> dict[str, Any]:
    """A key (entry 4) and a checkpoint of entries 1..4 written to a file (entry 5)."""
    key, cp = tmp_path / "cp.key", tmp_path / "checkpoint.txt"
    code, out, err = run("audit", "signing-key", "create", "--out", key, "--db", db)
    assert code == 0, err
    vkey = out.strip()
    assert "+" in vkey and "recorded as ledger entry 4" in err
    code, out, err = run("audit", "checkpoint", "--key", key, "--out", cp, "--db", db)
    assert code == 0, err
    assert out == "" and "checkpoint of 4 entries" in err and "ledger entry 5" in err
    return {"key": key, "cp": cp, "vkey": vkey}


def test_key_checkpoint_grow_verify(db: str, signed: dict[str, Any], tmp_path: Path) -> None:
    key, cp, vkey = signed["key"], signed["cp"], signed["vkey"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "BEGIN PRIVATE KEY" in key.read_text()
    assert stat.S_IMODE(cp.stat().st_mode) == 0o644  # a checkpoint is public
    note = cp.read_text()
    origin, size, _root, blank, signature = note.split("\n")[:5]
    assert origin.startswith("faceledger/") and size == "4" and blank == ""
    assert signature.startswith(f"— {vkey.split('+')[0]} ")
    fill(db, 6)
    code, out, err = run("audit", "verify", "--db", db, "--checkpoint", cp, "--vkey", vkey)
    assert code == 0, err
    assert "ledger intact" in out and "checkpoint holds:" in out
    assert "(11 entries) is an append-only extension of the checkpoint (4 entries" in out
    code, out, _ = run("audit", "verify", "--db", db, "--checkpoint", cp, "--vkey", vkey, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["checkpoint"]["ok"]
    assert report["checkpoint"]["ledger_size"] == 11 and report["checkpoint"]["consistency_proof"]
    vkey_file = tmp_path / "vkey.pub"
    vkey_file.write_text(vkey + "\n")
    assert run("audit", "verify", "--db", db, "--checkpoint", cp, "--vkey", vkey_file)[0] == 0
    code, out, _ = run("audit", "list", "--db", db, "--json", "--action", "audit.checkpoint")
    (entry,) = [json.loads(line) for line in out.splitlines()]
    assert entry["result"]["note"] == note and entry["result"]["size"] == 4


def test_checkpoint_to_stdout_and_as_json(db: str, signed: dict[str, Any]) -> None:
    code, out, err = run("audit", "checkpoint", "--key", signed["key"], "--db", db)
    assert code == 0, err
    assert out.split("\n")[1] == "5" and out.endswith("\n") and "\n\n— " in out
    code, out, err = run("audit", "checkpoint", "--key", signed["key"], "--db", db, "--json")
    made = json.loads(out)
    assert code == 0 and made["size"] == 6 and made["seq"] == 7 and made["vkey"] == signed["vkey"]


def test_truncation_fails_verification(db: str, signed: dict[str, Any]) -> None:
    tamper(db, "DELETE FROM ledger WHERE seq > 2")
    args = ("audit", "verify", "--db", db, "--checkpoint", signed["cp"], "--vkey", signed["vkey"])
    code, out, err = run(*args)
    assert code == 1
    assert "ledger intact" in out  # the chain alone does not see it
    assert "checkpoint FAILED: truncated: the ledger has 2 entries, the checkpoint covers 4" in err
    code, out, _ = run(*args, "--json")
    assert code == 1 and json.loads(out)["checkpoint"]["failure"] == "truncated"


def test_a_wrong_key_fails_verification(db: str, signed: dict[str, Any], tmp_path: Path) -> None:
    code, other, err = run(
        "audit", "signing-key", "create", "--out", tmp_path / "b.key", "--db", db
    )
    assert code == 0, err
    args = ("audit", "verify", "--db", db, "--checkpoint", signed["cp"], "--vkey", other.strip())
    code, _, err = run(*args)
    assert code == 1 and "checkpoint FAILED: bad signature" in err


def test_prove_and_check_with_the_standalone_script(
    db: str, signed: dict[str, Any], tmp_path: Path
) -> None:
    fill(db, 2)
    proof = tmp_path / "proof.json"
    code, out, err = run(
        "audit", "prove", "3", "--out", proof, "--checkpoint", signed["cp"], "--db", db, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["tree_size"] == 4 and "entry 3 of 4" in err
    document = json.loads(proof.read_text())
    assert document["entry"]["seq"] == 3 and document["checkpoint"] == signed["cp"].read_text()
    done = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(proof), "--vkey", signed["vkey"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: entry 3 (identify, ")
    code, out, _ = run("audit", "prove", "7", "--db", db)  # today's root: 7 entries
    assert code == 0 and json.loads(out)["tree_size"] == 7 and json.loads(out)["checkpoint"] is None


def test_unusable_files_and_options_are_named(
    db: str, signed: dict[str, Any], tmp_path: Path
) -> None:
    code, _, err = run("audit", "checkpoint", "--key", tmp_path / "absent.key", "--db", db)
    assert code == 2 and "no signing key there" in err
    signed["key"].chmod(0o644)
    code, _, err = run("audit", "checkpoint", "--key", signed["key"], "--db", db)
    assert code == 0 and "warning:" in err and "chmod 600" in err
    code, _, err = run("audit", "signing-key", "create", "--out", signed["key"], "--db", db)
    assert code == 2 and "never overwritten" in err
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    code, _, err = run("audit", "verify", "--db", db, "--checkpoint", bad, "--vkey", signed["vkey"])
    assert code == 1 and f"{bad}: not a checkpoint note" in err
    code, _, err = run("audit", "verify", "--db", db, "--checkpoint", signed["cp"])
    assert code == 2 and "--checkpoint needs --vkey" in err
    missing = tmp_path / "nope.txt"
    code, _, err = run("audit", "verify", "--db", db, "--checkpoint", missing, "--vkey", "x")
    assert code == 2 and "no such checkpoint file" in err
    code, _, err = run("audit", "verify", "--db", db, "--checkpoint", signed["cp"], "--vkey", "x")
    assert code == 2 and "neither a vkey" in err
    code, _, err = run("audit", "prove", "99", "--db", db)
    assert code == 1 and "no entry 99 to prove" in err
    code, _, err = run("audit", "signing-key", "create", "--out", tmp_path / "n.key",
                       "--name", "has space", "--db", db)  # fmt: skip
    assert code == 2 and "cannot name a signing key" in err
