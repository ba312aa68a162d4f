"""Events: storage rules (crops, expiry, subject removal), schema v2, sinks and the webhook.

The webhook tests run a real ``http.server`` on 127.0.0.1 in a thread, with back-offs of
a few hundredths of a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from support.clocks import T0, Clock
from support.events import crop_image, decision

from faceledger.errors import ConfigError, NotFoundError
from faceledger.events import (
    Dispatcher,
    EventStore,
    JsonlSink,
    Sink,
    StdoutSink,
    WebhookSink,
)
from faceledger.gallery import Gallery, NewTemplate

FAST = {"backoff": (0.02, 0.05), "timeout": 2.0}


def enroll(g: Gallery, name: str) -> None:
    t = NewTemplate(
        embedding=np.array([1, 0, 0], np.float32),
        model_id="m1",
        source_name=f"{name}.jpg",
        source_sha256=hashlib.sha256(name.encode()).hexdigest(),
        quality=0.9,
        det_score=0.99,
        crop_png=b"png",
        crop_geometry={},
    )
    g.enroll(name, "consent", [t])


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        query = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        return {r[0] for r in conn.execute(query)}


def schema_version(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]


@pytest.fixture
def gallery(db_url: str) -> Iterator[Gallery]:
    """A fresh gallery on each backend: a SQLite file, and a real PostgreSQL database."""
    with Gallery(db_url) as g:
        enroll(g, "ada")
        yield g


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(gallery: Gallery, clock: Clock) -> EventStore:
    return EventStore(gallery, clock=clock)


# ---- schema ------------------------------------------------------------------------------


def test_known_subject_event_keeps_its_crop(store: EventStore) -> None:
    image = crop_image(3)
    started = datetime(2024, 5, 1, 13, 59, 58, tzinfo=timezone(timedelta(hours=2)))
    event_id = store.add(decision("ada", crop=image), "door", "m1", started_at=started)
    event = store.get(event_id)
    assert (event.subject, event.camera, event.model_id, event.status) == (
        "ada",
        "door",
        "m1",
        "decided",
    )
    assert (event.source, event.track_id, event.first_t, event.last_t) == ("door.mp4", 1, 1.25, 4.5)
    assert (event.score, event.threshold, event.threshold_fmr) == (0.8, 0.5, 1e-3)
    assert event.subject_id is not None
    assert event.created_at == "2024-05-01T12:00:00.000000+00:00"
    assert event.started_at == "2024-05-01T11:59:58.000000+00:00"
    assert event.has_crop and event.expires_at is None
    assert event.crop_png is not None
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(event.crop_png))), image)

    as_json = event.as_json()
    assert as_json["id"] == event_id and as_json["subject"] == "ada" and as_json["has_crop"]
    assert "crop_png" not in as_json and json.loads(json.dumps(as_json)) == as_json


def test_unknown_face_keeps_no_crop_by_default(store: EventStore) -> None:
    event = store.get(store.add(decision(None, score=0.31), "door", "m1"))
    assert event.subject is None and event.subject_id is None and not event.known
    assert event.score == 0.31 and event.threshold == 0.5
    assert not event.has_crop and event.crop_png is None and event.expires_at is None


def test_kept_unknown_crop_expires_and_purge_keeps_the_event(
    store: EventStore, clock: Clock
) -> None:
    unknown = store.add(decision(None, score=0.2), "door", "m1", timedelta(minutes=5))
    known = store.add(decision("ada"), "door", "m1", timedelta(minutes=5))
    event = store.get(unknown)
    assert event.has_crop and event.crop_png is not None
    assert event.expires_at == "2024-05-01T12:05:00.000000+00:00"
    assert store.get(known).expires_at is None  # keep_unknown applies to unknown faces only

    clock.advance(minutes=4, seconds=59)
    assert store.purge_expired() == 0
    clock.advance(seconds=1)
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    event = store.get(unknown)
    assert not event.has_crop and event.crop_png is None
    assert (event.score, event.threshold, event.source) == (0.2, 0.5, "door.mp4")
    assert store.get(known).has_crop


def test_zero_keep_unknown_is_purged_at_once(gallery: Gallery) -> None:
    store = EventStore(gallery)  # the real clock
    event_id = store.add(decision(None), None, "m1", timedelta(0))
    assert store.get(event_id).has_crop
    assert store.purge_expired() == 1
    assert not store.get(event_id).has_crop


def test_removed_subject_keeps_its_events_but_not_their_crops(
    gallery: Gallery, store: EventStore
) -> None:
    enroll(gallery, "bob")
    ada = store.add(decision("ada"), "door", "m1")
    bob = store.add(decision("bob"), "door", "m1")
    gallery.remove("ada")
    event = store.get(ada)
    assert event.subject == "ada" and event.subject_id is None  # ON DELETE SET NULL
    assert not event.has_crop and event.score == 0.8
    assert store.get(bob).has_crop and store.get(bob).subject_id is not None

    with gallery.engine.begin() as conn:  # a raw delete: the foreign key still holds
        conn.execute(sa.text("DELETE FROM subjects WHERE name = 'bob'"))
    assert store.get(bob).subject_id is None


def test_known_name_missing_from_the_gallery_keeps_no_crop_and_no_name(store: EventStore) -> None:
    """A subject erased between the match and the record: the erasure came first, so the
    event is stored unknown, with neither the crop nor the name (nor it as a candidate)."""
    seen: list[object] = []
    event_id = store.add(decision("zed"), "door", "m1", within=lambda c, i, d: seen.append(d))
    event = store.get(event_id)
    assert event.subject is None and event.subject_id is None and not event.has_crop
    (stored,) = seen
    assert stored.match.subject is None  # type: ignore[attr-defined]
    assert "zed" not in [c.subject for c in stored.match.candidates]  # type: ignore[attr-defined]


def test_list_filters_newest_first(store: EventStore, clock: Clock) -> None:
    ids = []
    for i, (subject, source) in enumerate(
        [("ada", "a.mp4"), (None, "a.mp4"), ("ada", "b.mp4"), (None, "b.mp4")]
    ):
        ids.append(store.add(decision(subject, source=source, track=i), "cam", "m1"))
        clock.advance(minutes=1)
    assert [e.id for e in store.list()] == ids[::-1]
    assert [e.id for e in store.list(limit=2)] == ids[:1:-1]
    assert [e.id for e in store.list(source="a.mp4")] == [ids[1], ids[0]]
    assert [e.id for e in store.list(subject="ada")] == [ids[2], ids[0]]
    assert [e.id for e in store.list(since=T0 + timedelta(minutes=2))] == [ids[3], ids[2]]
    assert [e.id for e in store.list(source="b.mp4", subject="ada")] == [ids[2]]
    assert all(e.crop_png is None for e in store.list())  # list never loads crops
    assert [e.has_crop for e in store.list()] == [False, True, False, True]
    with pytest.raises(NotFoundError, match="999"):
        store.get(999)


# ---- simple sinks ------------------------------------------------------------------------


def test_jsonl_sink_appends_one_synced_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    events = [{"id": 1, "subject": "ada", "camera": "porte d'entrée"}, {"id": 2, "subject": None}]
    sink = JsonlSink(path)
    sink.send(events[0])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events[:1]  # on disk before send returns
    sink.send(events[1])
    sink.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"id": 3, "cut sh')  # a run killed mid-line
    again = JsonlSink(path)
    again.send({"id": 4})
    again.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines[:2]] == events
    assert lines[2] == '{"id": 3, "cut sh'
    assert json.loads(lines[3]) == {"id": 4}


def test_stdout_sink_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    sink = StdoutSink()
    sink.send({"id": 1, "subject": "ada"})
    sink.send({"id": 2, "subject": None})
    sink.close()
    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": 1, "subject": "ada"},
        {"id": 2, "subject": None},
    ]


class Broken:
    def send(self, event: dict[str, Any]) -> None:
        raise OSError("disk on fire")

    def close(self) -> None:
        raise OSError("still on fire")


def test_dispatcher_isolates_a_failing_sink(caplog: pytest.LogCaptureFixture) -> None:
    first, last = io.StringIO(), io.StringIO()
    sinks: list[Sink] = [StdoutSink(first), Broken(), StdoutSink(last)]
    assert all(isinstance(s, Sink) for s in sinks)
    dispatcher = Dispatcher(sinks)
    for i in range(3):
        dispatcher.send({"id": i})
    dispatcher.close()
    for stream in (first, last):
        assert [json.loads(x)["id"] for x in stream.getvalue().splitlines()] == [0, 1, 2]
    assert sum(dispatcher.errors.values()) == 4
    assert "disk on fire" in caplog.text


# ---- webhook -----------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTed JSON; ``answer(body)`` picks the status."""

    def __init__(self, port: int = 0, answer: Callable[[dict[str, Any]], int] | None = None):
        self.requests: list[tuple[dict[str, str], dict[str, Any], int]] = []
        self.answer = answer or (lambda body: 200)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.answer(body)
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [body for _, body, status in self.requests if 200 <= status < 300]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def outbox_rows(g: Gallery) -> list[Any]:
    with g.engine.connect() as conn:
        query = "SELECT id, event_id, attempts, next_attempt_at, last_error FROM outbox"
        return list(conn.execute(sa.text(query + " ORDER BY id")).all())


def test_webhook_delivers_stored_events_in_order(
    gallery: Gallery, store: EventStore, receiver: Receiver
) -> None:
    events = [store.get(store.add(decision(s, track=i), "door", "m1")).as_json() for i, s in
              enumerate(["ada", None, "ada", None, None])]  # fmt: skip
    sink = WebhookSink(receiver.url, gallery, **FAST)
    for event in events:
        sink.send(event)
    wait_until(lambda: len(receiver.delivered) == 5)
    sink.close()
    assert receiver.delivered == events
    headers = [h for h, _, _ in receiver.requests]
    assert all(h["Content-Type"] == "application/json" for h in headers)
    assert len({h["Idempotency-Key"] for h in headers}) == 5
    assert sink.delivered == 5 and sink.failures == 0 and sink.pending() == 0
    assert outbox_rows(gallery) == []


def test_webhook_retries_a_500_and_delivers_once(gallery: Gallery) -> None:
    answers = iter([500])
    receiver = Receiver(answer=lambda body: next(answers, 200))
    try:
        sink = WebhookSink(receiver.url, gallery.engine, **FAST)
        sink.send({"id": 7, "subject": "ada"})
        wait_until(lambda: len(receiver.delivered) == 1)
        sink.close()
        time.sleep(0.1)
        assert [status for _, _, status in receiver.requests] == [500, 200]
        assert receiver.delivered == [{"id": 7, "subject": "ada"}]
        keys = {h["Idempotency-Key"] for h, _, _ in receiver.requests}
        assert len(keys) == 1  # the retry is recognisable as the same delivery
        assert sink.failures == 1 and sink.delivered == 1 and outbox_rows(gallery) == []
    finally:
        receiver.stop()


def test_webhook_server_down_then_up_delivers_after_restart(gallery: Gallery) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    first = WebhookSink(url, gallery, **FAST)
    for i in range(3):
        first.send({"id": i})
    wait_until(lambda: first.failures >= 2)
    first.close(timeout=0.1)
    rows = outbox_rows(gallery)
    assert [r.event_id for r in rows] == [0, 1, 2]
    assert rows[0].attempts >= 2 and "unreachable" in rows[0].last_error
    assert all(r.next_attempt_at is not None for r in rows)  # never parked for a dead server

    receiver = Receiver(port)
    try:
        second = WebhookSink(url, gallery, **FAST)
        second.send({"id": 3})
        wait_until(lambda: second.pending() == 0)
        second.close()
        time.sleep(0.1)
        assert receiver.delivered == [{"id": i} for i in range(4)]  # no loss, no duplicate
        assert len(receiver.requests) == 4
    finally:
        receiver.stop()


def test_webhook_outbox_bound_drops_the_oldest(
    gallery: Gallery, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    sink = WebhookSink(url, gallery, max_outbox=3, **FAST)
    for i in range(5):
        sink.send({"id": i})
    sink.close(timeout=0)
    assert sink.dropped == 2
    assert "dropped the oldest" in caplog.text
    assert [r.event_id for r in outbox_rows(gallery)] == [2, 3, 4]


def test_webhook_parks_an_event_the_server_keeps_refusing(gallery: Gallery) -> None:
    receiver = Receiver(answer=lambda body: 422 if body["id"] == 1 else 200)
    try:
        sink = WebhookSink(receiver.url, gallery, max_attempts=2, **FAST)
        for i in range(1, 4):
            sink.send({"id": i})
        wait_until(lambda: len(receiver.delivered) == 2)
        sink.close()
        assert receiver.delivered == [{"id": 2}, {"id": 3}]
        (parked,) = outbox_rows(gallery)
        assert parked.event_id == 1 and parked.attempts == 2 and parked.next_attempt_at is None
        assert parked.last_error.startswith("HTTP 422")

        receiver.answer = lambda body: 200  # fixed on the other side; the next start retries
        again = WebhookSink(receiver.url, gallery, **FAST)
        wait_until(lambda: again.pending() == 0)
        again.close()
        assert receiver.delivered == [{"id": 2}, {"id": 3}, {"id": 1}]
    finally:
        receiver.stop()


@pytest.mark.parametrize("url", ["ftp://example.org/hook", "127.0.0.1:8000/hook", "http://"])
def test_webhook_url_must_be_http(gallery: Gallery, url: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        WebhookSink(url, gallery)


# ---- the live feed's cursor ---------------------------------------------------------------


def test_changed_pages_through_new_and_reviewed_events(gallery: Gallery, store: EventStore) -> None:
    from faceledger.events.review import Reviews

    _, top_event, top_review = store.changed(-1, -1)  # "now": nothing, and where it is
    made = [store.add(decision("ada", track=i), "door", "m1") for i in range(5)]
    first, cursor_e, cursor_r = store.changed(top_event, top_review, limit=2)
    assert [e.id for e in first] == made[:2] and cursor_e == made[1]
    rest, cursor_e, cursor_r = store.changed(cursor_e, cursor_r, limit=10)
    assert [e.id for e in rest] == made[2:] and cursor_e == made[-1]
    assert store.changed(cursor_e, cursor_r) == ([], cursor_e, cursor_r)  # nothing new
    reviews = Reviews(gallery)
    reviews.decide(made[0], "reviewer-1", "reject", None)
    reviews.decide(made[3], "reviewer-1", "confirm", None)
    seen, cursor_e2, cursor_r2 = store.changed(cursor_e, cursor_r, limit=1)
    assert [(e.id, e.review) for e in seen] == [(made[0], "rejected")]  # one review a call
    seen, _, cursor_r3 = store.changed(cursor_e2, cursor_r2, limit=1)
    assert [(e.id, e.review) for e in seen] == [(made[3], "confirmed")]
    assert store.changed(cursor_e2, cursor_r3)[0] == []
