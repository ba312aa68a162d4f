"""Gallery (SQLite via SQLAlchemy) and the open-set Matcher on small hand-made vectors."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from faceledger.errors import ModelMismatchError, NotFoundError, StorageError
from faceledger.gallery import Gallery, Matcher, NewTemplate
from faceledger.types import Embeddings, Threshold

THRESHOLD = Threshold(0.5, 1e-3, "unit test")


def template(
    vector: list[float] | np.ndarray,
    model_id: str = "m1",
    source: str = "a.jpg",
    **overrides: object,
) -> NewTemplate:
    fields: dict[str, object] = {
        "embedding": np.asarray(vector, dtype=np.float32),
        "model_id": model_id,
        "source_name": source,
        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "quality": 0.9,
        "det_score": 0.99,
        "crop_png": b"\x89PNG fake crop of " + source.encode(),
        "crop_geometry": {"box": [1.0, 2.0, 30.0, 40.0], "landmarks": [[5.0, 6.0]] * 5},
    }
    fields.update(overrides)
    return NewTemplate(**fields)  # type: ignore[arg-type]


@pytest.fixture
def gallery(db_url: str) -> Iterator[Gallery]:
    """A fresh gallery on each backend: a SQLite file, and a real PostgreSQL database."""
    with Gallery(db_url) as g:
        yield g


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(g: Gallery) -> tuple[object, ...]:
    """Everything observable about the gallery's content."""
    vectors = {}
    for model_id in g.model_counts():
        with g.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, embedding FROM templates ORDER BY id")).all()
        vectors[model_id] = rows
    details = [g.subject(s.name) for s in g.subjects()]
    return (g.subjects(), g.model_counts(), details, vectors, list(g.crops()))


# ---- opening -----------------------------------------------------------------------------


def test_new_gallery_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "gallery.db"
    with Gallery(path) as g:
        assert path.is_file()
        assert g.subjects() == []
        assert g.model_counts() == {}
        vectors, names = g.vectors("m1")
        assert vectors.shape == (0, 0) and names.shape == (0,)
        g.enroll("ada", "consent", [template([1, 0, 0])])
    with Gallery(path) as again:  # reopening keeps the data and the schema version
        assert [s.name for s in again.subjects()] == ["ada"]


def test_text_file_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("Dear diary, today I pointed faceledger at the wrong file.\n" * 50)
    before = digest(path)
    with pytest.raises(StorageError, match=r"notes\.db"):
        Gallery(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_foreign_sqlite_database_is_refused_and_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "other-app.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO people (name) VALUES ('grace'), ('alan')")
    conn.commit()
    conn.close()
    before = digest(path)

    with pytest.raises(StorageError) as info:
        Gallery(path)
    assert str(path) in str(info.value)
    assert "people" in str(info.value)

    assert digest(path) == before  # not even the journal mode in the header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-app.sqlite"]
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    rows = conn.execute("SELECT name FROM people ORDER BY id").fetchall()
    conn.close()
    assert tables == ["people"]
    assert rows == [("grace",), ("alan",)]


def test_sqlite_database_with_foreign_meta_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('app', 'someone-else')")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StorageError, match="not a faceledger gallery"):
        Gallery(path)
    assert digest(path) == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Gallery(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        Gallery(path)


# ---- enroll ------------------------------------------------------------------------------


def test_new_subject_needs_a_legal_basis(gallery: Gallery) -> None:
    for basis in (None, ""):
        with pytest.raises(StorageError, match="legal basis"):
            gallery.enroll("ada", basis, [template([1, 0, 0])])
    assert gallery.subjects() == []
    assert gallery.model_counts() == {}


def test_re_enrolling_adds_templates_and_records_the_basis(gallery: Gallery) -> None:
    assert gallery.enroll("ada", "consent form 17", [template([1, 0, 0], source="a1.jpg")]) is True
    assert gallery.enroll("ada", None, [template([0.9, 0.1, 0], source="a2.jpg")]) is False
    assert gallery.enroll("ada", "contract 4", [template([0.8, 0.2, 0], source="a3.jpg")]) is False

    info, temps = gallery.subject("ada")
    assert info.templates == 3
    assert info.legal_basis == "consent form 17"  # the subject keeps its original basis
    assert info.models == ("m1",)
    assert [t.source_name for t in temps] == ["a1.jpg", "a2.jpg", "a3.jpg"]
    assert [t.legal_basis for t in temps] == ["consent form 17", "consent form 17", "contract 4"]
    assert temps[0].source_sha256 == hashlib.sha256(b"a1.jpg").hexdigest()
    assert gallery.model_counts() == {"m1": 3}


def test_enroll_with_no_templates_is_refused(gallery: Gallery) -> None:
    with pytest.raises(StorageError):
        gallery.enroll("ada", "consent", [])
    assert gallery.subjects() == []


def test_template_of_another_model_is_refused_and_nothing_written(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0])])
    before = snapshot(gallery)
    with pytest.raises(ModelMismatchError, match="several models"):
        gallery.enroll("bob", "consent", [template([0, 1, 0]), template([0, 0, 1], model_id="m2")])
    with pytest.raises(ModelMismatchError, match="reembed"):
        gallery.enroll("ada", None, [template([0, 1, 0], model_id="m2")])
    assert snapshot(gallery) == before


def test_one_call_may_not_mix_models_even_in_an_empty_gallery(gallery: Gallery) -> None:
    with pytest.raises(ModelMismatchError):
        gallery.enroll("ada", "consent", [template([1, 0, 0]), template([0, 1, 0], model_id="m2")])
    assert gallery.subjects() == []
    assert gallery.model_counts() == {}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param({"crop_geometry": {"box": {1, 2}}}, TypeError, id="geometry not JSON"),
        pytest.param({"source_name": None}, sa.exc.IntegrityError, id="NOT NULL violated"),
    ],
)
def test_enroll_is_one_transaction(
    gallery: Gallery, bad: dict[str, object], error: type[Exception]
) -> None:
    # The failure happens after the subject row is inserted: it must be rolled back too.
    gallery.enroll("ada", "consent", [template([1, 0, 0], source="a1.jpg")])
    before = snapshot(gallery)
    batch = [template([0, 1, 0], source="b1.jpg"), template([0, 0, 1], source="b2.jpg", **bad)]
    with pytest.raises(error):
        gallery.enroll("bob", "consent", batch)
    with pytest.raises(error):
        gallery.enroll("ada", None, batch)
    assert snapshot(gallery) == before
    assert [s.name for s in gallery.subjects()] == ["ada"]


# ---- models ------------------------------------------------------------------------------


def test_require_model_and_vectors_tell_the_user_to_reembed(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0]), template([0, 1, 0])])
    gallery.require_model("m1")  # same model: fine
    for call in (lambda: gallery.require_model("m2"), lambda: gallery.vectors("m2")):
        with pytest.raises(ModelMismatchError) as info:
            call()
        message = str(info.value)
        assert "faceledger gallery reembed" in message
        assert "2 templates of m1" in message
        assert "m2" in message
        assert isinstance(info.value, StorageError)


def test_vectors_round_trip_in_enrollment_order(gallery: Gallery) -> None:
    a = np.array([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]], dtype=np.float32)
    b = np.array([[0.8, 0.0, 0.6]], dtype=np.float32)
    gallery.enroll("ada", "consent", [template(a[0]), template(a[1])])
    gallery.enroll("bob", "consent", [template(b[0])])
    vectors, names = gallery.vectors("m1")
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, np.vstack([a, b]))
    assert names.tolist() == ["ada", "ada", "bob"]


def test_crops_are_stored_with_their_geometry(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0], source="x.jpg")])
    (crop,) = gallery.crops()
    assert crop.crop_png == b"\x89PNG fake crop of x.jpg"
    assert crop.geometry == {"box": [1.0, 2.0, 30.0, 40.0], "landmarks": [[5.0, 6.0]] * 5}


# ---- remove, replace ---------------------------------------------------------------------


def test_remove_deletes_subject_with_its_templates(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0]), template([0, 1, 0])])
    gallery.enroll("bob", "consent", [template([0, 0, 1])])
    assert gallery.remove("ada") == 2
    assert [s.name for s in gallery.subjects()] == ["bob"]
    assert gallery.model_counts() == {"m1": 1}
    assert len(list(gallery.crops())) == 1
    with pytest.raises(NotFoundError):
        gallery.subject("ada")
    # the name is free again: a new enrollment needs a basis again
    with pytest.raises(StorageError, match="legal basis"):
        gallery.enroll("ada", None, [template([1, 0, 0])])


def test_remove_unknown_subject_raises_not_found(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0])])
    with pytest.raises(NotFoundError, match="nobody"):
        gallery.remove("nobody")
    assert gallery.model_counts() == {"m1": 1}


def test_deleting_a_subject_row_cascades_to_templates(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0]), template([0, 1, 0])])
    with gallery.engine.begin() as conn:  # foreign keys are on for every connection
        conn.execute(sa.text("DELETE FROM subjects WHERE name = 'ada'"))
    assert gallery.model_counts() == {}


def test_replace_embeddings_switches_model_in_one_go(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0]), template([0, 1, 0])])
    gallery.enroll("bob", "consent", [template([0, 0, 1])])
    ids = [t.id for name in ("ada", "bob") for t in gallery.subject(name)[1]]
    new = {i: np.full(5, float(n + 1), dtype=np.float32) for n, i in enumerate(ids)}

    gallery.replace_embeddings("m2", new)
    assert gallery.model_counts() == {"m2": 3}
    vectors, names = gallery.vectors("m2")
    assert vectors.shape == (3, 5)
    np.testing.assert_array_equal(vectors[:, 0], [1.0, 2.0, 3.0])
    assert names.tolist() == ["ada", "ada", "bob"]
    with pytest.raises(ModelMismatchError):
        gallery.vectors("m1")


def test_replace_embeddings_with_wrong_ids_changes_nothing(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template([1, 0, 0]), template([0, 1, 0])])
    ids = [t.id for t in gallery.subject("ada")[1]]
    before = snapshot(gallery)
    with pytest.raises(StorageError, match="retry"):
        gallery.replace_embeddings("m2", {ids[0]: np.ones(5, np.float32)})  # one missing
    with pytest.raises(StorageError, match="retry"):
        gallery.replace_embeddings("m2", {i: np.ones(5, np.float32) for i in [*ids, 999]})
    assert snapshot(gallery) == before


# ---- matcher -----------------------------------------------------------------------------


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_matcher_uses_each_subjects_best_template() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0.8, 0.6, 0), unit(0, 0, 1)])
    labels = np.array(["ada", "ada", "bob", "cy"], dtype=object)
    matcher = Matcher.exact(vectors, labels, THRESHOLD)
    query = Embeddings(np.stack([unit(0.1, 1, 0)]), "m1")
    (match,) = matcher.match(query, top=3)
    sims = vectors @ query.vectors[0]
    assert match.subject == "ada"
    assert match.score == pytest.approx(float(sims[1]), abs=1e-6)  # ada's 2nd template
    assert [c.subject for c in match.candidates] == ["ada", "bob", "cy"]
    assert match.candidates[1].score == pytest.approx(float(sims[2]), abs=1e-6)
    assert match.known


def test_matcher_top_candidates_agree_with_naive_per_subject_max() -> None:
    rng = np.random.default_rng(7)
    counts = {"s0": 1, "s1": 5, "s2": 2, "s3": 7, "s4": 3, "s5": 1}
    labels = np.array([s for s, n in counts.items() for _ in range(n)], dtype=object)
    vectors = rng.normal(size=(len(labels), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = Embeddings(rng.normal(size=(20, 16)), "m1")
    matcher = Matcher.exact(vectors, labels, Threshold(0.2, 1e-3, "unit test"))
    for top in (1, 3, 6, 10):
        matches = matcher.match(queries, top=top)
        assert len(matches) == len(queries)
        for q, match in zip(queries.vectors, matches, strict=True):
            sims = vectors @ q
            best = {s: float(sims[labels == s].max()) for s in counts}
            expected = sorted(best.items(), key=lambda kv: -kv[1])[: min(top, len(counts))]
            got = [(c.subject, c.score) for c in match.candidates]
            assert [s for s, _ in got] == [s for s, _ in expected]
            np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], atol=1e-5)
            assert len({s for s, _ in got}) == len(got)
            assert all(a >= b for (_, a), (_, b) in itertools.pairwise(got))
            assert match.score == got[0][1]
            assert match.subject == (got[0][0] if got[0][1] >= 0.2 else None)


def test_face_below_threshold_is_unknown_but_lists_candidates() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0)])
    matcher = Matcher.exact(vectors, np.array(["ada", "bob"], dtype=object), THRESHOLD)
    (match,) = matcher.match(Embeddings(np.stack([unit(0.3, 0.2, 1)]), "m1"), top=2)
    assert match.subject is None
    assert not match.known
    assert 0 < match.score < THRESHOLD.value
    assert [c.subject for c in match.candidates] == ["ada", "bob"]
    assert match.threshold == THRESHOLD


def test_empty_gallery_gives_unknown(gallery: Gallery) -> None:
    vectors, labels = gallery.vectors("m1")
    matcher = Matcher.exact(vectors, labels, THRESHOLD)
    matches = matcher.match(Embeddings(np.stack([unit(1, 0, 0), unit(0, 1, 0)]), "m1"), top=3)
    assert len(matches) == 2
    for match in matches:
        assert match.subject is None
        assert match.candidates == ()
        assert match.score == -1.0
    assert matcher.match(Embeddings(np.zeros((0, 3)), "m1")) == []


def test_matcher_on_gallery_vectors(gallery: Gallery) -> None:
    gallery.enroll("ada", "consent", [template(unit(1, 0.1, 0)), template(unit(1, 0, 0.1))])
    gallery.enroll("bob", "consent", [template(unit(0, 1, 0))])
    vectors, labels = gallery.vectors("m1")
    matcher = Matcher.exact(vectors, labels, THRESHOLD)
    known, unknown = matcher.match(Embeddings(np.stack([unit(0.1, 1, 0), unit(0, 0, 1)]), "m1"))
    assert known.subject == "bob"
    assert len(known.candidates) == 1
    assert unknown.subject is None
    assert unknown.candidates[0].subject == "ada"


def test_matcher_needs_one_label_per_vector() -> None:
    with pytest.raises(ValueError, match="labels"):
        Matcher.exact(np.eye(3, dtype=np.float32), np.array(["a", "b"], dtype=object), THRESHOLD)
