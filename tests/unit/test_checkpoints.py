"""Signed checkpoints of the ledger (C2SP notes over an RFC 9162 Merkle tree), on SQLite
and PostgreSQL: a checkpoint is written and recorded, the ledger grows and still verifies;
a cut-off tail, an edited entry, a consistent rewrite of the chain and a wrong key are
each named; an inclusion proof checks with the standalone script, without faceledger."""

from __future__ import annotations

import ast
import base64
import json
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clocks import Ticker, sha

from faceledger import Acting, Operations, load_config
from faceledger.errors import ConfigError, InputError, NotFoundError
from faceledger.ledger import entry_hash
from faceledger.ledger.chain import LedgerRecord
from faceledger.ledger.checkpoint import (
    BadSignatureError,
    Checkpoint,
    MalformedNoteError,
    SigningKey,
    Verifier,
    entry_leaf,
    key_hash,
    open_note,
    sign_note,
    split_note,
)
from faceledger.ledger.merkle import leaf_hash, root, verify_consistency

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "verify_inclusion.py"
ME = Acting("auditor", "admin", "monthly checkpoint")

# The example key and note of Go's golang.org/x/mod/sumdb/note (note_test.go).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # base64(0x01 || seed)
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


@pytest.fixture
def ops(db_url: str) -> Iterator[Operations]:
    with Operations(load_config(db=db_url), clock=Ticker()) as o:
        yield o


@pytest.fixture
def key(ops: Operations, tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.key"
    ops.create_signing_key(ME, path)
    return path


def fill(ops: Operations, n: int) -> None:
    """``n`` entries like searches leave (floats, nulls, non-ASCII text)."""
    for i in range(n):
        ops.ledger.append(
            LedgerRecord(
                f"officer-{i % 3}",
                "operator",
                "identify",
                purpose="enquête" if i % 2 else None,
                case_ref=f"CASE-{i}",
                inputs=(sha(f"image {i}"),),
                result={"faces": 1, "matches": [{"subject": "ada", "score": 0.5 + i / 97}]},
                model="m1",
            )
        )


def vkey_of(path: Path) -> str:
    return SigningKey.load(path).verifier.vkey


def key_hash_of(vkey: str) -> str:
    return Verifier.parse(vkey).key_hash.hex()


def proof_hex(proof: list[bytes]) -> Iterator[str]:
    return (p.hex() for p in proof)


def tamper(ops: Operations, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """Raw SQL past the append-only triggers, as the database's owner could run it."""
    with ops.db.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("ALTER TABLE ledger DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_no_delete")
        for statement in statements:
            sql = statement.replace("?", "%s") if postgres else statement
            if params:
                conn.exec_driver_sql(sql, params)
            else:
                conn.exec_driver_sql(sql)
        if postgres:
            conn.exec_driver_sql("ALTER TABLE ledger ENABLE TRIGGER USER")


def rewrite(ops: Operations, seq: int, actor: str) -> None:
    """Change entry ``seq``'s actor and recompute the hash chain from it on, as someone who
    owns the database and knows the format would: the chain verifies afterwards."""
    entries = [e.as_json() for e in ops.audit_entries()]
    entries[seq - 1]["actor"] = actor
    for i in range(seq - 1, len(entries)):
        if i:
            entries[i]["prev_hash"] = entries[i - 1]["hash"]
        entries[i]["hash"] = entry_hash(entries[i])
    for e in entries[seq - 1 :]:
        tamper(
            ops,
            "UPDATE ledger SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            params=(e["actor"], e["prev_hash"], e["hash"], e["seq"]),
        )


# ---- notes and keys, without a database --------------------------------------------------


def test_notes_match_the_go_reference_byte_for_byte() -> None:
    key = SigningKey.from_seed("PeterNeumann", base64.b64decode(GO_SEED)[1:])
    assert key.verifier.vkey == GO_VKEY
    assert key.verifier == Verifier.parse(GO_VKEY)
    assert key_hash("PeterNeumann", key.verifier.public).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, key) == GO_NOTE
    assert open_note(GO_NOTE, Verifier.parse(GO_VKEY)) == GO_TEXT
    with pytest.raises(BadSignatureError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), Verifier.parse(GO_VKEY))


def test_a_checkpoint_note_round_trips_and_names_a_wrong_key() -> None:
    key, other = SigningKey.generate("faceledger/t"), SigningKey.generate("faceledger/t")
    made = Checkpoint("faceledger/t", 20, bytes(range(32)))
    note = made.to_note(key)
    body, _, signature = note.partition("\n\n")
    assert body.split("\n") == ["faceledger/t", "20", base64.b64encode(bytes(range(32))).decode()]
    assert signature.startswith("— faceledger/t ") and signature.endswith("\n")
    assert len(base64.b64decode(signature.split()[-1])) == 4 + 64
    assert Checkpoint.parse(note, key.verifier) == made
    with pytest.raises(BadSignatureError, match="no signature by faceledger/t"):
        Checkpoint.parse(note, other.verifier)
    cosigned = note + sign_note(made.body(), other).split("\n\n")[1]  # a second signature line
    assert Checkpoint.parse(cosigned, other.verifier) == made
    assert len(split_note(cosigned)[1]) == 2


@pytest.mark.parametrize(
    ("note", "why"),
    [
        ("faceledger/t\n20\n", "no blank line"),
        ("faceledger/t\n20\nAAAA\n\n— k AAAAAAA=\n", "root hash is 3 bytes"),
        ("faceledger/t\n020\n" + "A" * 43 + "=\n\n— k AAAAAAA=\n", "not a decimal"),
        ("faceledger/t\n20\n" + "A" * 43 + "=\n\n-- k AAAAAAA=\n", "not a signature line"),
        ("faceledger/t\n20\n" + "A" * 43 + "=\n\n— k AAA\n", "not base64"),
        ("faceledger/t\n20\n" + "A" * 43 + "=\n\n— k AAAAAAA=", "does not end with a newline"),
        ("faceledger/t\n20\x07\n" + "A" * 43 + "=\n\n— k AAAAAAA=\n", "control characters"),
    ],
)
def test_malformed_notes_are_named(note: str, why: str) -> None:
    verifier = SigningKey.generate("k").verifier
    with pytest.raises(MalformedNoteError, match=why):
        Checkpoint.parse(note, verifier)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # hash
        "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not ed25519
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # a space
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(ConfigError):
        Verifier.parse(vkey)


def test_key_names_follow_the_signed_note_rules() -> None:
    for bad in ("", "a b", "a+b", "a\tb"):
        with pytest.raises(ConfigError, match="cannot name a signing key"):
            SigningKey.generate(bad)


# ---- keys on the record ----------------------------------------------------------------------


def test_a_signing_key_is_a_0600_file_and_only_its_public_half_is_recorded(
    ops: Operations, tmp_path: Path
) -> None:
    path = tmp_path / "k.key"
    made = ops.create_signing_key(ME, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "-----BEGIN PRIVATE KEY-----" in text and f"vkey: {made.value.vkey}" in text
    assert SigningKey.load(path).verifier == made.value
    entry = made.entry
    assert (entry.action, entry.actor, entry.purpose) == ("audit.key.create", "auditor", ME.purpose)
    assert entry.result["vkey"] == made.value.vkey and entry.result["algorithm"] == "ed25519"
    assert made.value.name == ops.checkpoint_origin
    if ops.db.dialect == "sqlite":
        assert ops.checkpoint_origin == "faceledger/gallery"  # the file's name, not its path
    recorded = json.dumps([e.as_json() for e in ops.audit_entries()])
    assert "PRIVATE" not in recorded and text.split("-----")[2].strip()[:40] not in recorded
    with pytest.raises(ConfigError, match="never overwritten"):
        ops.create_signing_key(ME, path)
    rotated = ops.create_signing_key(ME, tmp_path / "k2.key", name="faceledger/rotated")
    assert rotated.value.name == "faceledger/rotated"
    assert [e.result["vkey"] for e in ops.signing_keys()] == [made.value.vkey, rotated.value.vkey]


def test_a_missing_unrecorded_or_open_key_file(ops: Operations, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no signing key there"):
        ops.checkpoint(ME, tmp_path / "absent.key")
    stray = tmp_path / "stray.key"
    SigningKey.generate("faceledger/gallery").save(stray)
    with pytest.raises(ConfigError, match="was not created for this ledger"):
        ops.checkpoint(ME, stray)
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(ConfigError, match="not a faceledger signing key file"):
        ops.checkpoint(ME, tmp_path / "junk.key")
    key = tmp_path / "open.key"
    ops.create_signing_key(ME, key)
    key.chmod(0o644)
    made = ops.checkpoint(ME, key)
    assert made.value.warnings and "chmod 600" in made.value.warnings[0]


# ---- checkpoints and the ledger --------------------------------------------------------------


def test_a_checkpoint_covers_every_entry_before_its_own(ops: Operations, key: Path) -> None:
    fill(ops, 5)  # entries 2-6; the key's creation is entry 1
    made = ops.checkpoint(ME, key)
    cp = made.value.checkpoint
    assert cp.size == 6 and made.entry.seq == 7 and made.entry.action == "audit.checkpoint"
    assert made.entry.result == {
        "origin": cp.origin,
        "size": 6,
        "root": cp.root.hex(),
        "key": f"{Verifier.parse(made.value.vkey).name}+{key_hash_of(made.value.vkey)}",
        "note": made.value.note,
    }
    leaves = [leaf_hash(entry_leaf(e)) for e in ops.audit_entries()]
    assert cp.root == root(leaves[:6])
    assert Checkpoint.parse(made.value.note, Verifier.parse(made.value.vkey)) == cp
    assert not made.value.warnings


def test_a_grown_ledger_verifies_against_its_checkpoint(ops: Operations, key: Path) -> None:
    fill(ops, 4)
    note = ops.checkpoint(ME, key).value.note
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.ok and (report.checkpoint_size, report.ledger_size) == (5, 6)
    fill(ops, 9)
    second = ops.checkpoint(ME, key).value.note
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.ok and report.failure is None, report.reason
    assert (report.checkpoint_size, report.ledger_size) == (5, 16)
    assert "append-only extension" in report.reason
    proof = [bytes.fromhex(h) for h in report.consistency_proof]
    assert report.checkpoint_root and report.ledger_root
    assert verify_consistency(
        5, 16, proof, bytes.fromhex(report.checkpoint_root), bytes.fromhex(report.ledger_root)
    )
    assert ops.verify_checkpoint(second, vkey_of(key)).ok
    assert json.loads(json.dumps(report.as_json()))["consistency_proof"] == list(proof_hex(proof))


def test_the_first_checkpoint_covers_its_keys_entry(ops: Operations, tmp_path: Path) -> None:
    ops.create_signing_key(ME, tmp_path / "first.key")
    made = ops.checkpoint(ME, tmp_path / "first.key")
    assert made.value.checkpoint.size == 1 and made.entry.seq == 2  # only the key's entry
    assert ops.verify_checkpoint(made.value.note, made.value.vkey).ok


def test_concurrent_appends_never_come_between_a_tree_and_its_record(
    ops: Operations, key: Path, db_url: str
) -> None:
    def append() -> None:
        with Operations(load_config(db=db_url)) as other:
            fill(other, 30)

    writer = threading.Thread(target=append)
    writer.start()
    notes = [ops.checkpoint(ME, key) for _ in range(5)]
    writer.join()
    for made in notes:
        assert made.entry.seq == made.value.checkpoint.size + 1
        assert ops.verify_checkpoint(made.value.note, made.value.vkey).ok
    assert len(ops.audit_entries()) == 1 + 30 + 5


def test_a_cut_off_tail_is_named_truncation(ops: Operations, key: Path) -> None:
    fill(ops, 18)
    note = ops.checkpoint(ME, key).value.note  # covers 1..19
    fill(ops, 2)
    tamper(ops, "DELETE FROM ledger WHERE seq > 12")
    assert ops.audit_verify().ok  # the chain alone cannot tell
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert not report.ok and report.failure == "truncated"
    assert report.reason == "truncated: the ledger has 12 entries, the checkpoint covers 19"
    assert report.first_bad == 13


def test_a_consistent_rewrite_is_named_and_bounded_by_recorded_checkpoints(
    ops: Operations, key: Path
) -> None:
    fill(ops, 5)
    ops.checkpoint(ME, key)  # covers 1..6, recorded as entry 7
    fill(ops, 12)
    note = ops.checkpoint(ME, key).value.note  # covers 1..19
    rewrite(ops, 9, "nobody")
    assert ops.audit_verify().ok  # the recomputed chain verifies
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert not report.ok and report.failure == "rewritten"
    assert report.reason.startswith(
        "rewritten: entries 1..19 no longer hash to the checkpoint's root"
    )
    assert "one of 7..19; entries 1..6 still match the signed checkpoint recorded in entry 7" in (
        report.reason
    )
    assert report.first_bad is None


def test_a_rewrite_between_two_checkpoints_is_located(ops: Operations, key: Path) -> None:
    fill(ops, 5)
    ops.checkpoint(ME, key)  # covers 1..6 (entry 7)
    ops.checkpoint(ME, key)  # covers 1..7 (entry 8)
    fill(ops, 12)
    note = ops.checkpoint(ME, key).value.note  # covers 1..20
    rewrite(ops, 7, "nobody")
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.reason == (
        "rewritten: entries 1..20 no longer hash to the checkpoint's root (first differing entry 7)"
    )
    assert report.first_bad == 7


def test_an_edit_without_rechaining_is_located_by_the_chain(ops: Operations, key: Path) -> None:
    fill(ops, 19)
    note = ops.checkpoint(ME, key).value.note  # covers 1..20
    tamper(ops, "UPDATE ledger SET actor = 'nobody' WHERE seq = 7")
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.failure == "rewritten" and report.first_bad == 7
    assert "(first differing entry 7: entry 7 was altered" in report.reason


def test_an_edit_after_the_checkpoint_breaks_the_chain(ops: Operations, key: Path) -> None:
    fill(ops, 3)
    note = ops.checkpoint(ME, key).value.note  # covers 1..4
    fill(ops, 3)
    tamper(ops, "UPDATE ledger SET actor = 'nobody' WHERE seq = 6")
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.failure == "broken" and report.first_bad == 6
    assert "entry 6 was altered" in report.reason


def test_a_tail_cut_and_written_again_is_a_rewrite(ops: Operations, key: Path) -> None:
    fill(ops, 5)
    note = ops.checkpoint(ME, key).value.note  # covers 1..6
    tamper(ops, "DELETE FROM ledger WHERE seq > 4")  # cut, then go on writing: 8 entries again
    fill(ops, 4)
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.failure == "rewritten" and report.ledger_size == 8
    if ops.audit_verify().ok:  # PostgreSQL hands out 5..8 again: a clean fork of the chain
        assert "the first differing entry is one of 1..6" in report.reason
    else:  # SQLite never reuses a number: the gap shows where the history was cut
        assert "(first differing entry 5: entries 5-7 missing" in report.reason


def test_the_wrong_key_is_a_bad_signature(ops: Operations, key: Path, tmp_path: Path) -> None:
    fill(ops, 2)
    note = ops.checkpoint(ME, key).value.note
    stranger = SigningKey.generate(SigningKey.load(key).name).verifier.vkey  # same name
    report = ops.verify_checkpoint(note, stranger)
    assert not report.ok and report.failure == "bad signature"
    assert report.reason.startswith("bad signature: the note carries no signature by")
    forged = note.replace("\n3\n", "\n2\n", 1)
    report = ops.verify_checkpoint(forged, vkey_of(key))
    assert report.failure == "bad signature" and "does not verify" in report.reason


def test_another_ledgers_checkpoint_is_named(ops: Operations, key: Path) -> None:
    fill(ops, 2)
    note = ops.checkpoint(ME, key, origin="example.org/other").value.note
    report = ops.verify_checkpoint(note, vkey_of(key))
    assert report.failure == "origin" and "example.org/other" in report.reason
    assert ops.verify_checkpoint(note, vkey_of(key), origin="example.org/other").ok


def test_malformed_input_raises(ops: Operations, key: Path) -> None:
    with pytest.raises(MalformedNoteError):
        ops.verify_checkpoint("not a note", vkey_of(key))
    with pytest.raises(ConfigError):
        ops.verify_checkpoint("x\n1\n\n— k AAAAAAA=\n", "nonsense")
    assert issubclass(MalformedNoteError, InputError)


# ---- inclusion proofs, checked without faceledger --------------------------------------------


def run_script(*args: str | Path, block: bool = False) -> subprocess.CompletedProcess[str]:
    """The standalone verifier in an isolated interpreter (-I: no PYTHONPATH, no user site,
    the script's folder not on the path); ``block`` also makes faceledger unimportable."""
    argv = [str(a) for a in args]
    if block:
        code = (
            "import runpy, sys; sys.modules['faceledger'] = None; "
            f"sys.argv = {[str(SCRIPT), *argv]!r}; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
        )
        command = [sys.executable, "-I", "-c", code]
    else:
        command = [sys.executable, "-I", str(SCRIPT), *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_standalone_verifier_imports_no_faceledger() -> None:
    allowed = {"__future__", "argparse", "base64", "binascii", "hashlib", "json", "sys"}
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed | {"cryptography"}, name


def test_an_inclusion_proof_checks_with_the_standalone_script(
    ops: Operations, key: Path, tmp_path: Path
) -> None:
    fill(ops, 11)
    note = ops.checkpoint(ME, key).value.note  # covers 1..12
    fill(ops, 3)
    vkey = tmp_path / "vkey"
    vkey.write_text(vkey_of(key) + "\n")
    for seq in (1, 5, 12):
        document = ops.prove(seq, checkpoint=note)
        assert document["tree_size"] == 12 and document["leaf_index"] == seq - 1
        assert document["entry"]["seq"] == seq and document["checkpoint"] == note
        path = tmp_path / f"proof-{seq}.json"
        path.write_text(json.dumps(document))
        done = run_script(path, "--vkey", vkey, block=seq == 5)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"OK: entry {seq} ")
    forged = {**document, "entry": {**document["entry"], "actor": "nobody"}}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    done = run_script(tmp_path / "forged.json", "--vkey", vkey_of(key))
    assert done.returncode == 1 and "hash does not match its fields" in done.stderr
    stranger = SigningKey.generate("faceledger/gallery").verifier.vkey
    done = run_script(tmp_path / "proof-1.json", "--vkey", stranger)
    assert done.returncode == 1 and "bad signature" in done.stderr


def test_a_proof_against_todays_root_needs_a_matching_checkpoint(
    ops: Operations, key: Path, tmp_path: Path
) -> None:
    fill(ops, 6)
    document = ops.prove(3)
    assert document["checkpoint"] is None and document["tree_size"] == 7
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(document))
    done = run_script(path, "--vkey", vkey_of(key))
    assert done.returncode == 1 and "give --checkpoint" in done.stderr
    cp = tmp_path / "cp"
    cp.write_text(ops.checkpoint(ME, key).value.note)  # covers 1..7: the proof's tree
    done = run_script(path, "--vkey", vkey_of(key), "--checkpoint", cp)
    assert done.returncode == 0, done.stderr


def test_proofs_that_cannot_be_made(ops: Operations, key: Path) -> None:
    fill(ops, 3)
    note = ops.checkpoint(ME, key).value.note  # covers 1..4
    fill(ops, 2)
    with pytest.raises(NotFoundError, match=r"the checkpoint covers entries 1\.\.4"):
        ops.prove(6, checkpoint=note)
    with pytest.raises(NotFoundError, match=r"the ledger has entries 1\.\.7"):
        ops.prove(8)
    tamper(ops, "UPDATE ledger SET actor = 'nobody' WHERE seq = 2")
    with pytest.raises(ConfigError, match="no longer matches this checkpoint"):
        ops.prove(1, checkpoint=note)
