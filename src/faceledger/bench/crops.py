"""How to store the gallery's canonical crops: encode time, size, and what re-embedding loses.

``python -m faceledger.bench.crops [N]`` takes N LFW photos (one per person), makes the
canonical crop as enrollment does, stores it in each format, decodes it, realigns it from
the stored box and landmarks as ``gallery reembed`` does and reports the cosine of each
embedder's vector to the one from the lossless crop (mean / minimum over the photos).
"""

from __future__ import annotations

import io
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from faceledger.config import Config
from faceledger.engine import Engine
from faceledger.faces.align import canonical_crops
from faceledger.types import Faces

LFW = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "lfw" / "images"
EMBEDDERS = ("edgeface_xxs", "mobilefacenet", "dlib_resnet128")


def _pillow_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _cv2(ext: str, *params: int) -> Callable[[np.ndarray], bytes]:
    def encode(rgb: np.ndarray) -> bytes:
        return bytes(cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)[1])

    return encode


def _decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "OpenCV decodes what it encoded"
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


FORMATS = {
    "png (Pillow, before)": _pillow_png,
    "webp lossless": _cv2(".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp q90": _cv2(".webp", cv2.IMWRITE_WEBP_QUALITY, 90),
    "webp q95": _cv2(".webp", cv2.IMWRITE_WEBP_QUALITY, 95),
    "jpeg q90": _cv2(".jpg", cv2.IMWRITE_JPEG_QUALITY, 90),
    "jpeg q92 (stored now)": _cv2(".jpg", cv2.IMWRITE_JPEG_QUALITY, 92),
    "jpeg q95": _cv2(".jpg", cv2.IMWRITE_JPEG_QUALITY, 95),
}


def table(n: int = 200, root: Path = LFW) -> Iterator[str]:
    """The table's lines (the model mirror is taken from FACELEDGER_MODEL_MIRROR)."""
    people = sorted(p for p in root.iterdir() if p.is_dir())
    random.Random(7).shuffle(people)
    detector = Engine(Config(profile="fast", db=":memory:"))
    crops: list[tuple[np.ndarray, Faces]] = []
    for person in people:
        found = detector.analyze(sorted(person.glob("*.jpg"))[0], detector.config.min_enroll_face)
        if len(found.faces):
            canon, geometry = canonical_crops(found.image, found.faces.largest())
            crops.append((canon[0], geometry))
        if len(crops) == n:
            break
    engines = [Engine(Config(profile="fast", embedder=e, db=":memory:")) for e in EMBEDDERS]
    ref = [[e.embed(c, g).vectors[0] for c, g in crops] for e in engines]
    yield f"{len(crops)} crops; cosine to the lossless crop: mean / min"
    names = "  ".join(f"{e:>15}" for e in EMBEDDERS)
    yield f"{'format':22} {'ms':>6} {'KB':>6} {'KB max':>6}  {names}"
    for name, encode in FORMATS.items():
        ms: list[float] = []
        sizes: list[float] = []
        cos: list[list[float]] = [[] for _ in engines]
        for i, (crop, geometry) in enumerate(crops):
            start = time.perf_counter()
            data = encode(crop)
            ms.append(1e3 * (time.perf_counter() - start))
            sizes.append(len(data) / 1024)
            back = _decode(data)
            for k, engine in enumerate(engines):
                cos[k].append(float(engine.embed(back, geometry).vectors[0] @ ref[k][i]))
        cells = "  ".join(f"{np.mean(c):.4f}/{np.min(c):.4f}" for c in cos)
        yield f"{name:22} {np.median(ms):6.2f} {np.mean(sizes):6.1f} {max(sizes):6.1f}  {cells}"


if __name__ == "__main__":
    for line in table(int(sys.argv[1]) if len(sys.argv) > 1 else 200):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
