"""EdgeFace: the PyTorch reference conversion of the published int8 state dict to ONNX, and
the embedder that runs the result; what happens before any conversion.

The reference conversion tests need PyTorch and onnx (``pip install -e '.[convert]'``) and
the shared models and smoke photos; they skip, saying which is missing, without them. The
default converter, which needs no PyTorch, is tested in ``test_edgeface_numpy.py``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from faceledger.config import load_config
from faceledger.convert import ConversionReport, convert, require_torch
from faceledger.embed.base import create_embedder
from faceledger.engine import Engine
from faceledger.errors import ChecksumError, ConfigError, ModelError, ModelNotFoundError
from faceledger.faces.align import ArcFaceAligner
from faceledger.models.catalog import get_card
from faceledger.models.store import ModelStore, conversion_record_path
from tests.conftest import MODELS, SMOKE, need

HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx"))
needs_torch = pytest.mark.skipif(
    not HAVE_TORCH,
    reason="PyTorch is not installed (pip install -e '.[convert]'), "
    "so the reference (PyTorch) converter cannot run",
)

# two photos of one person first, then other people; the second pair is another person
PHOTOS = (
    "identities/fr_obama/face_recognition_obama.jpg",
    "identities/fr_obama/face_recognition_obama2.jpg",
    "identities/deepface_id00/deepface_img1.jpg",
    "identities/deepface_id00/deepface_img2.jpg",
    "identities/fr_biden/face_recognition_biden.jpg",
    "identities/deepface_id03/deepface_img13.jpg",
)


# ---- before any conversion (no torch needed) ------------------------------------------------


def test_unconverted_embedder_without_its_source_says_what_is_missing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "cache", offline=True)
    embedder = create_embedder(get_card("edgeface_xs"), store)
    with pytest.raises(
        ModelNotFoundError, match=r"edgeface_xs runs from edgeface_xs\.onnx.*edgeface_xs_q\.pt"
    ):
        embedder.load()


def test_without_conversion_on_use_the_error_says_how_to_convert(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "cache", MODELS, offline=True, convert_on_use=False)
    with pytest.raises(ModelNotFoundError, match=r"run: faceledger models convert edgeface_xs"):
        store.resolve_converted(get_card("edgeface_xs"))


def test_converting_a_published_onnx_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs no conversion"):
        convert(get_card("mobilefacenet"), ModelStore(tmp_path))


def test_missing_torch_is_reported_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(ModelError, match=r"pip install -e '\.\[convert\]'.*torch==2\.13\.0"):
        require_torch()


def test_converted_file_is_checked_against_its_record(tmp_path: Path) -> None:
    card = get_card("edgeface_xxs")
    store = ModelStore(tmp_path)
    target = store.conversion_target(card)
    target.write_bytes(b"an onnx graph")
    assert store.find_converted(card) is None  # no record: not converted
    store.record_conversion(card, target, {"opset": 17})
    assert store.find_converted(card) == target
    assert store.runtime_path(card) == target

    older = replace(card, files=(replace(card.files[0], sha256="0" * 64),))
    assert store.find_converted(older) is None  # made from another source file

    target.write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="run: faceledger models convert edgeface_xxs"):
        store.find_converted(card)


# ---- conversion (torch + shared data) -------------------------------------------------------


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    need(MODELS)
    need(SMOKE)
    config = load_config(
        profile="fast",
        db=tmp_path_factory.mktemp("db") / "g.db",
        model_mirror=MODELS,
        model_cache=tmp_path_factory.mktemp("cache"),
        offline=True,
    )
    aligner = ArcFaceAligner(112)
    out = []
    with Engine(config) as engine:
        for rel in PHOTOS:
            image = engine.read(SMOKE / rel)
            out.append(aligner.align(image, engine.detect(image).largest())[0])
    return np.stack(out)


@pytest.fixture(scope="module", params=["edgeface_xs", "edgeface_xxs"])
def converted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, crops: np.ndarray
) -> tuple[ConversionReport, ModelStore]:
    if not HAVE_TORCH:
        pytest.skip("PyTorch is not installed (pip install -e '.[convert]')")
    store = ModelStore(tmp_path_factory.mktemp("convert-cache"), MODELS, offline=True)
    return convert(get_card(request.param), store, crops, converter="torch"), store


@needs_torch
def test_conversion_matches_the_published_model(
    converted: tuple[ConversionReport, ModelStore],
) -> None:
    report, store = converted
    assert report.converter == "torch" and report.onnx_max_abs_diff is not None
    print(
        f"\n{report.model}: quantized vs float cosine (min, mean) {report.quantized_cosine}; "
        f"onnxruntime vs torch max abs diff {report.onnx_max_abs_diff:.1e}"
    )
    assert report.checked_on == f"{len(PHOTOS)} aligned faces"
    # int8 kernels with 8-bit activations (qnnpack) stay close to the float network;
    # x86/fbgemm quantize activations to 7 bits and drift further
    if "qnnpack" in report.quantized_cosine:
        assert report.quantized_cosine["qnnpack"][0] >= 0.98
    assert min(low for low, _ in report.quantized_cosine.values()) >= 0.93
    assert report.onnx_max_abs_diff < 1e-4
    assert report.path.parent == store.cache_dir
    assert store.find_converted(get_card(report.model)) == report.path
    record = json.loads(conversion_record_path(report.path).read_text())
    assert record["sha256"] == report.sha256
    assert record["source"] == {report.source: report.source_sha256}


@needs_torch
def test_same_person_scores_higher_than_others(
    converted: tuple[ConversionReport, ModelStore], crops: np.ndarray
) -> None:
    report, store = converted
    embedder = create_embedder(get_card(report.model), store, threads=1)
    emb = embedder.embed(crops)
    assert emb.vectors.shape == (len(PHOTOS), 512)
    assert emb.model_id == report.model
    sims = emb.vectors @ emb.vectors.T
    same = [sims[0, 1], sims[2, 3]]
    others = [sims[i, j] for i in (0, 2, 4, 5) for j in (0, 2, 4, 5) if i < j]
    print(f"\n{report.model}: same person {np.round(same, 3)}, others max {max(others):.3f}")
    assert min(same) > 0.45 > max(others)
    # a batch gives what single faces give
    one = embedder.embed(crops[:1]).vectors[0]
    assert float(one @ emb.vectors[0]) > 0.99999
