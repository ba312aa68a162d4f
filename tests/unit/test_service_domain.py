"""The service domain (schema v4): API keys and roles, watch lists, reviews with the
two-person rule, erasure, retention, the v3 -> v4 upgrade, concurrent writers, and images
held in memory.

Every test runs on a fresh gallery in tmp_path with deterministic clocks; nothing here
needs a model.
"""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.engine import Connection
from support.clocks import T0, Clock, Ticker, sha
from support.events import decision

from faceledger.access import (
    PERMISSIONS,
    TOKEN_PREFIX,
    ApiKey,
    KeyStore,
    Permission,
    Role,
    allowed,
    parse_role,
)
from faceledger.db.engine import write_txn
from faceledger.db.schema import metadata
from faceledger.errors import ConfigError, ConflictError, InputError, NotFoundError
from faceledger.events import EventStore
from faceledger.events import store as event_store
from faceledger.events.review import Reviews, ReviewState
from faceledger.gallery import Gallery, NewTemplate
from faceledger.gallery.store import Erasure
from faceledger.gallery.watchlists import WatchList, WatchLists
from faceledger.images import Blob, load_image, sha256_of
from faceledger.ledger import GENESIS, Ledger
from faceledger.ledger.chain import LedgerRecord
from faceledger.ledger.retention import Policy, run_retention

SMOKE = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "smoke"
MAX_PIXELS = 50_000_000
MAX_BYTES = 50_000_000


def template(source: str = "a.jpg", vector: tuple[float, ...] = (1.0, 0.0, 0.0)) -> NewTemplate:
    return NewTemplate(
        embedding=np.asarray(vector, dtype=np.float32),
        model_id="m1",
        source_name=source,
        source_sha256=sha(source),
        quality=0.9,
        det_score=0.99,
        crop_png=b"\x89PNG template crop of " + source.encode() * 8,
        crop_geometry={"box": [1.0, 2.0, 30.0, 40.0]},
    )


def enroll(g: Gallery, name: str, *sources: str) -> None:
    g.enroll(name, "consent", [template(s) for s in (sources or (f"{name}.jpg",))])


def on_lists(g: Gallery, subject: str, *names: str) -> None:
    with write_txn(g.engine) as conn:
        WatchLists(g).add(conn, subject, names)


def count(g: Gallery, sql: str, **params: Any) -> int:
    with g.engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar() or 0)


def file_bytes(folder: Path) -> bytes:
    """Every byte of every file of a gallery (the database, its WAL and shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def stored_bytes(g: Gallery) -> bytes:
    """What an erasure must not leave behind. SQLite: every byte of the gallery's files.
    PostgreSQL: every value of every row of every table (dead row versions stay in the
    server's files until VACUUM, which frees but does not zero them: docs/SERVICE.md)."""
    if isinstance(g.path, Path):
        g.close()
        return file_bytes(g.path.parent)
    parts: list[bytes] = []
    with g.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value))
                    elif value is not None:
                        parts.append(str(value).encode())
    g.close()
    return b"".join(parts)


def schema_version(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        query = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        return {r[0] for r in conn.execute(query)}


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}


def boom(*_args: object) -> None:
    raise RuntimeError("boom")


@pytest.fixture
def gallery(db_url: str) -> Iterator[Gallery]:
    """A fresh gallery on each backend: a SQLite file, and a real PostgreSQL database."""
    with Gallery(db_url) as g:
        yield g


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(gallery: Gallery) -> KeyStore:
    return KeyStore(gallery)


@pytest.fixture
def ledger(gallery: Gallery) -> Ledger:
    return Ledger(gallery, clock=Ticker())


@pytest.fixture
def listed(gallery: Gallery) -> Gallery:
    """ada on a review list, bob on a two-person list, cy on a list without review,
    dan on none, eve on both the review and the two-person list."""
    lists = WatchLists(gallery)
    lists.create("review", review=True)
    lists.create("two", two_person=True)
    lists.create("plain")
    for name in ("ada", "bob", "cy", "dan", "eve"):
        enroll(gallery, name)
    on_lists(gallery, "ada", "review")
    on_lists(gallery, "bob", "two")
    on_lists(gallery, "cy", "plain")
    on_lists(gallery, "eve", "review", "two")
    return gallery


@pytest.fixture
def events(listed: Gallery, clock: Clock) -> EventStore:
    return EventStore(listed, clock=clock)


@pytest.fixture
def reviews(listed: Gallery, clock: Clock) -> Reviews:
    return Reviews(listed, clock=clock)


# ---- API keys ----------------------------------------------------------------------------

TOKEN = re.compile(r"fl_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


@pytest.mark.parametrize("role", list(Role))
def test_a_new_key_authenticates_to_its_role(keys: KeyStore, role: Role) -> None:
    token, key = keys.create(f"  {role.value} desk ", role, "admin-alice")
    found = TOKEN.fullmatch(token)
    assert found is not None and token.startswith(TOKEN_PREFIX)
    assert found.group(1) == key.id
    assert (key.name, key.role, key.created_by) == (f"{role.value} desk", role, "admin-alice")
    assert key.active and key.revoked_at is None
    assert keys.authenticate(token) == key
    assert keys.all() == [key]
    assert key.as_json() == {
        "id": key.id,
        "name": f"{role.value} desk",
        "role": role.value,
        "created_at": key.created_at,
        "created_by": "admin-alice",
        "revoked_at": None,
    }


def test_each_key_authenticates_to_its_own_record(keys: KeyStore) -> None:
    made = [keys.create(f"k{i}", role, "root") for i, role in enumerate(Role)]
    assert len({token for token, _ in made}) == len(made)
    assert len({key.id for _, key in made}) == len(made)
    for token, key in made:
        assert keys.authenticate(token) == key
    assert keys.all() == [key for _, key in made]  # in creation order


def test_only_the_sha256_of_a_token_is_stored(gallery: Gallery, keys: KeyStore) -> None:
    token, key = keys.create("door service", Role.operator, "alice")
    secret = token.split("_", 2)[2]  # fl_<hex id>_<secret>: the secret may hold "_"
    with gallery.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    assert len(rows) == 1
    row = rows[0]
    assert row["secret_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert row["prefix"] == key.id and row["role"] == "operator"
    assert all(secret not in str(value) for value in row.values())
    # Nowhere in the files either (open: database, WAL and shared memory; then closed).
    for moment in ("open", "closed"):
        if moment == "closed":
            data = stored_bytes(gallery)
        elif isinstance(gallery.path, Path):
            data = file_bytes(gallery.path.parent)
        else:
            continue
        assert token.encode() not in data, moment
        assert secret.encode() not in data, moment
        assert hashlib.sha256(token.encode()).hexdigest().encode() in data, moment


def test_wrong_malformed_and_overlong_tokens_are_refused(keys: KeyStore) -> None:
    token, key = keys.create("door", Role.operator, "alice")
    other, _ = keys.create("desk", Role.admin, "alice")
    assert keys.authenticate(token) == key
    forged_id = f"{TOKEN_PREFIX}{key.id}_{other.split('_', 2)[2]}"  # another key's secret
    for bad in (
        "",
        "fl_",
        "fl__",
        token[:-1],
        token + "x",
        token.upper(),
        token[len(TOKEN_PREFIX) :],  # no prefix
        "Bearer " + token,
        " " + token,
        token + " ",
        "FL_" + token[3:],
        f"{TOKEN_PREFIX}{key.id}_",
        forged_id,
        TOKEN_PREFIX + "a" * 300,
        token + "a" * 200,  # overlong, even with a valid token in it
        hashlib.sha256(token.encode()).hexdigest(),  # the stored digest is no token
    ):
        assert keys.authenticate(bad) is None, bad


def test_revoked_keys_no_longer_authenticate(keys: KeyStore) -> None:
    token, key = keys.create("door", Role.operator, "alice")
    kept, other = keys.create("desk", Role.reviewer, "alice")
    revoked = keys.revoke(key.id)
    assert revoked.id == key.id and revoked.role is Role.operator
    assert not revoked.active and revoked.revoked_at is not None
    assert keys.authenticate(token) is None
    assert keys.authenticate(kept) == other  # revoking one leaves the others alone
    assert keys.all() == [revoked, other]
    with pytest.raises(ConflictError, match=f"{key.id} was revoked already"):
        keys.revoke(key.id)
    with pytest.raises(NotFoundError, match="deadbeef"):
        keys.revoke("deadbeef")
    assert keys.all() == [revoked, other]


def test_a_key_needs_a_name(keys: KeyStore) -> None:
    with pytest.raises(ConfigError, match="name"):
        keys.create("   ", Role.admin, "alice")
    assert keys.all() == []


def test_key_hooks_run_inside_the_transaction(
    gallery: Gallery, keys: KeyStore, ledger: Ledger
) -> None:
    seen: list[int] = []

    def failing(conn: Connection, key: ApiKey) -> None:
        query = sa.text("SELECT count(*) FROM api_keys WHERE prefix = :p")
        seen.append(conn.execute(query, {"p": key.id}).scalar_one())
        raise RuntimeError("ledger unavailable")

    with pytest.raises(RuntimeError, match="ledger unavailable"):
        keys.create("door", Role.operator, "alice", within=failing)
    assert seen == [1]  # the hook saw the key: same transaction
    assert keys.all() == [] and count(gallery, "SELECT count(*) FROM api_keys") == 0

    def record(action: str) -> Callable[[Connection, ApiKey], None]:
        def hook(conn: Connection, key: ApiKey) -> None:
            ledger.append_in(conn, LedgerRecord("alice", "admin", action, result={"key": key.id}))

        return hook

    token, key = keys.create("door", Role.operator, "alice", within=record("keys.create"))
    with pytest.raises(RuntimeError, match="ledger unavailable"):
        keys.revoke(key.id, within=failing)
    assert keys.authenticate(token) == key  # the failed revocation changed nothing
    keys.revoke(key.id, within=record("keys.revoke"))
    assert keys.authenticate(token) is None
    entries = ledger.entries()
    assert [(e.action, e.result) for e in entries] == [
        ("keys.create", {"key": key.id}),
        ("keys.revoke", {"key": key.id}),
    ]
    assert token not in str([e.as_json() for e in entries])
    assert ledger.verify().ok


# ---- roles -------------------------------------------------------------------------------

P = Permission
EXPECTED = {
    Role.admin: {P.health, P.keys, P.watchlists_read, P.watchlists_write, P.retention},
    Role.enroller: {P.health, P.subjects_read, P.subjects_write, P.watchlists_read},
    Role.operator: {P.health, P.search, P.events_read},
    Role.reviewer: {P.health, P.events_read, P.events_review},
    Role.auditor: {P.health, P.audit_read},
}


def test_permissions_are_exactly_the_documented_ones() -> None:
    assert set(PERMISSIONS) == set(Role)
    assert {role: set(perms) for role, perms in PERMISSIONS.items()} == EXPECTED
    for role in Role:
        for permission in Permission:
            assert allowed(role, permission) == (permission in EXPECTED[role])


def holders(permission: Permission) -> set[Role]:
    return {role for role in Role if allowed(role, permission)}


def test_least_privilege() -> None:
    assert holders(P.health) == set(Role)  # everyone may check health
    assert holders(P.audit_read) == {Role.auditor}  # only the auditor reads the ledger
    assert holders(P.keys) == {Role.admin}
    assert holders(P.retention) == {Role.admin}
    assert holders(P.watchlists_write) == {Role.admin}
    assert holders(P.subjects_write) == {Role.enroller}
    assert holders(P.subjects_read) == {Role.enroller}
    assert holders(P.search) == {Role.operator}
    assert holders(P.events_review) == {Role.reviewer}
    assert holders(P.events_read) == {Role.operator, Role.reviewer}
    assert all(holders(p) for p in Permission)  # no permission nobody holds
    for forbidden in (P.audit_read, P.subjects_write, P.events_review, P.keys, P.retention):
        assert not allowed(Role.operator, forbidden)
    assert not allowed(Role.reviewer, P.search) and not allowed(Role.reviewer, P.audit_read)
    assert not allowed(Role.enroller, P.search) and not allowed(Role.enroller, P.events_read)
    assert not allowed(Role.admin, P.audit_read) and not allowed(Role.admin, P.subjects_write)
    assert not allowed(Role.admin, P.search) and not allowed(Role.admin, P.events_read)
    # who audits cannot change what is audited, and who identifies cannot confirm it
    assert holders(P.audit_read).isdisjoint(holders(P.subjects_write) | holders(P.search))
    assert holders(P.search).isdisjoint(holders(P.events_review))


@pytest.mark.parametrize("role", list(Role))
def test_parse_role_accepts_each_role(role: Role) -> None:
    assert parse_role(role.value) is role


@pytest.mark.parametrize("text", ["root", "Admin", "", " admin", "auditors"])
def test_parse_role_errors_list_the_valid_roles(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_role(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "admin, enroller, operator, reviewer, auditor" in message


# ---- watch lists -------------------------------------------------------------------------


def test_watch_lists_are_created_with_their_rules(gallery: Gallery) -> None:
    lists = WatchLists(gallery)
    plain = lists.create(" plain ")
    review = lists.create("review", review=True)
    two = lists.create("two", two_person=True)  # implies review
    assert (plain.name, plain.review, plain.two_person, plain.reviews_needed) == (
        "plain",
        False,
        False,
        0,
    )
    assert (review.review, review.two_person, review.reviews_needed) == (True, False, 1)
    assert (two.review, two.two_person, two.reviews_needed) == (True, True, 2)
    assert lists.all() == [plain, review, two]  # by name, members ()
    assert two.as_json() == {
        "name": "two",
        "review": True,
        "two_person": True,
        "reviews_needed": 2,
        "created_at": two.created_at,
        "subjects": [],
    }


def test_watch_list_names_are_unique_and_needed(gallery: Gallery) -> None:
    lists = WatchLists(gallery)
    made = lists.create("vip", review=True)
    for again in ("vip", "  vip  "):
        with pytest.raises(ConflictError, match="'vip' exists already"):
            lists.create(again, two_person=True)
    with pytest.raises(ConfigError, match="needs a name"):
        lists.create("  ")
    assert lists.all() == [made]


def test_watch_list_hook_failure_creates_nothing(gallery: Gallery, ledger: Ledger) -> None:
    lists = WatchLists(gallery)
    with pytest.raises(RuntimeError, match="boom"):
        lists.create("vip", within=boom)
    assert lists.all() == []

    def record(conn: Connection, made: WatchList) -> None:
        ledger.append_in(
            conn, LedgerRecord("alice", "admin", "watchlists.create", result=made.as_json())
        )

    made = lists.create("vip", two_person=True, within=record)
    assert lists.all() == [made]
    assert [e.result["name"] for e in ledger.entries()] == ["vip"]


def test_members_are_added_and_listed(gallery: Gallery) -> None:
    lists = WatchLists(gallery)
    for name in ("zoe", "ada", "bob"):
        enroll(gallery, name)
    lists.create("b-list")
    lists.create("a-list", review=True)
    lists.create("empty")
    on_lists(gallery, "zoe", "a-list", "b-list")
    on_lists(gallery, "ada", "a-list")
    on_lists(gallery, "ada", "a-list")  # already there: no duplicate, no error
    found = {w.name: w for w in lists.all()}
    assert list(found) == ["a-list", "b-list", "empty"]
    assert found["a-list"].subjects == ("ada", "zoe")
    assert found["b-list"].subjects == ("zoe",)
    assert found["empty"].subjects == ()
    assert found["a-list"].review and not found["b-list"].review
    assert lists.of("zoe") == ["a-list", "b-list"]
    assert lists.of("ada") == ["a-list"]
    assert lists.of("bob") == [] and lists.of("nobody") == []


def test_adding_to_an_unknown_list_or_subject_changes_nothing(gallery: Gallery) -> None:
    lists = WatchLists(gallery)
    enroll(gallery, "ada")
    lists.create("vip")
    with pytest.raises(NotFoundError, match="no watch list named 'nope'"):
        on_lists(gallery, "ada", "vip", "nope")  # vip came first: rolled back with it
    with pytest.raises(NotFoundError, match="no subject named 'zed'"):
        on_lists(gallery, "zed", "vip")
    assert lists.of("ada") == []
    assert lists.all()[0].subjects == ()
    assert count(gallery, "SELECT count(*) FROM watchlist_members") == 0


# ---- events and reviews ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "review", "needed"),
    [
        ("ada", "pending", 1),  # review list
        ("bob", "pending", 2),  # two-person list
        ("eve", "pending", 2),  # both: the strictest rule
        ("cy", None, 0),  # a list without review
        ("dan", None, 0),  # on no list
        (None, None, 0),  # an unknown face
        ("zed", None, 0),  # a name not in the gallery
    ],
)
def test_events_ask_for_the_review_their_subject_needs(
    events: EventStore, subject: str | None, review: str | None, needed: int
) -> None:
    event = events.get(events.add(decision(subject), "door", "m1"))
    assert (event.review, event.reviews_needed) == (review, needed)
    assert (event.as_json()["review"], event.as_json()["reviews_needed"]) == (review, needed)


def test_pending_events_can_be_listed(events: EventStore) -> None:
    ids = {name: events.add(decision(name), "door", "m1") for name in ("ada", "cy", "bob")}
    assert [e.id for e in events.list(review="pending")] == [ids["bob"], ids["ada"]]
    assert [e.id for e in events.list(review="pending", subject="ada")] == [ids["ada"]]
    assert events.list(review="confirmed") == []


def test_two_person_rule_needs_two_different_reviewers(
    events: EventStore, reviews: Reviews, clock: Clock
) -> None:
    event_id = events.add(decision("bob"), "door", "m1")
    first = reviews.decide(event_id, "rita", "confirm", "looks like bob")
    assert isinstance(first, ReviewState)
    assert (first.review, first.confirmations, first.needed) == ("pending", 1, 2)
    assert events.get(event_id).review == "pending"

    with pytest.raises(ConflictError, match="rita has already reviewed"):
        reviews.decide(event_id, "rita", "confirm")
    with pytest.raises(ConflictError, match="two-person rule"):
        reviews.decide(event_id, "rita", "reject")  # nor may she change her mind alone
    assert events.get(event_id).review == "pending" and len(reviews.of(event_id)) == 1

    clock.advance(minutes=3)
    second = reviews.decide(event_id, "sam", "confirm")
    assert (second.review, second.confirmations, second.needed) == ("confirmed", 2, 2)
    assert [(r.reviewer, r.decision, r.comment) for r in second.reviews] == [
        ("rita", "confirm", "looks like bob"),
        ("sam", "confirm", None),
    ]
    assert [r.at for r in second.reviews] == [
        "2024-05-01T12:00:00.000000+00:00",
        "2024-05-01T12:03:00.000000+00:00",
    ]
    assert reviews.of(event_id) == second.reviews
    assert events.get(event_id).review == "confirmed"
    assert second.as_json()["reviews"][1] == {
        "reviewer": "sam",
        "decision": "confirm",
        "comment": None,
        "at": "2024-05-01T12:03:00.000000+00:00",
    }


def test_one_confirmation_decides_a_review_list_event(events: EventStore, reviews: Reviews) -> None:
    event_id = events.add(decision("ada"), "door", "m1")
    state = reviews.decide(event_id, "rita", "confirm")
    assert (state.review, state.confirmations, state.needed) == ("confirmed", 1, 1)


def test_one_rejection_decides_at_once(events: EventStore, reviews: Reviews) -> None:
    event_id = events.add(decision("bob"), "door", "m1")
    reviews.decide(event_id, "rita", "confirm")
    state = reviews.decide(event_id, "sam", "reject", "not bob")
    assert (state.review, state.confirmations, state.needed) == ("rejected", 1, 2)
    assert events.get(event_id).review == "rejected"
    other = events.add(decision("eve", track=2), "door", "m1")
    assert reviews.decide(other, "rita", "reject").review == "rejected"


def test_a_decided_event_takes_no_more_reviews(events: EventStore, reviews: Reviews) -> None:
    confirmed = events.add(decision("ada"), "door", "m1")
    rejected = events.add(decision("bob", track=2), "door", "m1")
    reviews.decide(confirmed, "rita", "confirm")
    reviews.decide(rejected, "rita", "reject")
    for event_id, state in ((confirmed, "confirmed"), (rejected, "rejected")):
        for decision_ in ("confirm", "reject"):
            with pytest.raises(ConflictError, match=f"already {state}"):
                reviews.decide(event_id, "sam", decision_)
        assert events.get(event_id).review == state
        assert len(reviews.of(event_id)) == 1


def test_an_event_that_asked_for_no_review_may_still_be_reviewed(
    events: EventStore, reviews: Reviews
) -> None:
    event_id = events.add(decision("dan"), "door", "m1")
    assert events.get(event_id).review is None
    state = reviews.decide(event_id, "rita", "confirm")
    assert (state.review, state.needed) == ("confirmed", 1)


def test_bad_reviews_are_refused(events: EventStore, reviews: Reviews) -> None:
    event_id = events.add(decision("ada"), "door", "m1")
    with pytest.raises(NotFoundError, match="no event 999"):
        reviews.decide(999, "rita", "confirm")
    for bad in ("approve", "CONFIRM", "", "confirmed"):
        with pytest.raises(ConfigError, match="confirm, reject"):
            reviews.decide(event_id, "rita", bad)
    with pytest.raises(ConfigError, match="reviewer"):
        reviews.decide(event_id, "", "confirm")
    assert reviews.of(event_id) == () and events.get(event_id).review == "pending"


def test_a_failing_review_hook_records_nothing(
    events: EventStore, reviews: Reviews, ledger: Ledger
) -> None:
    event_id = events.add(decision("ada"), "door", "m1")
    with pytest.raises(RuntimeError, match="boom"):
        reviews.decide(event_id, "rita", "confirm", within=boom)
    assert reviews.of(event_id) == () and events.get(event_id).review == "pending"

    def record(conn: Connection, state: ReviewState) -> None:
        ledger.append_in(
            conn, LedgerRecord("rita", "reviewer", "events.review", result=state.as_json())
        )

    reviews.decide(event_id, "rita", "confirm", within=record)
    (entry,) = ledger.entries()
    assert entry.result["review"] == "confirmed" and entry.result["event"] == event_id


def test_an_event_add_holds_the_subject_it_names(
    listed: Gallery, events: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subject removed while its event is being stored: the add must not fail (it once
    read the subject outside its write transaction, then broke the foreign key)."""
    outcome: list[object] = []

    def remove() -> None:
        try:
            outcome.append(listed.remove("ada"))
        except BaseException as exc:
            outcome.append(exc)

    real = event_store.reviews_needed

    def racing(conn: Connection, subject_id: int) -> int:
        remover = threading.Thread(target=remove)
        remover.start()
        remover.join(0.5)  # the remover waits for the add's write lock
        threads.append(remover)
        return real(conn, subject_id)

    threads: list[threading.Thread] = []
    monkeypatch.setattr(event_store, "reviews_needed", racing)
    event_id = events.add(decision("ada"), "door", "m1")
    for t in threads:
        t.join()
    assert outcome == [1]
    event = events.get(event_id)
    assert event.subject == "ada" and event.subject_id is None
    assert not event.has_crop  # the removal that followed erased it
    assert event.review == "pending"  # what was asked when it was stored
    assert not listed.has_subject("ada")


# ---- erasure -----------------------------------------------------------------------------


@pytest.fixture
def erasable(listed: Gallery, events: EventStore) -> tuple[Gallery, dict[str, int]]:
    enroll(listed, "ada", "ada-2.jpg", "ada-3.jpg")  # ada now has 3 templates
    ids = {
        "ada1": events.add(decision("ada", seed=1), "door", "m1"),
        "ada2": events.add(decision("ada", track=2, seed=2), "hall", "m1"),
        "bob": events.add(decision("bob", track=3, seed=3), "door", "m1"),
        "unknown": events.add(decision(None, track=4, seed=4), "door", "m1", timedelta(days=1)),
    }
    return listed, ids


def test_remove_erases_a_subject_and_records_it_in_one_transaction(
    erasable: tuple[Gallery, dict[str, int]], events: EventStore, ledger: Ledger
) -> None:
    gallery, ids = erasable
    reviews = Reviews(gallery)
    reviews.decide(ids["ada1"], "rita", "confirm")
    crops = [events.get(ids[k]).crop_png for k in ("ada1", "ada2")]
    template_crops = [template(s).crop_png for s in ("ada.jpg", "ada-2.jpg", "ada-3.jpg")]
    erasures: list[Erasure] = []

    def record(conn: Connection, erasure: Erasure) -> None:
        erasures.append(erasure)
        ledger.append_in(
            conn,
            LedgerRecord(
                "alice",
                "admin",
                "subjects.remove",
                inputs=erasure.source_sha256,
                result={"templates": erasure.templates, "evidence_crops": erasure.evidence_crops},
            ),
        )

    assert gallery.remove("ada", within=record) == 3
    assert erasures == [Erasure("ada", 3, 2, (sha("ada.jpg"), sha("ada-2.jpg"), sha("ada-3.jpg")))]
    # the subject and its templates are gone
    assert not gallery.has_subject("ada")
    assert [s.name for s in gallery.subjects()] == ["bob", "cy", "dan", "eve"]
    assert count(gallery, "SELECT count(*) FROM templates WHERE source_name LIKE 'ada%'") == 0
    # its events stay, without their crops or the link
    for key in ("ada1", "ada2"):
        event = events.get(ids[key])
        assert event.subject == "ada" and event.subject_id is None and event.score == 0.8
        assert not event.has_crop and event.crop_png is None
    assert events.get(ids["ada1"]).review == "confirmed"  # the review record stays
    assert len(reviews.of(ids["ada1"])) == 1
    # other events keep theirs
    assert events.get(ids["bob"]).has_crop and events.get(ids["unknown"]).has_crop
    # no watch list names the subject any more
    lists = WatchLists(gallery)
    assert lists.of("ada") == []
    assert {w.name: w.subjects for w in lists.all()}["review"] == ("eve",)
    assert count(gallery, "SELECT count(*) FROM watchlist_members") == 4
    # the record landed with it
    (entry,) = ledger.entries()
    assert entry.action == "subjects.remove" and entry.inputs == erasures[0].source_sha256
    assert entry.result == {"templates": 3, "evidence_crops": 2}
    assert ledger.verify().ok
    # the erased pixels are gone from the files, not left in free pages
    data = stored_bytes(gallery)
    for crop in (*crops, *template_crops):
        assert crop is not None and crop not in data


def test_remove_whose_record_fails_removes_nothing(
    erasable: tuple[Gallery, dict[str, int]], events: EventStore, ledger: Ledger
) -> None:
    gallery, ids = erasable
    before = (gallery.subject("ada"), gallery.subjects(), WatchLists(gallery).all())
    event_before = events.get(ids["ada1"])

    def record_then_fail(conn: Connection, erasure: Erasure) -> None:
        ledger.append_in(
            conn, LedgerRecord("alice", "admin", "subjects.remove", inputs=erasure.source_sha256)
        )
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        gallery.remove("ada", within=record_then_fail)
    assert (gallery.subject("ada"), gallery.subjects(), WatchLists(gallery).all()) == before
    assert events.get(ids["ada1"]) == event_before and event_before.has_crop
    assert event_before.subject_id is not None
    assert ledger.entries() == [] and ledger.head() == GENESIS


def test_removing_an_unknown_subject_is_not_found(gallery: Gallery) -> None:
    with pytest.raises(NotFoundError, match="no subject named 'zed'"):
        gallery.remove("zed", within=boom)


def test_enroll_whose_record_fails_enrolls_nothing(gallery: Gallery, ledger: Ledger) -> None:
    flags: list[bool] = []

    def fail(conn: Connection, created: bool) -> None:
        flags.append(created)
        ledger.append_in(conn, LedgerRecord("alice", "enroller", "subjects.enroll"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        gallery.enroll("ada", "consent", [template("ada.jpg")], within=fail)
    assert gallery.subjects() == [] and not gallery.has_subject("ada")
    assert gallery.model_counts() == {}

    enroll(gallery, "ada")
    before = gallery.subject("ada")
    with pytest.raises(RuntimeError, match="boom"):
        gallery.enroll("ada", None, [template("ada-2.jpg")], within=fail)
    assert gallery.subject("ada") == before and before[0].templates == 1
    assert flags == [True, False]
    assert ledger.entries() == []

    def record(conn: Connection, created: bool) -> None:
        ledger.append_in(
            conn, LedgerRecord("alice", "enroller", "subjects.enroll", result={"new": created})
        )

    assert gallery.enroll("bob", "consent", [template("bob.jpg")], within=record) is True
    assert [e.result for e in ledger.entries()] == [{"new": True}]


# ---- retention ---------------------------------------------------------------------------


def test_retention_deletes_and_erases_what_has_outlived_its_policy(
    listed: Gallery, clock: Clock
) -> None:
    events = EventStore(listed, clock=clock)
    reviews = Reviews(listed, clock=clock)
    ledger = Ledger(listed, clock=clock)
    ledger.append(
        LedgerRecord("alice", "admin", "keys.create")
    )  # retention never touches the ledger

    def at(days: float, subject: str | None, keep_unknown: float | None = None) -> int:
        clock.now = T0 + timedelta(days=days)
        keep = None if keep_unknown is None else timedelta(days=keep_unknown)
        return events.add(decision(subject, seed=int(days)), "door", "m1", keep)

    old = at(0, "bob")  # two-person list
    reviews.decide(old, "rita", "confirm")
    old_unknown = at(1, None, keep_unknown=100)  # its crop outlives its row: deleted
    boundary = at(5, "dan")  # exactly keep_events old at the run: kept
    middle = at(20, "ada")
    reviews.decide(middle, "rita", "confirm")
    expired = at(25, None, keep_unknown=1)
    no_crop = at(26, None)
    recent = at(33, "cy")
    live = at(34, None, keep_unknown=5)
    assert count(listed, "SELECT count(*) FROM reviews") == 2

    clock.now = T0 + timedelta(days=35)
    policy = Policy(keep_events=timedelta(days=30), keep_evidence=timedelta(days=7))
    report = run_retention(listed, policy, _retention_record(ledger), clock=clock)

    counts = {
        "events_deleted": 2,
        "evidence_erased": 2,  # boundary (dan) and middle (ada)
        "unknown_erased": 1,
        "events_before": "2024-05-06T12:00:00.000000+00:00",
        "evidence_before": "2024-05-29T12:00:00.000000+00:00",
    }
    assert report.as_json() == {**counts, "ledger_seq": 2}
    remaining = {e.id: e for e in events.list()}
    assert set(remaining) == {boundary, middle, expired, no_crop, recent, live}
    assert old not in remaining and old_unknown not in remaining
    with pytest.raises(NotFoundError):
        events.get(old)
    # the old event's review went with it; the kept one's stays
    assert count(listed, "SELECT count(*) FROM reviews WHERE event_id = :e", e=old) == 0
    assert reviews.of(middle)[0].reviewer == "rita"
    # evidence erased, rows (scores, review) kept
    for event_id in (boundary, middle):
        event = events.get(event_id)
        assert not event.has_crop and event.crop_png is None and event.score == 0.8
    assert events.get(middle).review == "confirmed"
    assert events.get(recent).has_crop  # 2 days old
    assert not events.get(expired).has_crop and events.get(expired).expires_at is not None
    assert events.get(live).has_crop  # expires on day 39
    # one ledger entry, chained
    entries = ledger.entries()
    assert [e.action for e in entries] == ["keys.create", "retention.run"]
    run = entries[-1]
    assert (run.seq, run.actor, run.role, run.result) == (2, "cron", "admin", counts)
    assert run.at == "2024-06-05T12:00:00.000000+00:00"
    assert ledger.verify(expected_head=run.hash).ok

    again = run_retention(listed, policy, _retention_record(ledger), clock=clock)
    assert (again.events_deleted, again.evidence_erased, again.unknown_erased) == (0, 0, 0)
    assert again.ledger_seq == 3 and len(events.list()) == 6
    assert ledger.verify().ok


def test_retention_whose_record_fails_deletes_nothing(
    listed: Gallery, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = EventStore(listed, clock=clock)
    ledger = Ledger(listed, clock=clock)
    old = events.add(decision("ada"), "door", "m1")
    clock.advance(days=400)

    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(ledger, "append_in", fail)
    policy = Policy(keep_events=timedelta(days=30), keep_evidence=timedelta(days=7))
    with pytest.raises(RuntimeError, match="ledger unavailable"):
        run_retention(listed, policy, _retention_record(ledger), clock=clock)
    assert events.get(old).has_crop


# ---- schema v3 -> v4 ---------------------------------------------------------------------


def test_concurrent_writers_keep_one_chain(gallery: Gallery) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(3)
    rounds = 12

    def writer(name: str) -> None:
        own = Ledger(gallery.engine, gallery="g")
        try:
            start.wait()
            for i in range(rounds):
                if i % 2:

                    def record(conn: Connection, created: bool, i: int = i) -> None:
                        action, digests = "subjects.enroll", [sha(f"{name} {i}")]
                        own.append_in(conn, LedgerRecord(name, "enroller", action, inputs=digests,
                                      result={"new": created}))  # fmt: skip

                    gallery.enroll(f"{name}-{i}", "consent", [template(f"{name}-{i}")], record)
                else:
                    with write_txn(gallery.engine) as conn:
                        own.append_in(
                            conn,
                            LedgerRecord(name, "operator", "search", inputs=[sha(f"{name}{i}")]),
                        )
        except BaseException as exc:
            errors.append(exc)

    def recorder() -> None:  # events stored meanwhile, naming subjects as they appear
        store = EventStore(gallery)
        try:
            start.wait()
            for i in range(rounds):
                store.add(decision(f"a-{i | 1}", track=i), "door", "m1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    threads.append(threading.Thread(target=recorder))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ledger = Ledger(gallery)
    entries = ledger.entries()
    assert len(entries) == 2 * rounds and [e.seq for e in entries] == list(range(1, 2 * rounds + 1))
    assert len({e.prev_hash for e in entries}) == 2 * rounds  # no fork
    assert sum(e.action == "subjects.enroll" for e in entries) == rounds
    assert {e.result["new"] for e in entries if e.action == "subjects.enroll"} == {True}
    assert len(gallery.subjects()) == rounds
    assert len(EventStore(gallery).list(limit=1000)) == rounds
    assert ledger.verify(expected_head=entries[-1].hash).ok


# ---- images from memory ------------------------------------------------------------------


def smoke_photo() -> Path | None:
    found = sorted((SMOKE / "identities").glob("*/*.jpg")) if SMOKE.is_dir() else []
    return found[0] if found else None


def generated_png(path: Path) -> Path:
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def rotated_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (255, 0, 0)
    Image.fromarray(image).save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("kind", ["photo", "png", "rotated"])
def test_a_blob_loads_like_its_file(tmp_path: Path, kind: str) -> None:
    if kind == "photo":
        path = smoke_photo()
        if path is None:
            pytest.skip(f"{SMOKE} holds no photo: this case uses a real one")
    elif kind == "png":
        path = generated_png(tmp_path / "face.png")
    else:
        path = rotated_jpeg(tmp_path / "rotated.jpg")
    data = path.read_bytes()
    from_file = load_image(path, MAX_PIXELS, MAX_BYTES)
    from_blob = load_image(Blob("upload", data), MAX_PIXELS, MAX_BYTES)
    assert from_blob.dtype == np.uint8 and from_blob.ndim == 3 and from_blob.shape[2] == 3
    np.testing.assert_array_equal(from_blob, from_file)
    if kind == "rotated":
        assert from_blob.shape[:2] == (80, 40)  # EXIF orientation applied to bytes too
    assert sha256_of(path) == sha256_of(Blob("other name", data))
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"GIF89a this is not really an image" * 3, "cannot decode|not an image"),
        (b"\x00garbage\xff" * 50, "not an image"),
    ],
)
def test_bad_blobs_are_refused_naming_the_blob(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        load_image(Blob("upload-7.jpg", data), MAX_PIXELS, MAX_BYTES)
    assert caught.value.source == "upload-7.jpg"
    assert str(caught.value).startswith("upload-7.jpg: ")
    assert re.search(reason, caught.value.reason)


def test_blob_limits_are_those_of_files(tmp_path: Path) -> None:
    data = generated_png(tmp_path / "face.png").read_bytes()
    with pytest.raises(InputError, match=r"upload: file is .* over the limit"):
        load_image(Blob("upload", data), MAX_PIXELS, len(data) - 1)
    with pytest.raises(InputError, match=r"upload: image is 64x48 = 3,072 pixels, over"):
        load_image(Blob("upload", data), 3071, MAX_BYTES)
    truncated = Blob("cut.png", data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.png: "):
        load_image(truncated, MAX_PIXELS, MAX_BYTES)


def test_a_blob_is_named_not_dumped() -> None:
    blob = Blob("upload.jpg", b"\xff\xd8" + b"secret pixels" * 100)
    assert str(blob) == "upload.jpg"
    assert "secret" not in repr(blob)
    assert sha256_of(blob) == hashlib.sha256(blob.data).hexdigest()


def test_an_in_memory_png_round_trips(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    np.testing.assert_array_equal(
        load_image(Blob("mem.png", buffer.getvalue()), MAX_PIXELS, MAX_BYTES), pixels
    )


def _retention_record(ledger: Ledger) -> Callable[[Connection, dict[str, Any]], Any]:
    def record(conn: Connection, counts: dict[str, Any]) -> Any:
        return ledger.append_in(conn, LedgerRecord("cron", "admin", "retention.run", result=counts))

    return record
