"""Video -> tracks -> one decision per track.

frames -> Detector (every N-th frame, on a downscaled copy) -> Tracker -> per track, the
best few aligned crops by face quality (faceledger.faces.quality) -> Embedder (only those
at or above the quality floor) -> mean embedding -> Matcher -> one ``TrackDecision``. A
track whose best frames are all below the floor is decided ``insufficient_quality``: it is
not matched, and names no one.

A track is decided when it ends (files), or, with ``decide_after``, as soon as it has
been followed that long (live streams, so that an event does not wait for the person to
leave); it is decided once either way.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from faceledger.engine import Engine
from faceledger.faces.quality import Quality, sharpness
from faceledger.faces.track import Tracker, TrackerConfig, TrackUpdate
from faceledger.gallery.matcher import Matcher
from faceledger.types import Embeddings, Faces, ImageArray, Match
from faceledger.video.source import Frame


@dataclass(frozen=True)
class TrackDecision:
    """What one tracked person was decided to be."""

    source: str
    track_id: int
    first_t: float
    last_t: float
    frames: int
    """Frames in which the face was detected."""
    embedded: int
    """Frames whose crops were embedded for the decision."""
    best_t: float
    best_box: tuple[float, float, float, float]
    match: Match
    best_crop: ImageArray | None = field(default=None, repr=False, compare=False)
    """The best aligned crop, in memory only: the event store keeps it for known subjects,
    and for unknown faces only when asked to (``--keep-unknown``), with an expiry."""

    def as_json(self) -> dict[str, Any]:
        m = self.match
        return {
            "source": self.source,
            "track": self.track_id,
            "first_t": round(self.first_t, 3),
            "last_t": round(self.last_t, 3),
            "frames": self.frames,
            "embedded": self.embedded,
            "best_t": round(self.best_t, 3),
            "best_box": [round(v, 1) for v in self.best_box],
            "decision": m.decision,
            "reason": m.reason,
            "subject": m.subject,
            "score": round(m.score, 4),
            "threshold": round(m.threshold.value, 4),
            "threshold_fmr": m.threshold.fmr,
            "candidates": [
                {"subject": c.subject, "score": round(c.score, 4)} for c in m.candidates
            ],
        }


_Shot = tuple[float, float, int, float, tuple[float, float, float, float], ImageArray, Quality]
"""(quality score, size and sharpness among equals, tie-breaker, t, box, aligned crop,
quality) of one frame of a track."""


@dataclass
class _Book:
    """What is kept for one live track: times, counts and its best crops."""

    first_t: float
    last_t: float
    hits: int = 0
    confirmed: bool = False
    decided: bool = False
    best: list[_Shot] = field(default_factory=list)
    """Min-heap of (quality, tie-breaker, t, box, crop), at most ``best_k`` long."""


@dataclass(frozen=True)
class PendingDecision:
    """A track ready to be decided, before its crops are embedded: a camera node embeds
    the crops of many cameras' tracks in one batch, then :meth:`VideoScanner.conclude`s
    each with its rows."""

    track_id: int
    first_t: float
    last_t: float
    frames: int
    best: _Shot
    crops: np.ndarray | None
    """The usable (at or above the quality floor) crops to embed, None when there are none."""


@dataclass
class ScanStats:
    frames: int = 0
    detected_frames: int = 0
    faces: int = 0
    embedded: int = 0
    tracks: int = 0
    cuts: int = 0


class VideoScanner:
    """Feed frames in order; get decisions for tracks as they are decided."""

    def __init__(
        self,
        engine: Engine,
        source: str,
        *,
        every: int = 1,
        best_k: int = 5,
        top: int = 1,
        decide_after: float | None = None,
        tracker: TrackerConfig | None = None,
        cut_threshold: float | None = 20.0,
        matcher: Callable[[], Matcher] | None = None,
        min_face: int | None = None,
        detect: Callable[[ImageArray], Faces] | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.every = max(1, every)
        self.best_k = best_k
        self.top = top
        self.decide_after = decide_after
        self.tracker = Tracker(tracker or TrackerConfig())
        self.books: dict[int, _Book] = {}
        self.cut_threshold = cut_threshold
        """Mean grey-level change (0-255) of a 32x18 thumbnail that marks a shot cut."""
        self.stats = ScanStats()
        self.matcher_of = matcher or engine.matcher
        """Where decisions are matched: the whole gallery, or a camera's watch lists."""
        self.min_face = min_face or engine.config.min_face
        self.detect = detect
        """How a frame is searched when ``step`` is given no faces (default: ``detect_scaled``
        at ``min_face``): redaction finds every face, however small, yet identifies only
        those of ``min_face`` or more."""
        self.last_update: TrackUpdate | None = None
        """The tracker's update for the last frame stepped: every live track's box (read by
        redaction, which hides them all)."""
        self._tie = itertools.count()
        self._thumb: np.ndarray | None = None

    def feed(self, frame: Frame) -> list[TrackDecision]:
        return [self.conclude(pending) for pending in self.step(frame)]

    def step(self, frame: Frame, faces: Faces | None = None) -> list[PendingDecision]:
        """Follow one frame: detect on it (or take ``faces``, detected on it elsewhere, as a
        node's shared scheduler does), track, and return the tracks ready to decide."""
        self.stats.frames += 1
        pending: list[PendingDecision | None] = []
        cut = self._is_cut(frame.image)
        if cut:  # a new shot: nobody carries over from the last one
            pending += self.finish_pending()
            self.stats.cuts += 1
        if faces is not None or frame.index % self.every == 0 or cut:
            if faces is None:
                faces = (
                    detect_scaled(self.engine, frame.image, self.min_face)
                    if self.detect is None
                    else self.detect(frame.image)
                )
            self.stats.detected_frames += 1
            self.stats.faces += len(faces)
            update = self.tracker.update(faces, frame.t)
            self._record(frame, faces, update)
        else:
            update = self.tracker.predict(frame.t)
        self.last_update = update
        pending += [self._pending(tid) for tid in update.ended if tid in self.books]
        if self.decide_after is not None:
            pending += [
                self._pending(tid)
                for tid, book in self.books.items()
                if book.confirmed
                and not book.decided
                and book.best
                and book.last_t - book.first_t >= self.decide_after
            ]
        for tid in update.ended:
            self.books.pop(tid, None)
        return [p for p in pending if p is not None]

    def finish(self) -> list[TrackDecision]:
        """End every track (end of the video) and decide those not yet decided."""
        return [self.conclude(pending) for pending in self.finish_pending()]

    def finish_pending(self) -> list[PendingDecision]:
        """End every track; those not yet decided, ready to decide."""
        ended = self.tracker.finish()
        pending = [self._pending(tid) for tid in ended if tid in self.books]
        pending += [self._pending(tid) for tid in list(self.books) if tid not in ended]
        self.books.clear()
        return [p for p in pending if p is not None]

    def run(self, frames: Iterable[Frame]) -> Iterator[TrackDecision]:
        for frame in frames:
            yield from self.feed(frame)
        yield from self.finish()

    # ---- internals ------------------------------------------------------------------------

    def _is_cut(self, image: ImageArray) -> bool:
        if self.cut_threshold is None:
            return False
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._thumb = self._thumb, thumb
        return previous is not None and float(np.abs(thumb - previous).mean()) > self.cut_threshold

    def _record(self, frame: Frame, faces: Faces, update: TrackUpdate) -> None:
        min_face = self.min_face
        for tracked in update.faces:
            book = self.books.get(tracked.track_id)
            if book is None:
                book = self.books[tracked.track_id] = _Book(frame.t, frame.t)
                self.stats.tracks += 1
            book.confirmed = book.confirmed or tracked.confirmed
            if tracked.det_index < 0:
                continue
            book.last_t = frame.t
            book.hits += 1
            face = faces[tracked.det_index]
            side = float(min(face.widths[0], face.heights[0]))
            if side < min_face or book.decided:
                continue
            crop = self.engine.aligner.align(frame.image, face)
            quality = self.engine.assess(frame.image, face)[0]
            # Many frames of a good track score 1: among those, the larger and sharper win.
            among = float(face.scores[0]) * min(1.0, side / 112.0) * _sharp(crop)
            x1, y1, x2, y2 = (float(v) for v in face.boxes[0])
            entry: _Shot = (
                quality.score, among, next(self._tie), frame.t, (x1, y1, x2, y2), crop[0],
                quality,
            )  # fmt: skip
            if len(book.best) < self.best_k:
                heapq.heappush(book.best, entry)
            elif entry[:2] > book.best[0][:2]:
                heapq.heapreplace(book.best, entry)

    def _pending(self, track_id: int) -> PendingDecision | None:
        book = self.books.get(track_id)
        if book is None or book.decided or not book.confirmed or not book.best:
            return None
        book.decided = True
        usable = [entry for entry in book.best if entry[6].sufficient]
        crops = np.stack([entry[5] for entry in usable]) if usable else None
        return PendingDecision(
            track_id, book.first_t, book.last_t, book.hits, max(book.best), crops
        )

    def conclude(
        self, pending: PendingDecision, vectors: np.ndarray | None = None
    ) -> TrackDecision:
        """The decision for a pending track; ``vectors``: its crops' embeddings when they
        were embedded elsewhere (in a batch with other tracks'), else they are embedded now."""
        _, _, _, best_t, best_box, best_crop, best_quality = pending.best
        matcher = self.matcher_of()
        embedded = 0
        if pending.crops is not None:
            if vectors is None:
                vectors = self.engine.embed_crops(pending.crops).vectors
            embedded = len(pending.crops)
            self.stats.embedded += embedded
            mean = Embeddings(vectors.mean(axis=0, keepdims=True), self.engine.model_id)
            match = replace(matcher.match(mean, self.top)[0], quality=best_quality)
        else:  # every kept frame is below the floor: too poor to decide, nobody is named
            match = Match(None, -1.0, matcher.threshold, (), best_quality)
        return TrackDecision(
            source=self.source,
            track_id=pending.track_id,
            first_t=pending.first_t,
            last_t=pending.last_t,
            frames=pending.frames,
            embedded=embedded,
            best_t=best_t,
            best_box=best_box,
            match=match,
            best_crop=best_crop,
        )


def _sharp(crop: np.ndarray) -> float:
    """Sharpness mapped to (0, 1]: saturates for crisp faces, punishes motion blur."""
    s = float(sharpness(crop)[0])
    return s / (s + 50.0)


def detect_scaled(
    engine: Engine, image: ImageArray, min_face: int | None = None, max_side: int | None = None
) -> Faces:
    """Detect on a copy downscaled to ``max_side`` (default: the config's
    ``detect_max_side``) and map boxes back; faces under ``min_face`` px are ignored."""
    min_face = min_face or engine.config.min_face
    h, w = image.shape[:2]
    scale = (max_side or engine.config.detect_max_side) / max(h, w)
    if scale >= 1.0:
        return engine.detect(image, min_face=min_face)
    size = (round(w * scale), round(h * scale))
    small: ImageArray = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    faces = engine.detect(small, min_face=max(1, round(min_face * scale)))
    return Faces(faces.boxes / scale, faces.scores, faces.landmarks / scale)


def detect_batch(
    engine: Engine,
    images: Sequence[ImageArray],
    min_faces: Sequence[int | None],
    max_side: int | None = None,
) -> list[Faces]:
    """Detection for a batch of frames (from many cameras), one ``Faces`` per frame.

    The batch interface of a node's shared scheduler: today each frame runs through the
    detector in turn (the ONNX detectors here take one image per call); a GPU runtime
    can run the batch as one tensor behind the same call."""
    return [
        detect_scaled(engine, image, min_face, max_side)
        for image, min_face in zip(images, min_faces, strict=True)
    ]
