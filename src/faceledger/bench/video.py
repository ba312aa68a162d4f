"""Video speed and results: our tracked scan, per-frame embedding, and the peer's demo.

- ``scan``: detect (every N-th frame) -> track -> embed the best few frames per track ->
  one decision per track (what ``faceledger scan`` does).
- ``per_frame``: detect and embed every face in every frame and match each one (what a
  pipeline without tracking does); the ratio of the two is what tracking buys.
- the peer: face_recognition's own video example (``facerec_from_video_file.py``):
  ``face_locations`` (HOG) and ``face_encodings`` for every face of every frame, then
  ``compare_faces`` against the known encodings with the example's tolerance of 0.50.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.bench.peer import load_face_recognition
from faceledger.engine import Engine
from faceledger.video.scan import VideoScanner, detect_scaled
from faceledger.video.source import file_frames, probe

Progress = Callable[[int], None]
PEER_TOLERANCE = 0.50


@dataclass(frozen=True)
class VideoRun:
    name: str
    frames: int
    seconds: float
    video_seconds: float
    result: list[dict[str, Any]]
    """Tracks (ours) or per-subject frame spans (per-frame and peer)."""
    faces_embedded: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def realtime(self) -> float:
        """Processing speed as a multiple of real time (1.0 = as fast as it plays)."""
        return self.video_seconds / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frames": self.frames,
            "seconds": round(self.seconds, 2),
            "fps": round(self.fps, 2),
            "realtime": round(self.realtime, 2),
            "faces_embedded": self.faces_embedded,
            "result": self.result,
        }


def scan(engine: Engine, video: Path, every: int = 1, progress: Progress | None = None) -> VideoRun:
    info = probe(str(video))
    scanner = VideoScanner(engine, str(video), every=every)
    start = time.perf_counter()
    decisions = []
    for frame in file_frames(video):
        decisions += scanner.feed(frame)
        if progress:
            progress(1)
    decisions += scanner.finish()
    seconds = time.perf_counter() - start
    tracks = [d.as_json() for d in sorted(decisions, key=lambda d: d.first_t)]
    return VideoRun(
        f"faceledger scan --every {every}",
        scanner.stats.frames,
        seconds,
        info.duration,
        tracks,
        scanner.stats.embedded,
    )


def _spans(hits: Mapping[str, list[float]], gap: float = 0.5) -> list[dict[str, Any]]:
    """Per subject: time spans where it was named, merging hits closer than ``gap``."""
    out = []
    for subject, times in sorted(hits.items()):
        spans: list[list[float]] = []
        for t in sorted(times):
            if spans and t - spans[-1][1] <= gap:
                spans[-1][1] = t
            else:
                spans.append([t, t])
        out.append(
            {
                "subject": subject,
                "frames": len(times),
                "spans": [[round(a, 2), round(b, 2)] for a, b in spans],
            }
        )
    return out


def per_frame(engine: Engine, video: Path, progress: Progress | None = None) -> VideoRun:
    info = probe(str(video))
    matcher = engine.matcher()
    hits: dict[str, list[float]] = {}
    frames = faces = 0
    start = time.perf_counter()
    for frame in file_frames(video):
        found = detect_scaled(engine, frame.image)
        for match in matcher.match(engine.embed(frame.image, found)):
            if match.subject is not None:
                hits.setdefault(match.subject, []).append(frame.t)
        frames += 1
        faces += len(found)
        if progress:
            progress(1)
    seconds = time.perf_counter() - start
    return VideoRun("faceledger per-frame", frames, seconds, info.duration, _spans(hits), faces)


def peer(video: Path, known: Mapping[str, Path], progress: Progress | None = None) -> VideoRun:
    """face_recognition's video example on the same clip (every frame, full size)."""
    fr = load_face_recognition()
    info = probe(str(video))
    names = list(known)
    encodings = [fr.face_encodings(fr.load_image_file(str(known[n])))[0] for n in names]
    hits: dict[str, list[float]] = {}
    frames = faces = 0
    start = time.perf_counter()
    for frame in file_frames(video):
        rgb = np.ascontiguousarray(frame.image)
        for encoding in fr.face_encodings(rgb, fr.face_locations(rgb)):
            match = fr.compare_faces(encodings, encoding, tolerance=PEER_TOLERANCE)
            if any(match):
                hits.setdefault(names[match.index(True)], []).append(frame.t)
            faces += 1
        frames += 1
        if progress:
            progress(1)
    seconds = time.perf_counter() - start
    return VideoRun(
        "face_recognition video example", frames, seconds, info.duration, _spans(hits), faces
    )


def upscale_clip(src: Path, dst: Path, height: int = 720) -> Path:
    """A copy of ``src`` resized to ``height`` lines (for the 720p speed target)."""
    import av
    import cv2

    info = probe(str(src))
    width = round(info.width * height / info.height / 2) * 2
    with av.open(str(dst), mode="w") as out:
        stream = out.add_stream("libx264", rate=Fraction(info.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        for frame in file_frames(src):
            big = np.asarray(
                cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_CUBIC), np.uint8
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst
