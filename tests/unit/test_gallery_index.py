"""The persisted, incremental gallery index: saved beside the gallery, caught up from the
template log, and erasure-proof (an erased template is in no index and no saved file)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from faceledger.config import IndexConfig
from faceledger.errors import ModelMismatchError
from faceledger.gallery import Gallery
from faceledger.gallery.index import load_index
from faceledger.gallery.indexed import GalleryIndex, choose_kind, refresh_saved
from faceledger.types import Embeddings, Threshold
from tests.unit.test_gallery import template

DIM = 16
THRESHOLD = Threshold(0.5, 1e-3, "unit test")


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=["exact", "flat", "pq", "hnsw", "ivf"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param != "exact":
        pytest.importorskip("faiss", reason="the FAISS kinds need faiss-cpu")
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, kind: str) -> IndexConfig:
    return IndexConfig(kind=kind, dir=tmp_path / "index")  # type: ignore[arg-type]


@pytest.fixture
def gallery(db_url: str) -> Iterator[Gallery]:
    with Gallery(db_url) as g:
        yield g


def enroll(g: Gallery, name: str, vectors: np.ndarray) -> None:
    g.enroll(name, "consent", [template(v, source=f"{name}{i}.jpg") for i, v in enumerate(vectors)])


def template_ids(g: Gallery, name: str) -> list[int]:
    return [t.id for t in g.subject(name)[1]]


def names_found(index: GalleryIndex, vectors: np.ndarray) -> list[str | None]:
    matches = index.matcher(THRESHOLD).match(Embeddings(vectors, "m1"))
    return [m.subject for m in matches]


def test_built_once_then_opened_from_its_file(
    gallery: Gallery, settings: IndexConfig, kind: str
) -> None:
    rng = np.random.default_rng(1)
    people = {f"p{i}": unit(rng, 2) for i in range(20)}
    for name, vectors in people.items():
        enroll(gallery, name, vectors)

    first = GalleryIndex(gallery, "m1", DIM, settings)
    assert first.stats.source == "database" and first.stats.size == 40
    assert first.stats.kind == kind
    manifest = json.loads((settings.dir / f"m1.{kind}.json").read_text())  # type: ignore[operator]
    assert manifest["size"] == 40 and manifest["model"] == "m1"

    again = GalleryIndex(gallery, "m1", DIM, settings)
    assert again.stats.source == "saved" and again.stats.caught_up == 0
    probe = np.stack([v[1] for v in people.values()])
    assert names_found(again, probe) == list(people)


def test_changes_by_another_process_are_caught_up(
    db_url: str, gallery: Gallery, settings: IndexConfig
) -> None:
    rng = np.random.default_rng(2)
    enroll(gallery, "ann", unit(rng, 1))
    index = GalleryIndex(gallery, "m1", DIM, settings)
    assert index.stats.size == 1
    bob = unit(rng, 3)
    with Gallery(db_url) as other:  # another process's connection to the same database
        enroll(other, "bob", bob)
    assert names_found(index, bob) == ["bob"] * 3
    assert index.stats.caught_up == 3 and index.stats.size == 4
    # a fresh open reads the saved file and catches up from the log
    assert names_found(GalleryIndex(gallery, "m1", DIM, settings), bob) == ["bob"] * 3


def test_an_erased_template_is_gone_from_the_index_and_its_files(
    db_url: str, gallery: Gallery, settings: IndexConfig, kind: str
) -> None:
    rng = np.random.default_rng(3)
    ann, bob = unit(rng, 2), unit(rng, 1)
    enroll(gallery, "ann", ann)
    enroll(gallery, "bob", bob)
    index = GalleryIndex(gallery, "m1", DIM, settings)
    assert names_found(index, ann) == ["ann", "ann"]
    erased = template_ids(gallery, "ann")

    with Gallery(db_url) as other:
        other.remove("ann")
    assert refresh_saved(gallery, settings) == 1
    # the live index: searching with the erased template's own vector finds nobody
    matches = index.matcher(THRESHOLD).match(Embeddings(ann, "m1"), top=3)
    assert all(c.subject != "ann" for m in matches for c in m.candidates)
    assert index.stats.size == 1
    # the saved file holds bob only, and no trace of ann's vectors
    manifest = json.loads((settings.dir / f"m1.{kind}.json").read_text())  # type: ignore[operator]
    saved = load_index(settings.dir / manifest["index_file"], kind, DIM, manifest["params"])  # type: ignore[operator]
    assert saved.size == 1 and not set(erased) & set(saved.ids().tolist())
    scores, _ = saved.search(ann, 1)
    assert np.all(scores < 0.999)
    leftovers = sorted(p.name for p in settings.dir.iterdir())  # type: ignore[union-attr]
    assert len([p for p in leftovers if p.endswith(".idx")]) == 1  # older generations deleted


def test_a_template_deleted_by_hand_in_sql_is_seen(gallery: Gallery, settings: IndexConfig) -> None:
    rng = np.random.default_rng(4)
    ann = unit(rng, 1)
    enroll(gallery, "ann", ann)
    index = GalleryIndex(gallery, "m1", DIM, settings)
    assert names_found(index, ann) == ["ann"]
    with gallery.engine.begin() as conn:  # the log's triggers see what no faceledger code did
        conn.execute(sa.text("DELETE FROM templates"))
    assert names_found(index, ann) == [None]
    assert index.stats.size == 0


def test_a_saved_index_of_another_database_is_not_used(
    tmp_path: Path, settings: IndexConfig
) -> None:
    rng = np.random.default_rng(5)
    with Gallery(tmp_path / "a.db") as a:
        enroll(a, "ann", unit(rng, 1))
        GalleryIndex(a, "m1", DIM, settings).save()
    with Gallery(tmp_path / "b.db") as b:
        bob = unit(rng, 1)
        enroll(b, "bob", bob)
        index = GalleryIndex(b, "m1", DIM, settings)  # the same folder, another log epoch
        assert index.stats.source == "database"
        assert names_found(index, bob) == ["bob"]


def test_a_restored_copy_of_the_database_is_rebuilt(tmp_path: Path, settings: IndexConfig) -> None:
    rng = np.random.default_rng(6)
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        enroll(g, "ann", unit(rng, 1))
    shutil.copy(path, tmp_path / "backup.db")
    with Gallery(path) as g:
        enroll(g, "bob", unit(rng, 1))
        GalleryIndex(g, "m1", DIM, settings).save()  # saved at a log position the copy lacks
    shutil.copy(tmp_path / "backup.db", path)
    with Gallery(path) as g:
        carl = unit(rng, 1)
        enroll(g, "carl", carl)  # the restored log reaches the same seq with another row
        index = GalleryIndex(g, "m1", DIM, settings)
        assert index.stats.source == "database"
        assert sorted(g.names_of(index.sync().labels.subject_ids).values()) == ["ann", "carl"]


def test_a_damaged_index_file_is_rebuilt(
    gallery: Gallery, settings: IndexConfig, kind: str
) -> None:
    rng = np.random.default_rng(7)
    ann = unit(rng, 1)
    enroll(gallery, "ann", ann)
    GalleryIndex(gallery, "m1", DIM, settings).save()
    manifest = json.loads((settings.dir / f"m1.{kind}.json").read_text())  # type: ignore[operator]
    (settings.dir / manifest["index_file"]).write_bytes(b"not an index")  # type: ignore[operator]
    index = GalleryIndex(gallery, "m1", DIM, settings)
    assert index.stats.source == "database"
    assert names_found(index, ann) == ["ann"]


def test_another_models_templates_are_refused(gallery: Gallery, settings: IndexConfig) -> None:
    enroll(gallery, "ann", unit(np.random.default_rng(8), 1))
    with pytest.raises(ModelMismatchError, match="m1"):
        GalleryIndex(gallery, "m2", DIM, settings).sync()


def test_an_in_memory_index_writes_nothing(gallery: Gallery, tmp_path: Path) -> None:
    ann = unit(np.random.default_rng(9), 1)
    enroll(gallery, "ann", ann)
    settings = IndexConfig(kind="exact", dir=tmp_path / "index", persist=False)
    assert names_found(GalleryIndex(gallery, "m1", DIM, settings), ann) == ["ann"]
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize(
    ("size", "kind"), [(0, "flat"), (199_999, "flat"), (200_000, "pq"), (5_000_000, "ivfpq")]
)
def test_auto_picks_the_kind_by_gallery_size(size: int, kind: str) -> None:
    assert choose_kind(IndexConfig(), size) == kind
