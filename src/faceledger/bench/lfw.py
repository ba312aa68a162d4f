"""LFW protocol files and embedding of LFW images (the centred face, or a centred crop)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceledger.engine import Engine
from faceledger.faces.align import ARCFACE_TEMPLATE
from faceledger.types import Faces

ImageKey = tuple[str, int]


@dataclass(frozen=True)
class Pair:
    a: ImageKey
    b: ImageKey
    same: bool
    fold: int = 0


def image_path(root: Path, key: ImageKey) -> Path:
    name, number = key
    return root / "images" / name / f"{name}_{number:04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """Parse pairs.txt (View 2: header 'folds n') or pairsDevTrain/Test.txt (header 'n')."""
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
            raise ValueError(f"{path}: line {i + 2} is not a pair: {' '.join(parts)}")
    return pairs


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


def embed_images(
    engine: Engine,
    root: Path,
    keys: Sequence[ImageKey],
    cache: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[ImageKey, np.ndarray], int]:
    """Embeddings of LFW images by key, and how many fell back to a centred crop.

    With ``cache``, vectors are stored in an .npz named after the profile and reused.
    """
    stored: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            stored = {k: data[k] for k in data.files}
    out: dict[ImageKey, np.ndarray] = {}
    fallbacks = int(stored.get("__fallbacks__", np.zeros(1))[0]) if stored else 0
    todo = [k for k in keys if f"{k[0]}/{k[1]}" not in stored]
    for key in todo:
        image = engine.read(image_path(root, key))
        h, w = image.shape[:2]
        faces = engine.detect(image)
        if len(faces) == 0:
            faces = centred_fallback(w, h)
            fallbacks += 1
        else:
            faces = centre_face(faces, w, h)
        stored[f"{key[0]}/{key[1]}"] = engine.embed(image, faces).vectors[0]
        if progress:
            progress(1)
    for key in keys:
        out[key] = stored[f"{key[0]}/{key[1]}"]
    if cache is not None and todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        stored["__fallbacks__"] = np.array([fallbacks])
        np.savez(cache, **stored)  # type: ignore[arg-type]
    return out, fallbacks
