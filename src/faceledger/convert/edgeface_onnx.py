"""EdgeFace to ONNX without PyTorch: the published state dict, dequantized in numpy, written
as an ONNX graph with the ``onnx`` package.

The graph computes what :mod:`faceledger.convert.edgeface` (the PyTorch network) computes,
on the same contract: input ``input`` (N, 3, 112, 112) RGB scaled to [-1, 1], output
``embedding`` (N, 512), not normalised, opset 17, any batch. Because the input size is
fixed, everything that depends only on it (the Fourier positional encoding of the stage
that has one, after its 1x1 projection) is computed here once and stored as a constant,
and each layer-scale ``gamma`` is folded into the linear layer before it.

The checkpoint is read by :mod:`faceledger.convert.checkpoint`, which runs no code from it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceledger.convert.checkpoint import QuantizedArray, read_state_dict
from faceledger.errors import ModelError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore, conversion_record_path

if TYPE_CHECKING:
    import onnx

    from faceledger.convert import ConversionReport, Say

OPSET = 17
IR_VERSION = 8
"""The ONNX IR version of opset 17, so that any onnxruntime that runs opset 17 loads it."""
INPUT, OUTPUT = "input", "embedding"
_EPS = 1e-6
_NORMALIZE_EPS = 1e-12
_PACKED = "._packed_params._packed_params"
_QUANT_ONLY = ("._packed_params.dtype", ".scale", ".zero_point")


@dataclass(frozen=True)
class EdgeNeXtSpec:
    """One EdgeNeXt size (timm's ``edgenext_*`` settings that EdgeFace uses)."""

    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    global_blocks: tuple[int, int, int, int] = (0, 1, 1, 1)
    kernel_sizes: tuple[int, int, int, int] = (3, 5, 7, 9)
    scales: tuple[int, int, int, int] = (2, 2, 3, 4)
    """Channel groups of the split depth-wise convolutions in each stage's global block."""
    pos_emb: tuple[bool, bool, bool, bool] = (False, True, False, False)
    heads: int = 4
    expand: int = 4
    features: int = 512
    pos_hidden: int = 32
    pos_temperature: float = 10000.0


SPECS: Mapping[str, EdgeNeXtSpec] = {
    # timm edgenext_x_small
    "edgeface_xs": EdgeNeXtSpec(dims=(32, 64, 100, 192), depths=(3, 3, 9, 3)),
    # timm edgenext_xx_small
    "edgeface_xxs": EdgeNeXtSpec(dims=(24, 48, 88, 168), depths=(2, 2, 6, 2)),
}


# ---- the float weights ----------------------------------------------------------------------


def dequantized(state: Mapping[str, Any], path: Path) -> dict[str, np.ndarray]:
    """The float state dict: packed int8 linear weights as float32 ``weight``/``bias``;
    the activation scales of the dynamic quantization dropped."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.endswith(_PACKED):
            prefix = key[: -len(_PACKED)]
            if not (isinstance(value, tuple) and len(value) == 2):
                raise ModelError(f"{path}: {key} is not a packed (weight, bias) pair")
            weight, bias = value
            if not isinstance(weight, QuantizedArray):
                raise ModelError(f"{path}: {key} holds no quantized weight")
            out[f"{prefix}.weight"] = weight.dequantize()
            if bias is not None:
                out[f"{prefix}.bias"] = np.asarray(bias, dtype=np.float32)
        elif not key.endswith(_QUANT_ONLY):
            if not isinstance(value, np.ndarray):
                raise ModelError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
            out[key] = value.astype(np.float32, copy=False)
    return out


class Weights:
    """The float state dict, handed out by name and shape; every entry must be used once."""

    def __init__(self, tensors: Mapping[str, np.ndarray], path: Path) -> None:
        self._tensors = dict(tensors)
        self._used: set[str] = set()
        self._path = path

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self._tensors.get(f"model.{key}")
        if value is None:
            raise ModelError(f"{self._path}: the state dict has no model.{key}")
        if value.shape != shape:
            raise ModelError(
                f"{self._path}: model.{key} has shape {value.shape}, the EdgeFace network "
                f"expects {shape}"
            )
        self._used.add(f"model.{key}")
        return value

    def check_all_used(self) -> None:
        left = sorted(set(self._tensors) - self._used)
        if left:
            shown = ", ".join(left[:5]) + (" ..." if len(left) > 5 else "")
            raise ModelError(
                f"{self._path}: {len(left)} entries of the state dict have no place in the "
                f"EdgeFace network: {shown}"
            )


# ---- the graph ------------------------------------------------------------------------------


class Graph:
    """Nodes and constants of one ONNX graph, named as they are added."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self._count = 0

    def const(self, value: np.ndarray | np.generic | float | list[int], name: str = "c") -> str:
        from onnx import numpy_helper

        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind == "i":
            array = array.astype(np.int64)
        out = self._name(name)
        self.constants.append(numpy_helper.from_array(np.ascontiguousarray(array), out))
        return out

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        """Add one node; returns its output name (a list of names when ``outputs > 1``)."""
        from onnx import helper

        names = [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"


@dataclass
class Builder:
    """Writes the EdgeNeXt network of one spec into a :class:`Graph`."""

    spec: EdgeNeXtSpec
    weights: Weights
    graph: Graph

    # -- layers --------------------------------------------------------------------------------

    def conv(
        self, x: str, key: str, cin: int, cout: int, kernel: int, *, stride: int = 1, dw: bool
    ) -> str:
        groups = cout if dw else 1
        w = self.weights.take(f"{key}.weight", (cout, cin // groups, kernel, kernel))
        b = self.weights.take(f"{key}.bias", (cout,))
        pad = kernel // 2 if stride == 1 else 0
        return self.graph.op(
            "Conv",
            x,
            self.graph.const(w, "w"),
            self.graph.const(b, "b"),
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
        )

    def layer_norm(self, x: str, key: str, dim: int) -> str:
        g = self.weights.take(f"{key}.weight", (dim,))
        b = self.weights.take(f"{key}.bias", (dim,))
        return self.graph.op(
            "LayerNormalization",
            x,
            self.graph.const(g, "ln_w"),
            self.graph.const(b, "ln_b"),
            axis=-1,
            epsilon=_EPS,
        )

    def channels_first_norm(self, x: str, key: str, dim: int) -> str:
        y = self.graph.op("Transpose", x, perm=[0, 2, 3, 1])
        return self.graph.op("Transpose", self.layer_norm(y, key, dim), perm=[0, 3, 1, 2])

    def linear(self, x: str, key: str, cin: int, cout: int, scale: np.ndarray | None = None) -> str:
        """``x @ W.T + b`` over the last axis; ``scale`` (a layer-scale gamma) multiplies
        the output channels, folded into W and b."""
        w = self.weights.take(f"{key}.weight", (cout, cin))
        b = self.weights.take(f"{key}.bias", (cout,))
        if scale is not None:
            w, b = w * scale[:, None], b * scale
        y = self.graph.op("MatMul", x, self.graph.const(np.ascontiguousarray(w.T), "fc_w"))
        return self.graph.op("Add", y, self.graph.const(b, "fc_b"))

    def gelu(self, x: str) -> str:
        """Exact GELU, ``x * 0.5 * (1 + erf(x / sqrt 2))``, in the form onnxruntime fuses."""
        g = self.graph
        erf = g.op("Erf", g.op("Div", x, g.const(np.float32(math.sqrt(2.0)), "sqrt2")))
        one_plus = g.op("Add", erf, g.const(np.float32(1.0), "one"))
        return g.op("Mul", g.op("Mul", x, one_plus), g.const(np.float32(0.5), "half"))

    def mlp(self, x: str, key: str, dim: int, gamma_key: str) -> str:
        hidden = self.spec.expand * dim
        gamma = self.weights.take(gamma_key, (dim,))
        h = self.gelu(self.linear(x, f"{key}.fc1", dim, hidden))
        return self.linear(h, f"{key}.fc2", hidden, dim, scale=gamma)

    # -- blocks --------------------------------------------------------------------------------

    def conv_block(self, x: str, key: str, dim: int, kernel: int) -> str:
        g = self.graph
        y = g.op(
            "Transpose",
            self.conv(x, f"{key}.conv_dw", dim, dim, kernel, dw=True),
            perm=[0, 2, 3, 1],
        )
        y = self.mlp(self.layer_norm(y, f"{key}.norm", dim), f"{key}.mlp", dim, f"{key}.gamma")
        return g.op("Add", x, g.op("Transpose", y, perm=[0, 3, 1, 2]))

    def split_convs(self, x: str, key: str, dim: int, groups: int) -> str:
        """Depth-wise 3x3 convolutions cascaded over channel groups (as ``torch.chunk``)."""
        g = self.graph
        width = math.ceil(dim / groups)
        sizes = [width] * (dim // width) + ([dim % width] if dim % width else [])
        n_convs = max(1, groups - 1)
        if len(sizes) != n_convs + 1:
            raise ModelError(f"EdgeNeXt: cannot split {dim} channels into {groups} groups")
        parts = g.op("Split", x, g.const(sizes, "sizes"), axis=1, outputs=len(sizes))
        outs: list[str] = []
        carried = parts[0]
        for i in range(n_convs):
            if i > 0:
                carried = g.op("Add", carried, parts[i])
            carried = self.conv(carried, f"{key}.convs.{i}", width, width, 3, dw=True)
            outs.append(carried)
        return g.op("Concat", *outs, parts[-1], axis=1)

    def heads(self, t: str, dim: int, n: int, perm: list[int]) -> str:
        """(N, n, dim) -> the per-head layout ``perm`` of (N, n, heads, dim / heads)."""
        g = self.graph
        heads = self.spec.heads
        shaped = g.op("Reshape", t, g.const([0, n, heads, dim // heads], "shape"))
        return g.op("Transpose", shaped, perm=perm)

    def l2_normalized(self, x: str, axis: int) -> str:
        g = self.graph
        norm = g.op("ReduceL2", x, axes=[axis], keepdims=1)
        return g.op("Div", x, g.op("Max", norm, g.const(np.float32(_NORMALIZE_EPS), "eps")))

    def attention(self, t: str, key: str, dim: int, n: int) -> str:
        """Cross-covariance attention of (N, n, dim) tokens: a (dim/heads)^2 map per head."""
        g = self.graph
        qkv = self.linear(t, f"{key}.qkv", dim, 3 * dim)
        q, k, v = g.op("Split", qkv, g.const([dim] * 3, "sizes"), axis=2, outputs=3)
        q = self.l2_normalized(self.heads(q, dim, n, [0, 2, 3, 1]), -1)  # (N, h, d, n)
        k = self.l2_normalized(self.heads(k, dim, n, [0, 2, 1, 3]), 2)  # (N, h, n, d)
        temperature = self.weights.take(f"{key}.temperature", (self.spec.heads, 1, 1))
        attn = g.op("Mul", g.op("MatMul", q, k), g.const(temperature, "temperature"))
        attn = g.op("Softmax", attn, axis=-1)
        out = g.op("MatMul", attn, self.heads(v, dim, n, [0, 2, 3, 1]))  # (N, h, d, n)
        out = g.op("Transpose", out, perm=[0, 3, 1, 2])  # (N, n, h, d)
        return g.op("Reshape", out, g.const([0, n, dim], "shape"))

    def split_transpose_block(self, x: str, key: str, stage: int, side: int) -> str:
        g, spec = self.graph, self.spec
        dim, n = spec.dims[stage], side * side
        y = self.split_convs(x, key, dim, spec.scales[stage])
        tokens = g.op(
            "Transpose", g.op("Reshape", y, g.const([0, dim, n], "shape")), perm=[0, 2, 1]
        )
        if spec.pos_emb[stage]:
            pos = self.positions(f"{key}.pos_embd", dim, side)
            tokens = g.op("Add", tokens, g.const(pos, "pos"))
        gamma_xca = self.weights.take(f"{key}.gamma_xca", (dim,))
        normed = self.layer_norm(tokens, f"{key}.norm_xca", dim)
        attended = self.attention(normed, f"{key}.xca", dim, n)
        proj = self.linear(attended, f"{key}.xca.proj", dim, dim, scale=gamma_xca)
        tokens = g.op("Add", tokens, proj)
        normed = self.layer_norm(tokens, f"{key}.norm", dim)
        y = g.op("Transpose", self.mlp(normed, f"{key}.mlp", dim, f"{key}.gamma"), perm=[0, 2, 1])
        y = g.op("Reshape", y, g.const([0, dim, side, side], "shape"))
        return g.op("Add", x, y)

    def positions(self, key: str, dim: int, side: int) -> np.ndarray:
        """The Fourier encoding of a ``side`` x ``side`` grid, projected: (1, side^2, dim)."""
        hidden = self.spec.pos_hidden
        w = self.weights.take(f"{key}.token_projection.weight", (dim, 2 * hidden, 1, 1))
        b = self.weights.take(f"{key}.token_projection.bias", (dim,))
        axis = fourier_axis(side, hidden, self.spec.pos_temperature)  # (side, hidden)
        ys = np.broadcast_to(axis[:, None, :], (side, side, hidden))
        xs = np.broadcast_to(axis[None, :, :], (side, side, hidden))
        grid = np.concatenate((ys, xs), axis=2).reshape(side * side, 2 * hidden)
        projected = grid @ w[:, :, 0, 0].astype(np.float64).T + b
        return projected[None].astype(np.float32)

    # -- the network ---------------------------------------------------------------------------

    def network(self, x: str, size: int) -> str:
        spec = self.spec
        y = self.conv(x, "stem.0", 3, spec.dims[0], 4, stride=4, dw=False)
        y = self.channels_first_norm(y, "stem.1", spec.dims[0])
        side = size // 4
        for i, dim in enumerate(spec.dims):
            if i > 0:
                prev = spec.dims[i - 1]
                y = self.channels_first_norm(y, f"stages.{i}.downsample.0", prev)
                y = self.conv(y, f"stages.{i}.downsample.1", prev, dim, 2, stride=2, dw=False)
                side = side // 2
            n_local = spec.depths[i] - spec.global_blocks[i]
            for j in range(spec.depths[i]):
                key = f"stages.{i}.blocks.{j}"
                if j < n_local:
                    y = self.conv_block(y, key, dim, spec.kernel_sizes[i])
                else:
                    y = self.split_transpose_block(y, key, i, side)
        return self.head(y)

    def head(self, x: str) -> str:
        g, dim = self.graph, self.spec.dims[-1]
        pooled = self.layer_norm(g.op("ReduceMean", x, axes=[2, 3], keepdims=0), "head.norm", dim)
        w = self.weights.take("head.fc.weight", (self.spec.features, dim))
        b = self.weights.take("head.fc.bias", (self.spec.features,))
        return g.op("Gemm", pooled, g.const(w, "fc_w"), g.const(b, "fc_b"), transB=1)


def fourier_axis(n: int, hidden: int, temperature: float) -> np.ndarray:
    """(n, hidden): positions 1..n scaled to (0, 2 pi], over per-channel wavelengths, as
    interleaved (sin of even channels, cos of odd ones); float64."""
    pos = np.arange(1, n + 1, dtype=np.float64) / (n + _EPS) * (2 * math.pi)
    i = np.arange(hidden, dtype=np.float64)
    wavelength = temperature ** (2 * np.floor(i / 2) / hidden)
    angles = pos[:, None] / wavelength[None, :]
    return np.stack((np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])), axis=2).reshape(n, hidden)


def build_model(card: ModelCard, state: Mapping[str, Any], path: Path) -> onnx.ModelProto:
    """The ONNX model of ``card`` from its published state dict."""
    import onnx
    from onnx import TensorProto, helper

    spec = SPECS[card.name]
    if card.input_size is None or card.input_size[0] != card.input_size[1]:
        raise ModelError(f"model {card.name}: EdgeFace takes square input, not {card.input_size}")
    weights = Weights(dequantized(state, path), path)
    graph = Graph()
    height, width = card.input_size
    out = Builder(spec, weights, graph).network(INPUT, height)
    weights.check_all_used()
    graph.nodes.append(helper.make_node("Identity", [out], [OUTPUT]))
    proto = helper.make_graph(
        graph.nodes,
        card.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, height, width])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", spec.features])],
        initializer=graph.constants,
    )
    model = helper.make_model(
        proto,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="faceledger",
        ir_version=IR_VERSION,
    )
    model.doc_string = f"faceledger {card.name}: {card.summary}"
    for key, value in {
        "faceledger.model": card.name,
        "faceledger.source": card.files[0].name,
        "faceledger.source_sha256": card.files[0].sha256,
        "faceledger.licence": card.licence,
        "faceledger.converter": "numpy",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(
            f"model {card.name}: the ONNX graph made from {path} is invalid ({exc})"
        ) from exc
    return model


# ---- conversion -----------------------------------------------------------------------------


def preprocess(card: ModelCard, crops: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB crops -> (n, 3, H, W) float32, as the embedder feeds them."""
    x = crops[..., ::-1] if card.color == "BGR" else crops
    mean = np.asarray(card.mean, dtype=np.float32)
    scaled = (x.astype(np.float32) - mean) / np.float32(card.std)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def synthetic_faces(n: int = 8, size: int = 112, seed: int = 0) -> np.ndarray:
    """Smooth random images: a stand-in when no aligned faces are given."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        noisy = smooth + rng.normal(0, 8, smooth.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(images)


_CHECK_TOLERANCE = 1e-4
"""Largest difference between one face embedded alone and in a batch, to accept."""


def sanity_check(card: ModelCard, path: Path, faces: np.ndarray) -> tuple[int, float]:
    """Run the written graph with onnxruntime: finite (n, 512) embeddings, the same for a
    face alone as in the batch. Returns (faces run, largest batch-vs-single difference)."""
    from faceledger.runtime.onnx import OnnxSession

    x = preprocess(card, faces)
    session = OnnxSession(path, threads=1)
    batch = session.run(x)[0]
    if batch.shape != (len(x), card.embedding_dim) or not np.isfinite(batch).all():
        raise ModelError(
            f"model {card.name}: the converted graph gives {batch.shape} outputs "
            f"(finite: {bool(np.isfinite(batch).all())}), expected ({len(x)}, "
            f"{card.embedding_dim}) finite values; nothing was written"
        )
    single = session.run(x[:1])[0]
    diff = float(np.abs(single[0] - batch[0]).max())
    if diff > _CHECK_TOLERANCE:
        raise ModelError(
            f"model {card.name}: one face gives other values alone than in a batch "
            f"(max diff {diff:.2e}); nothing was written"
        )
    return len(x), diff


def write_atomically(model: onnx.ModelProto, target: Path) -> None:
    """Write ``model`` to a temporary file beside ``target``, then rename it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)  # mkstemp makes it private; the cache's other files are not
        # the old record goes first, so that a half-finished run never pairs old and new
        conversion_record_path(target).unlink(missing_ok=True)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def convert(
    card: ModelCard, store: ModelStore, faces: np.ndarray | None, say: Say
) -> ConversionReport:
    """Make ``card``'s ONNX file in the store's cache from its published state dict."""
    from faceledger.convert import ConversionReport

    started = time.perf_counter()
    source = store.resolve(card)
    pt = source.path()
    target = store.conversion_target(card)
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"{card.name}: converting {pt} ({source.origin}, sha256 verified) to ONNX")
    model = build_model(card, read_state_dict(pt), pt)
    given = faces is not None and len(faces) > 0
    check = faces if faces is not None and given else synthetic_faces()
    checked_on = f"{len(check)} aligned faces" if given else f"{len(check)} synthetic images"
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{card.name}.") as tmp:
        trial = Path(tmp) / target.name
        trial.write_bytes(model.SerializeToString())
        _n, diff = sanity_check(card, trial, check)
    write_atomically(model, target)
    seconds = round(time.perf_counter() - started, 2)
    details = {
        "converter": "numpy",
        "checked_on": checked_on,
        "batch_vs_single_max_abs_diff": float(f"{diff:.3g}"),
        "opset": OPSET,
        "seconds": seconds,
        "source_origin": source.origin,
    }
    digest = store.record_conversion(card, target, details)
    say(f"{card.name}: wrote {target} (sha256 {digest}) in {seconds:.1f} s")
    return ConversionReport(
        model=card.name,
        path=target,
        sha256=digest,
        source=pt.name,
        source_sha256=card.files[0].sha256,
        source_origin=source.origin,
        checked_on=checked_on,
        opset=OPSET,
        seconds=seconds,
        converter="numpy",
    )
