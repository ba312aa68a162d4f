"""LFW: its protocol files, and the cached detect -> align -> embed pass over its images.

Detection and embedding are cached separately (``.npz`` files keyed by image), so that
another embedder, flip augmentation or metric re-uses the detections, and an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import ConfigError, InputError
from faceledger.faces.align import ARCFACE_TEMPLATE
from faceledger.types import Faces, FloatArray

ImageKey = tuple[str, int]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Pair:
    a: ImageKey
    b: ImageKey
    same: bool
    fold: int = 0


def key_name(key: ImageKey) -> str:
    return f"{key[0]}/{key[1]}"


def image_path(root: Path, key: ImageKey) -> Path:
    name, number = key
    return root / "images" / name / f"{name}_{number:04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """Parse pairs.txt (View 2: header 'folds n') or pairsDevTrain/Test.txt (header 'n')."""
    if not path.is_file():
        raise ConfigError(f"{path}: LFW protocol file not found (is --data the LFW folder?)")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    header = [int(v) for v in lines[0]]
    per_fold = 2 * header[-1]
    pairs = []
    for i, parts in enumerate(lines[1:]):
        fold = i // per_fold
        if len(parts) == 3:
            pairs.append(Pair((parts[0], int(parts[1])), (parts[0], int(parts[2])), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair((parts[0], int(parts[1])), (parts[2], int(parts[3])), False, fold))
        else:
            raise ConfigError(f"{path}: line {i + 2} is not a pair: {' '.join(parts)}")
    return pairs


def people(root: Path) -> dict[str, int]:
    """Every LFW person with their image count, from the images folder (sorted by name)."""
    folder = root / "images"
    if not folder.is_dir():
        raise ConfigError(f"{folder}: LFW images folder not found (is --data the LFW folder?)")
    counts = {p.name: len(list(p.glob(f"{p.name}_*.jpg"))) for p in folder.iterdir()}
    return {name: n for name, n in sorted(counts.items()) if n > 0}


def all_keys(counts: dict[str, int]) -> list[ImageKey]:
    return [(name, i) for name, n in counts.items() for i in range(1, n + 1)]


def centred_fallback(width: int, height: int) -> Faces:
    """A face box and template landmarks in the middle of the image (LFW faces are centred)."""
    side = 0.44 * min(width, height)
    x0, y0 = (width - side) / 2, (height - side) / 2 + 0.02 * height
    landmarks = ARCFACE_TEMPLATE / 112.0 * side + np.array([x0, y0], dtype=np.float32)
    return Faces(np.array([[x0, y0, x0 + side, y0 + side]]), np.zeros(1), landmarks[None])


def centre_face(faces: Faces, width: int, height: int) -> Faces:
    """The face whose box centre is nearest the image centre."""
    centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    dist = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)
    return faces[int(np.argmin(dist))]


class NpzCache:
    """A dict of arrays by image key, saved to one .npz every ``every`` additions."""

    def __init__(self, path: Path | None, every: int = 500) -> None:
        self.path = path
        self.every = every
        self.rows: dict[str, np.ndarray] = {}
        self._unsaved = 0
        if path is not None and path.is_file():
            try:
                with np.load(path) as data:
                    self.rows = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{path}: unreadable benchmark cache ({exc}); delete it") from exc

    def __contains__(self, key: ImageKey) -> bool:
        return key_name(key) in self.rows

    def __getitem__(self, key: ImageKey) -> np.ndarray:
        return self.rows[key_name(key)]

    def put(self, key: ImageKey, value: np.ndarray) -> None:
        self.rows[key_name(key)] = value
        self._unsaved += 1
        if self._unsaved >= self.every:
            self.save()

    def save(self) -> None:
        if self.path is None or not self._unsaved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, **self.rows)  # type: ignore[arg-type]
        tmp.replace(self.path)
        self._unsaved = 0

    @contextlib.contextmanager
    def saving(self) -> Iterator[NpzCache]:
        """Save on the way out, also when interrupted."""
        try:
            yield self
        finally:
            self.save()


@dataclass(frozen=True)
class Detection:
    """The face chosen in one LFW image: box, 5 landmarks, and whether it is a fallback."""

    box: FloatArray
    landmarks: FloatArray
    fallback: bool

    def pack(self) -> np.ndarray:
        return np.r_[self.box, self.landmarks.ravel(), float(self.fallback)].astype(np.float32)

    @classmethod
    def unpack(cls, row: np.ndarray) -> Detection:
        return cls(row[:4], row[4:14].reshape(5, 2), bool(row[14]))

    def faces(self) -> Faces:
        return Faces(self.box[None], np.ones(1), self.landmarks[None])


def detect_one(engine: Engine, image: np.ndarray) -> Detection:
    h, w = image.shape[:2]
    faces = engine.detect(image)
    fallback = len(faces) == 0
    chosen = centred_fallback(w, h) if fallback else centre_face(faces, w, h)
    return Detection(chosen.boxes[0], chosen.landmarks[0], fallback)


@dataclass
class LfwEmbedder:
    """Embeds LFW images with one engine, caching detections and vectors under ``cache``.

    Cache files are named by detector and model id (embedder, +flip) only: after changing a
    detector setting (score threshold, input size), delete them.
    """

    engine: Engine
    root: Path
    cache: Path | None = None
    batch: int = 32

    def _cache_file(self, stage: str) -> Path | None:
        if self.cache is None:
            return None
        det = self.engine.detector_card.name
        if stage == "det":
            return self.cache / f"lfw-det-{det}.npz"
        model = self.engine.model_id.replace("+", "-")
        return self.cache / f"lfw-emb-{det}-{model}.npz"

    def run(
        self, keys: Sequence[ImageKey], progress: Progress | None = None
    ) -> tuple[dict[ImageKey, np.ndarray], list[ImageKey]]:
        """Vectors by key, and the keys whose face fell back to a centred crop."""
        detections = NpzCache(self._cache_file("det"))
        vectors = NpzCache(self._cache_file("emb"))
        todo = [k for k in dict.fromkeys(keys) if k not in vectors]
        if progress and len(todo) < len(set(keys)):
            progress(len(set(keys)) - len(todo))
        with detections.saving(), vectors.saving():
            for start in range(0, len(todo), self.batch):
                chunk = todo[start : start + self.batch]
                for key, vector in zip(chunk, self._embed(chunk, detections), strict=True):
                    vectors.put(key, vector)
                if progress:
                    progress(len(chunk))
        fallbacks = [
            k for k in keys if k in detections and Detection.unpack(detections[k]).fallback
        ]
        return {k: vectors[k] for k in keys}, fallbacks

    def _embed(self, keys: Sequence[ImageKey], detections: NpzCache) -> FloatArray:
        crops = []
        for key in keys:
            try:
                image = self.engine.read(image_path(self.root, key))
            except InputError as exc:
                raise ConfigError(f"LFW image {key_name(key)}: {exc}") from exc
            if key not in detections:
                detections.put(key, detect_one(self.engine, image).pack())
            crops.append(
                self.engine.aligner.align(image, Detection.unpack(detections[key]).faces())
            )
        vectors = self.engine.embed_crops(np.concatenate(crops)).vectors
        return np.asarray(vectors, dtype=np.float32)
