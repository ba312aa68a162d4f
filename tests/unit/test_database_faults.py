"""Faults of a shared database that must get a clear answer, not a stall or a traceback:
a database locked past the busy timeout, and an erasure while another connection reads."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.clocks import sha

from faceledger.db import Database
from faceledger.errors import StorageBusyError
from faceledger.gallery import Gallery, NewTemplate
from faceledger.ledger import Ledger
from faceledger.ledger.chain import LedgerRecord


def template(source: str, crop: bytes) -> NewTemplate:
    return NewTemplate(
        embedding=np.asarray((1.0, 0.0, 0.0), dtype=np.float32),
        model_id="m1",
        source_name=source,
        source_sha256=sha(source),
        quality=0.9,
        det_score=0.99,
        crop_png=crop,
        crop_geometry={"box": [1.0, 2.0, 30.0, 40.0]},
    )


def files_of(path: Path) -> bytes:
    """The database file, its write-ahead log and its shared memory, as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.iterdir()) if p.is_file())


def test_a_write_locked_past_the_busy_timeout_is_a_clear_busy_error(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    Database(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with Database(path, busy_timeout_s=0.5) as db:
            ledger = Ledger(db)
            started = time.monotonic()
            with pytest.raises(StorageBusyError) as caught:
                ledger.append(LedgerRecord("alice", "operator", "identify"))
            waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.4 < waited < 3.0
    message = str(caught.value)
    assert str(path) in message and "busy" in message and "try again" in message


def test_postgresql_writer_waiting_past_the_timeout_is_a_busy_error(pg_url: str) -> None:
    with Database(pg_url) as first, Database(pg_url, busy_timeout_s=0.5) as second:
        with first.write():  # holds the one write lock
            started = time.monotonic()
            with pytest.raises(StorageBusyError, match="busy"):
                Ledger(second).append(LedgerRecord("alice", "operator", "identify"))
            assert time.monotonic() - started < 3.0
        assert Ledger(second).append(LedgerRecord("alice", "operator", "identify")).seq == 1


def test_an_unreachable_server_is_a_busy_error_naming_it_without_its_password() -> None:
    with pytest.raises(StorageBusyError) as caught:
        Database("postgresql://app:s3cret@127.0.0.1:9/faceledger", busy_timeout_s=1)
    message = str(caught.value)
    assert "127.0.0.1:9/faceledger" in message and "s3cret" not in message


def test_erasure_beside_an_open_reader_neither_stalls_nor_leaves_the_crop_behind(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gallery.db"
    crops = [os.urandom(48) + f"crop of ada {i}".encode() for i in range(3)]
    with Gallery(path) as gallery:
        gallery.enroll("ada", "consent", [template(f"ada{i}.jpg", c) for i, c in enumerate(crops)])
        gallery.enroll("bob", "consent", [template("bob.jpg", os.urandom(64))])
        ledger = Ledger(gallery)
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM templates").fetchone() == (4,)  # a snapshot
        try:
            timings: dict[str, float] = {}

            def identify_meanwhile() -> None:
                for _ in range(5):
                    started = time.monotonic()
                    ledger.append(LedgerRecord("rita", "operator", "identify"))
                    timings["identify"] = max(
                        timings.get("identify", 0), time.monotonic() - started
                    )

            started = time.monotonic()
            other = threading.Thread(target=identify_meanwhile)
            other.start()
            assert gallery.remove("ada") == 3
            timings["erase"] = time.monotonic() - started
            other.join(10)
            print(f"erasure {timings['erase']:.3f} s, slowest concurrent write "
                  f"{timings['identify']:.3f} s, with a reader open")  # fmt: skip
            assert timings["erase"] < 1.0 and timings["identify"] < 1.0
        finally:
            reader.execute("ROLLBACK")
            reader.close()
        # The reader is gone: the next write completes the scrub (WAL checkpointed, emptied).
        ledger.append(LedgerRecord("rita", "operator", "identify"))
        data = files_of(path)
        assert not any(crop in data for crop in crops)
        assert (tmp_path / "gallery.db-wal").stat().st_size == 0
    data = files_of(path)
    assert not any(crop in data for crop in crops)
