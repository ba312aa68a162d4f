"""Golden numbers pinning each profile end to end: box and first embedding values on a fixed
photo, plus the behaviour that matters: same person scores above the threshold, others below."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceledger.config import load_config
from faceledger.engine import Engine

OBAMA = "identities/fr_obama/face_recognition_obama.jpg"
GOLDEN = {
    "embedded": ([357.1, 143.9, 632.5, 419.3], [-0.0638, 0.0936, 0.0070, -0.0442, 0.0141, 0.0044]),
    "fast": ([370.7, 90.5, 611.5, 419.9], [0.0082, -0.0304, -0.0357, -0.0553, -0.0001, -0.0467]),
    "accurate": ([378.6, 82.4, 607.0, 428.8], [-0.0206, -0.0549, -0.0418, 0.0036, 0.0623, -0.0538]),
}


@pytest.fixture(scope="module", params=list(GOLDEN))
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    from tests.conftest import MODELS, need_profile

    need_profile(request.param)  # accurate: EdgeFace, converted once into the session cache
    config = load_config(
        profile=request.param,
        db=tmp_path_factory.mktemp("db") / "g.db",
        model_mirror=MODELS,
        offline=True,
    )
    return Engine(config)


def test_golden_box_and_vector(engine: Engine, smoke: Path) -> None:
    image = engine.read(smoke / OBAMA)
    faces = engine.detect(image)
    box, head = GOLDEN[engine.config.profile]
    np.testing.assert_allclose(faces.boxes[0], box, atol=2.0)
    emb = engine.embed(image, faces[:1])
    assert emb.model_id == engine.model_id
    assert emb.dim == engine.embedder_card.embedding_dim
    assert np.linalg.norm(emb.vectors[0]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(emb.vectors[0, :6], head, atol=2e-3)


def test_same_person_clears_threshold_others_do_not(engine: Engine, smoke: Path) -> None:
    def vector(rel: str) -> np.ndarray:
        image = engine.read(smoke / rel)
        return engine.embed(image, engine.detect(image).largest()).vectors[0]

    obama = vector(OBAMA)
    same = float(obama @ vector("identities/fr_obama/face_recognition_obama2.jpg"))
    other = float(obama @ vector("identities/fr_biden/face_recognition_biden.jpg"))
    assert same >= engine.threshold.value > other


def test_reembedding_a_stored_crop_reproduces_the_vector(engine: Engine, smoke: Path) -> None:
    report = engine.enroll("obama", [smoke / OBAMA], "test")
    assert report.enrolled
    stored, _ = engine.gallery.vectors(engine.model_id)
    engine.reembed()
    again, _ = engine.gallery.vectors(engine.model_id)
    assert float(stored[-1] @ again[-1]) > 0.97
