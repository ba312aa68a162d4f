"""Speed on this machine: detection, embedding (batch 1 and batched), end to end.

Every figure is a mean wall-clock time over the same sample of images, after one warm-up
pass, in one process. Compare figures only within one run (machines are noisy): that is
why the peer, when asked for, runs in the same run on the same images.
"""

from __future__ import annotations

import functools
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceledger.bench.peer import FaceRecognitionPeer
from faceledger.engine import Engine
from faceledger.errors import InputError

BATCHES = (1, 8, 32, 64)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Speed:
    images: int
    faces: int
    ms_detect: float
    ms_embed_per_face: float
    """Batch 1, alignment included."""
    ms_embed_per_face_batched: dict[int, float]
    images_per_s: float
    """Read, detect, align and embed every face; ``workers`` images at a time."""
    peak_rss_mb: float


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    engine: Engine, paths: Sequence[Path], progress: Progress | None = None, workers: int = 1
) -> Speed:
    """Time ``engine`` on ``paths`` (unreadable files are skipped, not timed)."""
    engine.load()
    images = []
    for path in paths:
        try:
            images.append(engine.read(path))
        except InputError:
            continue
    if not images:
        raise InputError(str(paths[0]) if paths else "-", "no readable image to time")
    for image in images[:2]:  # warm-up: first-run allocations and lazy init
        engine.embed(image, engine.detect(image))

    def one(path: Path) -> None:
        try:
            image = engine.read(path)
        except InputError:
            return
        engine.embed(image, engine.detect(image))
        if progress:
            progress(1)

    def end_to_end() -> None:
        if workers <= 1:
            for path in paths:
                one(path)
            return
        # Images in parallel: onnxruntime, OpenCV and Pillow's decoder release the GIL.
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, paths))

    seconds = _timed(end_to_end)
    detections = []
    det_seconds = 0.0
    for image in images:
        start = time.perf_counter()
        detections.append(engine.detect(image))
        det_seconds += time.perf_counter() - start
    crops = np.concatenate(
        [engine.aligner.align(im, f) for im, f in zip(images, detections, strict=True)]
    )
    align_seconds = _timed(
        lambda: [engine.aligner.align(im, f) for im, f in zip(images, detections, strict=True)]
    )
    faces = len(crops)
    per_face_align = align_seconds / max(faces, 1)
    batched: dict[int, float] = {}
    for size in BATCHES:
        if faces == 0 or (size > 1 and size > faces):
            continue
        took = _timed(functools.partial(_embed_in_batches, engine, crops, size))
        batched[size] = 1000 * (took / faces + per_face_align)
    return Speed(
        images=len(images),
        faces=faces,
        ms_detect=1000 * det_seconds / len(images),
        ms_embed_per_face=batched.get(1, float("nan")),
        ms_embed_per_face_batched=batched,
        images_per_s=len(images) / seconds,
        peak_rss_mb=peak_rss_mb(),
    )


def measure_peer(
    peer: FaceRecognitionPeer, paths: Sequence[Path], progress: Progress | None = None
) -> float:
    """The peer's images per second, end to end, on the same images."""
    loaded = [peer.load_image(p) for p in paths[:2]]
    for image in loaded:
        peer.locate_and_encode(image)
    count = 0

    def end_to_end() -> None:
        nonlocal count
        for path in paths:
            try:
                image = peer.load_image(path)
            except (OSError, ValueError):
                continue
            peer.locate_and_encode(image)
            count += 1
            if progress:
                progress(1)

    seconds = _timed(end_to_end)
    return count / seconds


def _embed_in_batches(engine: Engine, crops: np.ndarray, size: int) -> None:
    for i in range(0, len(crops), size):
        engine.embedder.embed(crops[i : i + size])
