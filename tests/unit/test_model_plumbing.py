"""How models are found and run: classes registered by architecture, one load sequence
(resolve -> verify -> session -> warm-up) for ONNX models, and execution providers from
the configuration.

A tiny ONNX graph made here stands in for real weights, so these tests need no shared data.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from faceledger.config import load_config
from faceledger.embed.base import EMBEDDERS, create_embedder
from faceledger.embed.dlib_resnet import DlibResNetEmbedder
from faceledger.embed.onnx_arcface import OnnxArcFaceEmbedder
from faceledger.engine import Engine
from faceledger.errors import ChecksumError, ConfigError, ModelError
from faceledger.faces.detect.base import DETECTORS, DetectorOptions, create_detector
from faceledger.faces.detect.dlib_hog import DlibHogDetector
from faceledger.faces.detect.retinaface import RetinaFaceDetector
from faceledger.faces.detect.scrfd import ScrfdDetector
from faceledger.faces.detect.yunet import YuNetDetector
from faceledger.models.catalog import CARDS, ModelCard, ModelFile, get_card
from faceledger.models.store import ModelStore, sha256_file
from faceledger.runtime import onnx as onnx_runtime
from faceledger.runtime.model import WARM_UP_SIDE, ArchitectureRegistry, OnnxModel
from faceledger.runtime.onnx import CPU, OnnxSession, RuntimeOptions, choose_providers

CPU_ONLY = (CPU,)


def tiny_graph(path: Path, batch: int | str = 1, side: int | str = "h") -> Path:
    """An ONNX graph that takes (batch, 3, side, side) float32 and returns it doubled."""
    import onnx
    from onnx import TensorProto, helper

    shape = [batch, 3, side, side]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_card(
    folder: Path, input_size: tuple[int, int] | None = (16, 12), **graph: int | str
) -> ModelCard:
    folder.mkdir(parents=True, exist_ok=True)
    path = tiny_graph(folder / "tiny.onnx", **graph)
    return ModelCard(
        name="tiny",
        kind="embedder",
        summary="a test graph",
        files=(ModelFile("tiny.onnx", sha256_file(path)),),
        licence="none",
        source="made by the test",
        architecture="arcface_onnx",
        input_size=input_size,
    )


def tiny_store(tmp_path: Path) -> ModelStore:
    return ModelStore(
        cache_dir=tmp_path / "cache", explicit={"tiny": tmp_path / "models"}, offline=True
    )


@pytest.fixture
def count_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shape of every tensor any OnnxSession runs, in order."""
    shapes: list[tuple[int, ...]] = []
    run = OnnxSession.run

    def counted(self: OnnxSession, tensor: np.ndarray) -> list[np.ndarray]:
        shapes.append(tuple(tensor.shape))
        return run(self, tensor)

    monkeypatch.setattr(OnnxSession, "run", counted)
    return shapes


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which providers this process has already warned about."""
    monkeypatch.setattr(onnx_runtime, "_WARNED", set())


# ---- registered by architecture -----------------------------------------------------------


def test_every_card_names_a_registered_architecture() -> None:
    for card in CARDS:
        registry = DETECTORS if card.kind == "detector" else EMBEDDERS
        assert registry.lookup(card) is not None, card.name


def test_cards_sharing_an_architecture_share_a_class(tmp_path: Path) -> None:
    store = ModelStore(cache_dir=tmp_path)
    options = DetectorOptions()
    expected_detectors = {
        "yunet": YuNetDetector,
        "scrfd_2.5g": ScrfdDetector,
        "scrfd_500m": ScrfdDetector,
        "retinaface_mnet025": RetinaFaceDetector,
        "dlib_hog": DlibHogDetector,
    }
    for name, cls in expected_detectors.items():
        detector = create_detector(get_card(name), store, options)
        assert type(detector) is cls
        assert detector.card.name == name  # the class is shared; the weights are the card's
    expected_embedders = {
        "mobilefacenet": OnnxArcFaceEmbedder,
        "edgeface_xs": OnnxArcFaceEmbedder,
        "edgeface_xxs": OnnxArcFaceEmbedder,
        "dlib_resnet128": DlibResNetEmbedder,
    }
    for name, embedder_cls in expected_embedders.items():
        embedder = create_embedder(get_card(name), store)
        assert type(embedder) is embedder_cls
        assert embedder.card.name == name


def test_unknown_architecture_names_the_card_and_the_known_ones(tmp_path: Path) -> None:
    store = ModelStore(cache_dir=tmp_path)
    card = replace(get_card("scrfd_2.5g"), name="scrfd_9g", architecture="scrfd_v9")
    with pytest.raises(ConfigError) as caught:
        create_detector(card, store, DetectorOptions())
    message = str(caught.value)
    assert "scrfd_9g" in message and "'scrfd_v9'" in message
    assert "dlib_hog, retinaface, scrfd, yunet" in message
    card = replace(get_card("mobilefacenet"), architecture="")
    with pytest.raises(ConfigError, match=r"mobilefacenet.*arcface_onnx, dlib_resnet"):
        create_embedder(card, store)


def test_a_card_of_the_other_kind_is_refused(tmp_path: Path) -> None:
    store = ModelStore(cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="mobilefacenet is an embedder, not a detector"):
        create_detector(get_card("mobilefacenet"), store, DetectorOptions())
    with pytest.raises(ConfigError, match="yunet is a detector, not an embedder"):
        create_embedder(get_card("yunet"), store)


def test_one_class_per_architecture() -> None:
    registry: ArchitectureRegistry[type] = ArchitectureRegistry("detector", lambda: None)

    @registry.register("thing")
    class First:
        pass

    registry.register("thing")(First)  # registering the same class again is harmless
    with pytest.raises(ValueError, match="'thing' is already"):

        @registry.register("thing")
        class Second:
            pass


# ---- one load sequence ----------------------------------------------------------------------


def test_constructing_touches_no_file_and_use_loads(
    tmp_path: Path, count_runs: list[tuple[int, ...]]
) -> None:
    card = tiny_card(tmp_path / "models")
    model = OnnxArcFaceEmbedder(card, tiny_store(tmp_path))
    assert not model.loaded and count_runs == []
    model.embed(np.zeros((2, 12, 16, 3), np.uint8))  # no load() first: the session loads
    assert model.loaded
    assert len(count_runs) == 2  # the warm-up, then the crops


def test_warm_up_runs_once_at_the_cards_input_size(
    tmp_path: Path, count_runs: list[tuple[int, ...]]
) -> None:
    model = OnnxModel(tiny_card(tmp_path / "models", input_size=(16, 12)), tiny_store(tmp_path))
    model.load()
    model.load()
    assert model.session is model.session
    assert count_runs == [(1, 3, 12, 16)]  # NCHW: height 12, width 16


def test_warm_up_uses_the_graphs_fixed_size_else_a_small_square(
    tmp_path: Path, count_runs: list[tuple[int, ...]]
) -> None:
    fixed = tiny_card(tmp_path / "models", input_size=None, batch=2, side=8)
    OnnxModel(fixed, tiny_store(tmp_path)).load()
    free = tiny_card(tmp_path / "models", input_size=None, batch="n")
    OnnxModel(free, tiny_store(tmp_path)).load()
    assert count_runs == [(2, 3, 8, 8), (1, 3, WARM_UP_SIDE, WARM_UP_SIDE)]


def test_load_verifies_the_sha256(tmp_path: Path, count_runs: list[tuple[int, ...]]) -> None:
    card = tiny_card(tmp_path / "models")
    wrong = replace(card, files=(ModelFile("tiny.onnx", "0" * 64),))
    model = OnnxModel(wrong, tiny_store(tmp_path))
    with pytest.raises(ChecksumError, match=r"tiny\.onnx"):
        model.load()
    assert not model.loaded and count_runs == []


def test_a_graph_that_cannot_run_fails_at_load_as_a_model_error(tmp_path: Path) -> None:
    card = tiny_card(tmp_path / "models")
    model = OnnxModel(card, tiny_store(tmp_path))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OnnxSession, "run", lambda self, tensor: 1 / 0)
        with pytest.raises(ModelError, match=r"tiny: a first run on zeros \(1, 3, 12, 16\)"):
            model.load()
    assert not model.loaded


def test_dlib_models_follow_the_same_contract(tmp_path: Path) -> None:
    store = ModelStore(cache_dir=tmp_path, offline=True)
    for model in (
        DlibHogDetector(get_card("dlib_hog"), store, DetectorOptions()),
        DlibResNetEmbedder(get_card("dlib_resnet128"), store),
    ):
        assert not model.loaded
        model.load()
        model.load()
        assert model.loaded


# ---- execution providers and threads --------------------------------------------------------


def test_providers_default_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACELEDGER_PROVIDERS", raising=False)
    assert load_config().providers == ["CPUExecutionProvider"]


def test_providers_from_the_environment_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FACELEDGER_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    assert load_config().providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert load_config(providers=["CPUExecutionProvider"]).providers == ["CPUExecutionProvider"]


@pytest.mark.usefixtures("fresh_warnings")
def test_unknown_provider_falls_back_to_the_cpu_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="faceledger.runtime.onnx"):
        assert choose_providers(["NoSuchExecutionProvider"]) == [CPU]
        assert choose_providers(["NoSuchExecutionProvider", CPU]) == [CPU]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "NoSuchExecutionProvider is not available" in warnings[0]
    assert warnings[0].endswith(f"using {CPU}")
    assert choose_providers([]) == [CPU]


@pytest.mark.usefixtures("fresh_warnings")
def test_the_session_reports_the_providers_it_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = RuntimeOptions(threads=1, providers=("NoSuchExecutionProvider",))
    model = OnnxModel(tiny_card(tmp_path / "models"), tiny_store(tmp_path), runtime)
    with caplog.at_level(logging.WARNING, logger="faceledger.runtime.onnx"):
        assert model.providers == [CPU]
    assert "NoSuchExecutionProvider" in caplog.text


def test_the_engine_hands_threads_and_providers_to_every_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FACELEDGER_PROVIDERS", raising=False)
    config = load_config(detector="scrfd_500m", embedder="mobilefacenet", threads=3)
    engine = Engine(config)
    expected = RuntimeOptions(threads=3, providers=CPU_ONLY)
    assert engine.detector.runtime == expected  # type: ignore[attr-defined]
    assert engine.embedder.runtime == expected  # type: ignore[attr-defined]
    chosen = ("NoSuchExecutionProvider", CPU)
    engine = Engine(load_config(providers=list(chosen)))  # the embedded (dlib) profile
    assert engine.detector.runtime.providers == chosen  # type: ignore[attr-defined]
    assert engine.embedder.runtime.providers == chosen  # type: ignore[attr-defined]


@pytest.mark.usefixtures("fresh_warnings")
def test_models_list_says_which_providers_each_model_runs_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from faceledger.cli.main import app

    monkeypatch.setenv("FACELEDGER_PROVIDERS", "NoSuchExecutionProvider,CPUExecutionProvider")
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["scrfd_500m"]["architecture"] == rows["scrfd_2.5g"]["architecture"] == "scrfd"
    assert rows["yunet"]["providers"] == [CPU]
    assert rows["edgeface_xs"]["providers"] == [CPU]
    assert rows["dlib_hog"]["providers"] == []  # dlib runs on its own
