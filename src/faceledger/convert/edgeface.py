"""EdgeFace: its network in plain PyTorch, and the conversion of its state dict to ONNX.

EdgeFace (George et al., "EdgeFace: Efficient Face Recognition Model for Edge Devices",
IEEE T-BIOM 2024) is an EdgeNeXt backbone whose classifier is replaced by a 512-d linear
layer, wrapped as ``model.<EdgeNeXt>``. The published ``edgeface_xs_q.pt`` and
``edgeface_xxs_q.pt`` are state dicts of that network after
``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)``: every
linear layer is stored as int8 packed parameters, everything else as float32. Their
linear layers are full rank (no low-rank "LoRaLin" pairs: those belong to the
``*_gamma_0x`` checkpoints, which are not used here).

The network is written out here rather than taken from timm, whose import needs
torchvision; module names follow timm's EdgeNeXt so that the state dict loads strictly. This is the
reference for :mod:`faceledger.convert.edgeface_onnx`, which writes the same network as an
ONNX graph without PyTorch (the default converter); the sizes (``SPECS``) live there.

Conversion: load the state dict, dequantize the linear weights into a float network,
measure it against the quantized network itself (the published model) on aligned faces,
export to ONNX (opset 17, dynamic batch), check onnxruntime against torch, then write the
file into the model cache with a record of its sha256.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceledger.convert import ConversionReport, Say
from faceledger.convert.edgeface_onnx import SPECS, EdgeNeXtSpec, preprocess, synthetic_faces
from faceledger.errors import ModelError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore, conversion_record_path

OPSET = 17
MIN_QUANTIZED_COSINE = 0.9
"""Float vs published quantized model, lowest cosine over the check faces, to accept: a
gross-error gate. Measured on aligned faces: >= 0.99 against qnnpack kernels (8-bit
activations), about 0.95-0.98 against x86/fbgemm kernels, which quantize activations to
7 bits (``reduce_range``)."""
MAX_ONNX_DIFF = 1e-3
"""onnxruntime vs torch, largest difference of one embedding value, to accept."""
_PACKED = "._packed_params._packed_params"
_QUANT_ONLY = ("._packed_params.dtype", ".scale", ".zero_point")


_EPS = 1e-6


# ---- the network ----------------------------------------------------------------------------


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvBlock(nn.Module):
    """Depth-wise k x k convolution, then an inverted bottleneck in channels-last."""

    def __init__(self, dim: int, kernel: int, expand: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_EPS)
        self.mlp = Mlp(dim, expand * dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class FourierPositions(nn.Module):
    """Sine/cosine encoding of each (row, column) position, projected to ``dim`` channels."""

    def __init__(self, dim: int, hidden: int = 32, temperature: float = 10000.0) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(2 * hidden, dim, kernel_size=1)
        self.hidden = hidden
        self.temperature = temperature

    def _axis(self, n: int) -> torch.Tensor:
        # positions 1..n scaled to (0, 2 pi], divided by the per-channel wavelengths
        pos = torch.arange(1, n + 1, dtype=torch.float32) / (n + _EPS) * (2 * math.pi)
        i = torch.arange(self.hidden, dtype=torch.float32)
        wavelength = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.hidden)
        angles = pos[:, None] / wavelength
        # channel pairs (sin of even, cos of odd), interleaved
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    def forward(self, height: int, width: int) -> torch.Tensor:
        """(1, dim, height, width) encoding."""
        ys = self._axis(height)[:, None, :].expand(height, width, self.hidden)
        xs = self._axis(width)[None, :, :].expand(height, width, self.hidden)
        grid = torch.cat((ys, xs), dim=2).permute(2, 0, 1)[None]
        out: torch.Tensor = self.token_projection(grid.to(self.token_projection.weight))
        return out


class CrossCovarianceAttention(nn.Module):
    """Attention across channels (a C x C map per head), not across positions."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # (3, B, heads, C / heads, N)
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = (attn * self.temperature).softmax(dim=-1)
        out = (attn @ v).permute(0, 3, 1, 2).reshape(b, n, c)
        result: torch.Tensor = self.proj(out)
        return result


class SplitTransposeBlock(nn.Module):
    """EdgeNeXt's global block: cascaded depth-wise convolutions over channel groups,
    cross-covariance attention, then an inverted bottleneck."""

    def __init__(self, dim: int, scales: int, heads: int, expand: int, pos_emb: bool) -> None:
        super().__init__()
        self.groups = scales
        width = math.ceil(dim / scales)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1, groups=width) for _ in range(max(1, scales - 1))
        )
        self.pos_embd = FourierPositions(dim) if pos_emb else None
        self.norm_xca = nn.LayerNorm(dim, eps=_EPS)
        self.gamma_xca = nn.Parameter(torch.ones(dim))
        self.xca = CrossCovarianceAttention(dim, heads)
        self.norm = nn.LayerNorm(dim, eps=_EPS)
        self.mlp = Mlp(dim, expand * dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self.convs) + 1, dim=1)
        outs = []
        carried = parts[0]
        for i, conv in enumerate(self.convs):
            if i > 0:
                carried = carried + parts[i]
            carried = conv(carried)
            outs.append(carried)
        outs.append(parts[-1])
        y = torch.cat(outs, dim=1)

        b, c, h, w = y.shape
        tokens = y.reshape(b, c, h * w).permute(0, 2, 1)
        if self.pos_embd is not None:
            tokens = tokens + self.pos_embd(h, w).reshape(1, c, h * w).permute(0, 2, 1)
        tokens = tokens + self.gamma_xca * self.xca(self.norm_xca(tokens))
        y = tokens.reshape(b, h, w, c)
        y = self.gamma * self.mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class Stage(nn.Module):
    def __init__(self, spec: EdgeNeXtSpec, i: int) -> None:
        super().__init__()
        dim = spec.dims[i]
        self.downsample: nn.Module
        if i == 0:
            self.downsample = nn.Identity()
        else:
            prev = spec.dims[i - 1]
            self.downsample = nn.Sequential(
                ChannelsFirstLayerNorm(prev, eps=_EPS), nn.Conv2d(prev, dim, 2, stride=2)
            )
        n_local = spec.depths[i] - spec.global_blocks[i]
        blocks: list[nn.Module] = [
            ConvBlock(dim, spec.kernel_sizes[i], spec.expand) for _ in range(n_local)
        ]
        blocks += [
            SplitTransposeBlock(dim, spec.scales[i], spec.heads, spec.expand, spec.pos_emb[i])
            for _ in range(spec.global_blocks[i])
        ]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.blocks(self.downsample(x))
        return out


class Head(nn.Module):
    """Global average pool, LayerNorm, linear to the embedding."""

    def __init__(self, dim: int, features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=_EPS)
        self.fc = nn.Linear(dim, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.norm(x.mean(dim=(2, 3))))
        return out


class EdgeNeXt(nn.Module):
    def __init__(self, spec: EdgeNeXtSpec) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, spec.dims[0], 4, stride=4), ChannelsFirstLayerNorm(spec.dims[0], eps=_EPS)
        )
        self.stages = nn.Sequential(*(Stage(spec, i) for i in range(4)))
        self.head = Head(spec.dims[-1], spec.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.stages(self.stem(x)))
        return out


class EdgeFace(nn.Module):
    """(N, 3, 112, 112) RGB in [-1, 1] -> (N, 512) embeddings (not normalised)."""

    def __init__(self, spec: EdgeNeXtSpec) -> None:
        super().__init__()
        self.model = EdgeNeXt(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out


# ---- loading the published state dict -------------------------------------------------------


def load_state(path: Path) -> Mapping[str, Any]:
    """The published (dynamically quantized) state dict, as saved: its ``_metadata``
    (module versions) tells the quantized linear layers how their parameters are packed."""
    try:
        with warnings.catch_warnings():
            # torch deprecates the quantized-tensor machinery these files are made of
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a bad file
        raise ModelError(f"{path}: cannot read this PyTorch state dict ({exc})") from exc
    if not isinstance(state, Mapping):
        raise ModelError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def dequantized(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of the float network: int8 packed linear weights made float32."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(_PACKED):
            prefix = key[: -len(_PACKED)]
            weight, bias = value
            out[f"{prefix}.weight"] = weight.dequantize()
            if bias is not None:
                out[f"{prefix}.bias"] = bias.detach().clone()
        elif not key.endswith(_QUANT_ONLY):
            out[key] = value
    return out


def float_model(spec: EdgeNeXtSpec, state: Mapping[str, Any]) -> EdgeFace:
    model = EdgeFace(spec)
    _load(model, dequantized(state))
    return model.eval()


def quantized_model(spec: EdgeNeXtSpec, state: Mapping[str, Any]) -> nn.Module:
    """The published model itself: the same network, dynamically quantized, as trained."""
    with warnings.catch_warnings():
        # deprecated in favour of torchao, but still the exact recipe the file was made with
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(EdgeFace(spec).eval(), {nn.Linear}, dtype=torch.qint8)
    _load(model, state)
    return model.eval()


def _load(model: nn.Module, state: Mapping[str, Any]) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the state dict does not fit the EdgeFace network ({exc})") from exc


# ---- conversion -----------------------------------------------------------------------------


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


def _quantized_engines() -> list[str]:
    """qnnpack (full 8-bit activations, as on the edge devices EdgeFace targets) and the
    machine's default engine, where supported."""
    supported = torch.backends.quantized.supported_engines
    wanted = ["qnnpack", torch.backends.quantized.engine]
    return [e for e in dict.fromkeys(wanted) if e in supported and e != "none"]


@contextmanager
def _quantized_engine(engine: str) -> Iterator[None]:
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write ``model`` as ONNX with a dynamic batch dimension."""
    with warnings.catch_warnings():
        # the TorchScript exporter announces its own deprecation; its graph is what we want
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _stamp(path: Path, card: ModelCard, source_sha256: str) -> None:
    """Name the model and its source inside the ONNX file, then check the graph."""
    import onnx

    graph = onnx.load(str(path))
    graph.doc_string = f"faceledger {card.name}: {card.summary}"
    for key, value in {
        "faceledger.model": card.name,
        "faceledger.source": card.files[0].name,
        "faceledger.source_sha256": source_sha256,
        "faceledger.licence": card.licence,
    }.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def convert(
    card: ModelCard, store: ModelStore, faces: np.ndarray | None, say: Say
) -> ConversionReport:
    started = time.perf_counter()
    spec = SPECS[card.name]
    source = store.resolve(card)
    pt = source.path()
    say(f"{card.name}: loading {pt} ({source.origin}, sha256 verified)")
    state = load_state(pt)

    given = faces is not None and len(faces) > 0
    check = faces if faces is not None and given else synthetic_faces()
    checked_on = (
        f"{len(check)} aligned faces"
        if given
        else f"{len(check)} synthetic images (no faces given)"
    )
    x = torch.from_numpy(preprocess(card, check))
    with torch.no_grad():
        model = float_model(spec, state)
        want = model(x).numpy()
        quantized = _quantized_parity(card, spec, state, x, want, checked_on=checked_on, say=say)

    target = store.conversion_target(card)
    diff, o_cos = _export_checked(card, model, x, want, target, say=say)
    report = ConversionReport(
        model=card.name,
        path=target,
        sha256="",  # known once the record is written, below
        source=pt.name,
        source_sha256=card.files[0].sha256,  # verified by resolve()
        source_origin=source.origin,
        checked_on=checked_on,
        quantized_cosine=quantized,
        onnx_max_abs_diff=float(f"{diff:.3g}"),
        onnx_cosine_min=round(o_cos, 8),
        torch_version=str(torch.__version__),
        opset=OPSET,
        seconds=round(time.perf_counter() - started, 2),
        converter="torch",
    )
    details = report.as_dict()
    for key in ("model", "path", "sha256", "source", "source_sha256"):
        details.pop(key)
    digest = store.record_conversion(card, target, details)
    say(f"{card.name}: wrote {target} (sha256 {digest})")
    return replace(report, sha256=digest)


def _quantized_parity(
    card: ModelCard,
    spec: EdgeNeXtSpec,
    state: Mapping[str, Any],
    x: torch.Tensor,
    want: np.ndarray,
    *,
    checked_on: str,
    say: Say,
) -> dict[str, tuple[float, float]]:
    """Engine -> (min, mean) cosine of the published int8 model against ``want``."""
    quantized: dict[str, tuple[float, float]] = {}
    for engine in _quantized_engines():
        try:
            with _quantized_engine(engine):
                cos = _cosines(quantized_model(spec, state)(x).numpy(), want)
        except (ImportError, RuntimeError) as exc:  # kernels missing from this torch
            say(f"{card.name}: cannot run the int8 model with {engine} kernels ({exc})")
            continue
        quantized[engine] = (round(float(cos.min()), 6), round(float(cos.mean()), 6))
        say(
            f"{card.name}: float vs published int8 model ({engine} kernels) on {checked_on}: "
            f"cosine min {cos.min():.5f}, mean {cos.mean():.5f}"
        )
    if not quantized:
        raise ModelError(
            f"model {card.name}: this PyTorch ({torch.__version__}) cannot run the published "
            "int8 model, so the conversion cannot be checked; nothing was written. "
            "PyTorch 2.13 is known to work."
        )
    best = max(low for low, _ in quantized.values())
    if best < MIN_QUANTIZED_COSINE:
        raise ModelError(
            f"model {card.name}: the float network departs from the published quantized "
            f"one (cosine {best:.4f} < {MIN_QUANTIZED_COSINE}); nothing was written"
        )
    return quantized


def _export_checked(
    card: ModelCard,
    model: nn.Module,
    x: torch.Tensor,
    want: np.ndarray,
    target: Path,
    *,
    say: Say,
) -> tuple[float, float]:
    """Export to a temporary file, compare onnxruntime with torch, then move it to
    ``target``. Returns (max abs difference, lowest cosine)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{card.name}.") as tmp_dir:
        tmp = Path(tmp_dir) / target.name
        say(f"{card.name}: exporting ONNX (opset {OPSET}, dynamic batch)")
        try:
            export_onnx(model, x[:2], tmp)
            _stamp(tmp, card, card.files[0].sha256)
        except Exception as exc:  # the exporter and checker raise many unrelated types
            raise ModelError(f"model {card.name}: ONNX export failed ({exc})") from exc
        got = _run_onnx(tmp, x.numpy())
        diff = float(np.abs(got - want).max())
        o_cos = float(_cosines(got, want).min())
        say(f"{card.name}: onnxruntime vs torch: max abs diff {diff:.2e}, cosine min {o_cos:.7f}")
        if diff > MAX_ONNX_DIFF:
            raise ModelError(
                f"model {card.name}: the ONNX export differs from torch by {diff:.2e} "
                f"(> {MAX_ONNX_DIFF:g}); nothing was written"
            )
        # the old record goes first, so a half-finished run never pairs old and new
        conversion_record_path(target).unlink(missing_ok=True)
        tmp.replace(target)
    return diff, o_cos


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    from faceledger.runtime.onnx import OnnxSession

    session = OnnxSession(path, threads=1)
    return session.run(x)[0]
