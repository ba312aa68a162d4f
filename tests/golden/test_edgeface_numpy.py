"""EdgeFace without PyTorch: the restricted checkpoint reader, the numpy/onnx converter, the
conversion on first use, and the converted models on real LFW faces.

The tests on the published files need ../shared (models, LFW) and skip, saying so, without
it. The comparison with the PyTorch reference converter needs torch and skips without it;
run it with a torch on the path, e.g.
``PYTHONPATH=/path/to/torch/site-packages python -m pytest tests/golden/test_edgeface_numpy.py``.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from faceledger.bench.lfw import read_pairs
from faceledger.config import load_config
from faceledger.convert import convert, ensure_converted
from faceledger.convert.checkpoint import QuantizedArray, read_state_dict
from faceledger.convert.edgeface_onnx import preprocess
from faceledger.embed.base import create_embedder
from faceledger.engine import Engine
from faceledger.errors import ModelError
from faceledger.faces.align import ArcFaceAligner
from faceledger.models.catalog import get_card
from faceledger.models.store import ModelStore, conversion_record_path, read_conversion_record
from faceledger.runtime.onnx import OnnxSession
from tests.conftest import LFW, MODELS, need

NAMES = ("edgeface_xxs", "edgeface_xs")
HAVE_TORCH = importlib.util.find_spec("torch") is not None


# ---- a hand-made checkpoint: the pickle opcodes torch.save writes -----------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"


def _storage(kind: str, key: str, numel: int) -> bytes:
    """A persistent reference to storage ``key``: ('storage', torch.<kind>, key, 'cpu', n)."""
    return (
        b"("
        + _str("storage")
        + _global("torch", kind)
        + _str(key)
        + _str("cpu")
        + (b"J" + struct.pack("<i", numel))
        + b"tQ"
    )


def _hooks() -> bytes:
    return _global("collections", "OrderedDict") + b")R"


def _tensor(
    kind: str, key: str, numel: int, offset: int, size: tuple[int, ...], *, stride: tuple[int, ...]
) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, hooks)``."""
    args = _storage(kind, key, numel) + b"J" + struct.pack("<i", offset) + _ints(size)
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + args
        + _ints(stride)
        + (b"\x89" + _hooks() + b"tR")
    )


def _state(entries: dict[str, bytes]) -> bytes:
    """A protocol-2 pickle of an OrderedDict of the given (already pickled) values."""
    items = b"".join(_str(k) + v for k, v in entries.items())
    return b"\x80\x02" + _hooks() + b"(" + items + b"u."


def _archive(path: Path, pickled: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled)
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")
    return path


def test_a_plain_tensor_is_read_with_its_offset_and_stride(tmp_path: Path) -> None:
    data = np.arange(12, dtype="<f4")
    # a transposed 3 x 2 view starting at element 1
    pickled = _state({"w": _tensor("FloatStorage", "0", 12, 1, (3, 2), stride=(1, 3))})
    state = read_state_dict(_archive(tmp_path / "t.pt", pickled, {"0": data.tobytes()}))
    assert list(state) == ["w"]
    np.testing.assert_array_equal(state["w"], [[1, 4], [2, 5], [3, 6]])
    assert state["w"].dtype == np.float32


def test_a_per_channel_int8_tensor_is_dequantized(tmp_path: Path) -> None:
    values = np.array([[-3, 0, 5], [10, -128, 127]], dtype="i1")
    scales = np.array([0.5, 0.25], dtype="<f8")
    zeros = np.array([1, -2], dtype="<i8")
    quantizer = (
        b"(" + _global("torch", "per_channel_affine")
        + _tensor("DoubleStorage", "1", 2, 0, (2,), stride=(1,))
        + _tensor("LongStorage", "2", 2, 0, (2,), stride=(1,))
        + b"J" + struct.pack("<i", 0) + b"t"
    )  # fmt: skip
    qtensor = _global("torch._utils", "_rebuild_qtensor") + b"(" + (
        _storage("QInt8Storage", "0", 6) + b"J\x00\x00\x00\x00" + _ints((2, 3))
        + _ints((3, 1)) + quantizer + b"\x89" + _hooks() + b"tR"
    )  # fmt: skip
    storages = {"0": values.tobytes(), "1": scales.tobytes(), "2": zeros.tobytes()}
    state = read_state_dict(_archive(tmp_path / "q.pt", _state({"q": qtensor}), storages))
    q = state["q"]
    assert isinstance(q, QuantizedArray) and q.axis == 0
    want = (values.astype(np.float32) - zeros[:, None]) * scales[:, None].astype(np.float32)
    np.testing.assert_array_equal(q.dequantize(), want)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    pickled = _state({"w": _tensor("FloatStorage", "0", 4, 2, (2, 2), stride=(2, 1))})
    path = _archive(tmp_path / "oob.pt", pickled, {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(ModelError, match=r"oob\.pt: .*reaches element 5 of a storage of 4"):
        read_state_dict(path)


def test_a_storage_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    pickled = _state({"w": _tensor("FloatStorage", "0", 4, 0, (4,), stride=(1,))})
    path = _archive(tmp_path / "short.pt", pickled, {"0": b"\x00" * 12})
    with pytest.raises(ModelError, match=r"short\.pt: .*holds 12 bytes, expected 4"):
        read_state_dict(path)


class _Payload:
    """Unpickling this runs ``os.system`` (under the pickle's own name for it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pickled = pickle.dumps({"model.stem.0.weight": _Payload(marker)}, protocol=2)
    path = _archive(tmp_path / "evil.pt", pickled, {})
    module = os.system.__module__  # "posix" on Linux and macOS, "nt" on Windows
    with pytest.raises(ModelError, match=rf"evil\.pt: refusing .*global {module}\.system"):
        read_state_dict(path)
    assert not marker.exists()


def test_a_pickle_calling_eval_is_refused(tmp_path: Path) -> None:
    pickled = b"\x80\x02" + _global("builtins", "eval") + b"(" + _str("1+1") + b"tR."
    with pytest.raises(ModelError, match=r"ev\.pt: refusing .*global builtins\.eval"):
        read_state_dict(_archive(tmp_path / "ev.pt", pickled, {}))


def test_garbage_and_truncated_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError, match=r"garbage\.pt: not a PyTorch checkpoint"):
        read_state_dict(garbage)
    no_pickle = tmp_path / "nopickle.pt"
    with zipfile.ZipFile(no_pickle, "w") as z:
        z.writestr("archive/version", "3\n")
    with pytest.raises(ModelError, match=r"nopickle\.pt: not a PyTorch checkpoint archive"):
        read_state_dict(no_pickle)
    source = need(MODELS / "edgeface_xxs_q.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(ModelError, match=r"truncated\.pt: not a PyTorch checkpoint .*truncated"):
        read_state_dict(truncated)


def test_the_torch_converter_without_torch_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(ModelError, match=r"needs torch.*pip install -e '\.\[convert\]'"):
        convert(get_card("edgeface_xs"), ModelStore(tmp_path), converter="torch")


# ---- the published files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def numpy_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    need(MODELS)
    store = ModelStore(tmp_path_factory.mktemp("numpy-cache"), MODELS, offline=True)
    for name in NAMES:
        report = convert(get_card(name), store)
        print(f"\n{name}: numpy conversion in {report.seconds:.2f} s, sha256 {report.sha256}")
        assert report.converter == "numpy" and report.torch_version is None
        assert report.seconds < 30  # about 0.3 s on one core: seconds, not minutes
    return store


@pytest.mark.parametrize("name", NAMES)
def test_numpy_conversion_of_the_published_state_dict(numpy_store: ModelStore, name: str) -> None:
    import onnx

    card = get_card(name)
    path = numpy_store.find_converted(card)
    assert path == numpy_store.cache_dir / f"{name}.onnx"
    record = read_conversion_record(path)
    assert record is not None and record["converter"] == "numpy"
    assert record["source"] == {card.files[0].name: card.files[0].sha256}
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import] == [17]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["embedding"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 112, 112]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["faceledger.source_sha256"] == card.files[0].sha256
    # the same source gives the same bytes: concurrent conversions cannot disagree
    again = ModelStore(numpy_store.cache_dir.parent / f"again-{name}", MODELS, offline=True)
    assert convert(card, again).sha256 == record["sha256"]


def test_first_use_converts_once_with_one_line(tmp_path: Path) -> None:
    need(MODELS)
    lines: list[str] = []
    store = ModelStore(tmp_path, MODELS, offline=True, notice=lines.append)
    card = get_card("edgeface_xxs")
    path = store.runtime_path(card)
    assert path == tmp_path / "edgeface_xxs.onnx" and store.find_converted(card) == path
    assert len(lines) == 1 and "converted edgeface_xxs_q.pt" in lines[0], lines
    assert store.runtime_path(card) == path and len(lines) == 1  # not again


def _convert_in_child(cache: str) -> str:
    store = ModelStore(Path(cache), MODELS, offline=True, notice=None)
    return str(ensure_converted(get_card("edgeface_xxs"), store))


def test_processes_converting_at_once_leave_one_good_file(tmp_path: Path) -> None:
    need(MODELS)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_convert_in_child, [str(tmp_path)] * 3)
    assert len(set(paths)) == 1
    card = get_card("edgeface_xxs")
    assert ModelStore(tmp_path, MODELS, offline=True).find_converted(card) == Path(paths[0])
    record = json.loads(conversion_record_path(Path(paths[0])).read_text())
    assert record["converter"] == "numpy"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "edgeface_xxs.onnx",
        "edgeface_xxs.onnx.json",
    ]


# ---- real faces -----------------------------------------------------------------------------

_EVERY = 50
"""Every 50th pair of LFW View 2: 60 mated and 60 non-mated pairs across the 10 folds."""


@pytest.fixture(scope="module")
def lfw_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """(crops, mated): ArcFace-aligned crops of both sides of each pair, (2n, 112, 112, 3)
    RGB, and whether each pair is one person."""
    need(MODELS)
    need(LFW / "pairs.txt")
    pairs = read_pairs(LFW / "pairs.txt")[::_EVERY]
    config = load_config(
        profile="fast",
        db=tmp_path_factory.mktemp("db") / "g.db",
        model_mirror=MODELS,
        model_cache=tmp_path_factory.mktemp("cache"),
        offline=True,
    )
    aligner = ArcFaceAligner(112)
    crops, mated = [], []
    with Engine(config) as engine:
        for pair in pairs:
            sides = []
            for name, number in (pair.a, pair.b):
                image = engine.read(LFW / "images" / name / f"{name}_{number:04d}.jpg")
                faces = engine.detect(image).largest()
                if len(faces) == 0:
                    break
                sides.append(aligner.align(image, faces)[0])
            if len(sides) == 2:
                crops += sides
                mated.append(pair.same)
    assert len(mated) >= 0.95 * len(pairs)
    return np.stack(crops), np.asarray(mated)


@pytest.mark.skipif(
    not HAVE_TORCH,
    reason="PyTorch is not installed, so the reference converter cannot run to compare with",
)
@pytest.mark.parametrize("name", NAMES)
def test_numpy_and_torch_conversions_agree_on_lfw_faces(
    numpy_store: ModelStore,
    lfw_pairs: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    name: str,
) -> None:
    card = get_card(name)
    torch_store = ModelStore(tmp_path, MODELS, offline=True)
    reference = convert(card, torch_store, converter="torch").path
    crops, _ = lfw_pairs
    x = preprocess(card, crops)
    mine_path = numpy_store.find_converted(card)
    assert mine_path is not None
    mine = np.concatenate([OnnxSession(mine_path, threads=1).run(b)[0] for b in _batches(x)])
    theirs = np.concatenate([OnnxSession(reference, threads=1).run(b)[0] for b in _batches(x)])
    diff = float(np.abs(mine - theirs).max())
    print(f"\n{name}: numpy vs torch converter on {len(x)} LFW faces: max abs diff {diff:.2e}")
    assert diff < 1e-5


def _batches(x: np.ndarray, size: int = 32) -> list[np.ndarray]:
    return [x[i : i + size] for i in range(0, len(x), size)]


def _auc(mated: np.ndarray, nonmated: np.ndarray) -> float:
    """The chance that a mated pair outscores a non-mated one (ties count half)."""
    greater = (mated[:, None] > nonmated[None, :]).mean()
    ties = (mated[:, None] == nonmated[None, :]).mean()
    return float(greater + ties / 2)


@pytest.mark.parametrize("name", NAMES)
def test_lfw_same_person_pairs_score_clearly_higher(
    numpy_store: ModelStore, lfw_pairs: tuple[np.ndarray, np.ndarray], name: str
) -> None:
    card = get_card(name)
    embedder = create_embedder(card, numpy_store, threads=1)
    crops, mated = lfw_pairs
    vectors = embedder.embed(crops).vectors
    scores = (vectors[0::2] * vectors[1::2]).sum(axis=1)
    same, other = scores[mated], scores[~mated]
    threshold = card.thresholds[1e-3]
    auc = _auc(same, other)
    print(
        f"\n{name}: {len(same)} mated pairs mean {same.mean():.3f} (min {same.min():.3f}), "
        f"{len(other)} non-mated mean {other.mean():.3f} (max {other.max():.3f}), AUC {auc:.4f}"
    )
    assert same.mean() - other.mean() > 0.4
    assert auc > 0.98  # one of the 60 mated pairs scores near 0 with either model
    # at the card's FAR 1e-3 threshold: (almost) every mate accepted, no stranger
    assert (same > threshold).mean() >= 0.95
    assert (other > threshold).sum() == 0
