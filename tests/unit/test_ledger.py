"""The audit ledger: hash chain, tamper detection, export, concurrent writers, schema v3."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from support.clocks import T0, Ticker, sha

from faceledger.gallery import Gallery
from faceledger.ledger import GENESIS, Ledger, entry_hash
from faceledger.ledger.chain import BadEntryError, LedgerRecord

COLUMNS = ("at", "actor", "role", "action", "purpose", "case_ref", "inputs", "result",
           "gallery", "model", "prev_hash", "hash")  # fmt: skip


@pytest.fixture
def gallery(db_url: str) -> Iterator[Gallery]:
    """A fresh gallery on each backend: a SQLite file, and a real PostgreSQL database."""
    with Gallery(db_url) as g:
        yield g


@pytest.fixture
def ledger(gallery: Gallery) -> Ledger:
    return Ledger(gallery, clock=Ticker())


def fill(ledger: Ledger, n: int = 6) -> list[str]:
    """``n`` entries; returns their hashes."""
    hashes = []
    for i in range(n):
        result: Any = (
            {"subjects": [{"name": "ada", "score": 0.81 + i / 100}], "threshold": 0.5}
            if i % 2
            else {"subjects": [], "unknown": True}
        )
        entry = ledger.append(
            LedgerRecord(
                f"key-{i % 3}",
                "operator",
                "identify" if i % 2 else "search",
                purpose="investigation",
                case_ref=f"CASE-{i}",
                inputs=[sha(f"image {i}")],
                result=result,
                model="m1",
            )
        )
        hashes.append(entry.hash)
    return hashes


def tamper(gallery: Gallery, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """Raw SQL past the append-only triggers, as someone who owns the database could do
    (SQLite: drop them; PostgreSQL: the table owner disables them)."""
    with gallery.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("ALTER TABLE ledger DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_no_delete")
        for statement in statements:
            if "?" in statement:
                sql = statement.replace("?", "%s") if postgres else statement
                conn.exec_driver_sql(sql, params)
            else:
                conn.exec_driver_sql(statement)
        if postgres:
            conn.exec_driver_sql("ALTER TABLE ledger ENABLE TRIGGER USER")


def schema_version(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]


# ---- the chain ---------------------------------------------------------------------------


def test_empty_ledger_verifies_and_its_head_is_genesis(ledger: Ledger) -> None:
    report = ledger.verify()
    assert (report.ok, report.entries, report.first_bad) == (True, 0, None)
    assert ledger.head() == GENESIS
    assert ledger.verify(expected_head=GENESIS).ok


def test_genesis_entry_chains_to_zeros(gallery: Gallery, ledger: Ledger) -> None:
    entry = ledger.append(
        LedgerRecord("alice", "operator", "identify", inputs=[sha("a")], result={"unknown": True})
    )
    assert entry.seq == 1 and entry.prev_hash == GENESIS == "0" * 64
    assert entry.at == "2024-05-01T12:00:01.000000+00:00"
    assert entry.gallery == str(gallery.path) and entry.model is None
    assert ledger.head() == entry.hash
    second = ledger.append(LedgerRecord("bob", "admin", "enroll"))
    assert second.seq == 2 and second.prev_hash == entry.hash
    assert ledger.entries() == [entry, second]
    assert ledger.verify(expected_head=entry.hash).ok  # an older head: the ledger grew since


def test_clean_ledger_verifies(ledger: Ledger) -> None:
    hashes = fill(ledger, 8)
    report = ledger.verify(expected_head=hashes[-1])
    assert report.ok and report.entries == 8 and report.first_bad is None
    assert len(set(hashes)) == 8 and ledger.head() == hashes[-1]


def test_the_database_refuses_updates_and_deletes(gallery: Gallery, ledger: Ledger) -> None:
    fill(ledger, 2)
    statements = ["UPDATE ledger SET actor = 'x'", "DELETE FROM ledger"]
    if gallery.db.dialect == "postgresql":
        statements.append("TRUNCATE ledger")
    for statement in statements:
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            gallery.engine.begin() as conn,
        ):
            conn.exec_driver_sql(statement)
    assert ledger.verify().entries == 2


@pytest.mark.parametrize("column", COLUMNS)
def test_an_edited_field_names_its_entry(gallery: Gallery, ledger: Ledger, column: str) -> None:
    fill(ledger, 6)
    value = {"inputs": json.dumps([sha("other")]), "result": '{"unknown":true}'}.get(
        column, "f" * 64 if column.endswith("hash") else "edited"
    )
    tamper(gallery, f"UPDATE ledger SET {column} = ? WHERE seq = 4", params=(value,))
    report = ledger.verify()
    assert not report.ok and report.first_bad == 4, report
    assert "entry 4" in report.reason


def test_an_edited_score_is_caught(gallery: Gallery, ledger: Ledger) -> None:
    fill(ledger, 6)
    row = ledger.entries()[3]
    forged = json.dumps(row.result, separators=(",", ":")).replace("0.84", "0.94")
    assert forged != json.dumps(row.result, separators=(",", ":"))
    tamper(gallery, "UPDATE ledger SET result = ? WHERE seq = 4", params=(forged,))
    assert ledger.verify().first_bad == 4


def test_a_deleted_entry_names_the_one_after_the_gap(gallery: Gallery, ledger: Ledger) -> None:
    fill(ledger, 6)
    tamper(gallery, "DELETE FROM ledger WHERE seq = 3")
    report = ledger.verify()
    assert not report.ok and report.first_bad == 4 and report.entries == 3
    assert "entry 3 missing" in report.reason


def test_a_deleted_genesis_is_caught(gallery: Gallery, ledger: Ledger) -> None:
    fill(ledger, 3)
    tamper(gallery, "DELETE FROM ledger WHERE seq = 1")
    report = ledger.verify()
    assert not report.ok and report.first_bad == 2


def test_swapped_entries_are_caught(gallery: Gallery, ledger: Ledger) -> None:
    fill(ledger, 6)
    rest = ", ".join(COLUMNS)
    tamper(
        gallery,  # exchange the contents of entries 3 and 4, keeping the seq order
        f"CREATE TEMP TABLE t AS SELECT seq, {rest} FROM ledger WHERE seq IN (3, 4)",
        "DELETE FROM ledger WHERE seq IN (3, 4)",
        f"INSERT INTO ledger (seq, {rest}) SELECT 7 - seq, {rest} FROM t",
    )
    assert [e.case_ref for e in ledger.entries()] == [f"CASE-{i}" for i in (0, 1, 3, 2, 4, 5)]
    report = ledger.verify()
    assert not report.ok and report.first_bad == 3


def test_a_rehashed_reorder_breaks_the_chain(gallery: Gallery, ledger: Ledger) -> None:
    """Someone who recomputes the moved entry's own hash still breaks the links."""
    fill(ledger, 5)
    entries = ledger.entries()
    # entry 4's content moved to seq 3, linked to entry 2 and hashed again
    moved = {**entries[3].as_json(), "seq": 3, "prev_hash": entries[2].prev_hash}
    moved["hash"] = entry_hash(moved)
    tamper(
        gallery,
        "UPDATE ledger SET at = ?, actor = ?, action = ?, case_ref = ?, inputs = ?, result = ?,"
        " hash = ? WHERE seq = 3",
        params=(
            moved["at"],
            moved["actor"],
            moved["action"],
            moved["case_ref"],
            json.dumps(moved["inputs"]),
            json.dumps(moved["result"]),
            moved["hash"],
        ),
    )
    report = ledger.verify()  # entry 3 hashes fine now, but entry 4 does not link to it
    assert not report.ok and report.first_bad == 4 and "chain is broken" in report.reason


def test_truncation_is_caught_only_with_the_expected_head(gallery: Gallery, ledger: Ledger) -> None:
    hashes = fill(ledger, 6)
    noted = ledger.head()
    tamper(gallery, "DELETE FROM ledger WHERE seq > 4")
    assert ledger.verify().ok  # a chain alone cannot see its end cut off
    report = ledger.verify(expected_head=noted)
    assert not report.ok and report.entries == 4 and report.first_bad == 5
    assert noted in report.reason and "cut off" in report.reason
    assert ledger.verify(expected_head=hashes[3]).ok

    after = ledger.append(LedgerRecord("alice", "operator", "search"))
    if gallery.db.dialect == "postgresql":
        # Deleting needed the table owner to disable the triggers (the application's role
        # cannot, see docs/SERVICE.md); the highest stored seq is the next one's base.
        assert after.seq == 5 and after.prev_hash == hashes[3]
        return
    # SQLite: AUTOINCREMENT's counter, so a seq is never reused
    assert after.seq == 7 and after.prev_hash == hashes[3]
    report = ledger.verify()
    assert not report.ok and report.first_bad == 7 and "5-6 missing" in report.reason


# ---- content rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        b"\x89PNG...",
        {"crop": bytearray(b"abc")},
        {"subjects": [{"name": "ada", "face": np.zeros((112, 112, 3), np.uint8)}]},
        [memoryview(b"abc")],
        {"image": "data:image/png;base64," + "A" * 5000},
        {"score": float("nan")},
        {1: "non-string key"},
        {"when": datetime(2024, 1, 1)},
    ],
)
def test_results_that_could_carry_images_are_refused(ledger: Ledger, result: Any) -> None:
    with pytest.raises(ValueError):
        ledger.append(LedgerRecord("alice", "operator", "identify", result=result))
    assert ledger.entries() == []


def test_inputs_must_be_sha256_and_fields_non_empty(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="sha256"):
        ledger.append(LedgerRecord("alice", "operator", "identify", inputs=["face.jpg"]))
    with pytest.raises(ValueError, match="actor"):
        ledger.append(LedgerRecord("", "operator", "identify"))
    assert ledger.entries() == []


def test_numpy_scores_are_stored_as_plain_numbers(ledger: Ledger) -> None:
    entry = ledger.append(
        LedgerRecord(
            "alice", "operator", "identify", result={"score": np.float32(0.5), "n": np.int64(2)}
        )
    )
    assert entry.result == {"score": 0.5, "n": 2}
    assert ledger.entries()[0].result == entry.result and ledger.verify().ok


def test_entries_filter(ledger: Ledger) -> None:
    fill(ledger, 6)
    assert [e.seq for e in ledger.entries(action="identify")] == [2, 4, 6]
    assert [e.seq for e in ledger.entries(actor="key-0")] == [1, 4]
    assert [e.seq for e in ledger.entries(since=T0 + timedelta(seconds=5))] == [5, 6]
    assert [e.seq for e in ledger.entries(action="search", limit=2)] == [1, 3]


# ---- export ------------------------------------------------------------------------------


def test_export_can_be_verified_without_faceledger(ledger: Ledger) -> None:
    fill(ledger, 5)
    buffer = io.StringIO()
    assert ledger.export(buffer) == 5
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines == [e.as_json() for e in ledger.entries()]

    # What a regulator does, with nothing but the documented rule:
    prev = "0" * 64
    for line in lines:
        body = {k: v for k, v in line.items() if k != "hash"}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == line["hash"]
        assert line["prev_hash"] == prev
        prev = line["hash"]
    assert prev == ledger.head()
    assert set(lines[0]) == {*COLUMNS, "seq"}


# ---- concurrency -------------------------------------------------------------------------


def test_two_writers_do_not_fork_the_chain(gallery: Gallery) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        own = Ledger(gallery.engine, gallery="g")
        try:
            start.wait()
            for i in range(50):
                own.append(LedgerRecord(name, "operator", "search", inputs=[sha(f"{name} {i}")]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ledger = Ledger(gallery)
    entries = ledger.entries()
    assert len(entries) == 100 and [e.seq for e in entries] == list(range(1, 101))
    assert len({e.prev_hash for e in entries}) == 100  # no two entries share a parent
    assert ledger.verify().ok


# ---- schema ------------------------------------------------------------------------------


def test_a_crafted_deeply_nested_entry_is_named_not_a_recursion_error(
    gallery: Gallery, ledger: Ledger
) -> None:
    """Once, '[' * 100000 in a row made verify, list and export end in a RecursionError."""
    fill(ledger, 3)
    tamper(gallery, "UPDATE ledger SET result = ? WHERE seq = 2", params=("[" * 100_000,))
    report = ledger.verify()
    assert not report.ok and report.first_bad == 2 and "unreadable" in report.reason
    with pytest.raises(BadEntryError, match=r"ledger entry 2 is unreadable: .*nested"):
        ledger.entries()
    with pytest.raises(BadEntryError, match="entry 2"):
        ledger.export(io.StringIO())
    assert [e.seq for e in ledger.entries(action="search")] == [1, 3]  # the others still read


def test_results_nested_too_deeply_are_refused_on_the_way_in(ledger: Ledger) -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than"):
        ledger.append(LedgerRecord("alice", "operator", "identify", result=deep))
    assert ledger.verify().entries == 0
