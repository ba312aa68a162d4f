"""Redaction's first pass: where the faces are in every frame, and what each track is.

The file is decoded once (turned upright, timed by :class:`~.stream.Clock`) and every frame
goes through the scanner of ``faceledger scan``, :class:`~faceledger.video.scan.VideoScanner`:
its shot cuts (every track ends at one), its detection schedule (every N-th frame and every
cut), its tracker and its track decisions (the best crops by quality, none below the
quality floor, one mean embedding per track). Redaction adds by composition what only it
needs:

- its own detection (the scanner's ``detect``): every face however small, at redaction's
  lower threshold; only faces of the engine's ``min_face`` or more are identified, and
  nobody at all when nobody is to be kept (no crops, no decisions, no search);
- its tracker settings (``TRACKER``, on the frame's size: a track that left the picture
  ends);
- per frame, the box of every live track, tentative ones and predictions through misses
  included (the scanner's ``last_update``), and of every detection outside a track;
- with --keep, a detection of each track identified alone every ``SAMPLE_S`` seconds (a
  check on the track's decision, see :func:`~.keep.visible_frames`).

Then the gaps are filled: between two detections of a track also the interpolated box,
before its first detection its first box for ``PREROLL_S`` (never across a cut). Only boxes
are kept per frame (tens of bytes per face), so memory stays small for long files.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InputError
from faceledger.faces.track import Tracker, TrackUpdate, interpolate_box
from faceledger.types import Candidate, Faces, ImageArray, Match
from faceledger.video.redaction.detect import detect_all
from faceledger.video.redaction.keep import Keep
from faceledger.video.redaction.report import Box, box_tuple
from faceledger.video.redaction.settings import (
    BEST_K,
    PREROLL_S,
    SAMPLE_BATCH,
    SAMPLE_S,
    SAMPLE_TOP,
    TRACKER,
    ProgressFn,
)
from faceledger.video.redaction.stream import (
    Clock,
    declared_duration,
    quarter_turns,
    reason,
    rotate,
)
from faceledger.video.scan import PendingDecision, VideoScanner
from faceledger.video.source import Frame, open_container

Region = tuple[int, Box]
"""(track id, or -1 for a detection outside any track; box x1,y1,x2,y2)."""
UNIDENTIFIED = sys.maxsize
"""The scanner's ``min_face`` when nobody is kept: no face is large enough to identify."""


@dataclass
class TrackBook:
    """What the first pass learnt about one track."""

    detections: list[tuple[int, Box]] = field(default_factory=list)
    """(frame index, box) of every frame in which the track was detected."""
    match: Match | None = None
    """The scanner's decision (None: not decided, e.g. tentative or nobody to keep)."""
    best_frame: int = -1
    best_box: Box = (0.0, 0.0, 0.0, 0.0)
    samples: list[tuple[int, tuple[Candidate, ...]]] = field(default_factory=list)
    """(frame index, top candidates) of detections identified one by one, ``SAMPLE_S`` apart."""
    last_sample_t: float = -math.inf


@dataclass
class Plan:
    """Pass 1's result: per frame the regions to hide, per track its decision."""

    times: list[float] = field(default_factory=list)
    regions: list[list[Region]] = field(default_factory=list)
    tracks: dict[int, TrackBook] = field(default_factory=dict)
    cuts: list[int] = field(default_factory=list)
    """Frames that start a new shot (every track was ended just before them)."""
    detections: int = 0
    rotation: int = 0
    """Quarter turns (np.rot90 k) that make the decoded frames upright."""
    size: tuple[int, int] = (0, 0)
    """Upright (width, height)."""
    broken: str | None = None
    """Why decoding stopped early (None when the file decoded to its end)."""
    declared: int = 0


class FirstPass:
    """Feed frames in order (indices from 0), then :meth:`finish` for the plan."""

    def __init__(self, engine: Engine, source: str, keep: Keep, every: int) -> None:
        self.engine = engine
        self.source = source
        self.keep = keep
        self.every = max(1, every)
        self.plan = Plan()
        self.scanner: VideoScanner | None = None
        self._found: Faces | None = None
        """The detections of the frame being stepped (None when it was not searched)."""
        self._samples: list[tuple[TrackBook, int, ImageArray]] = []
        """Sample crops waiting to be embedded in one batch: (track, frame index, crop)."""

    def feed(self, frame: Frame) -> None:
        scanner = self.scanner or self._start(frame.image)
        plan = self.plan
        cuts = scanner.stats.cuts
        self._found = None
        pending = scanner.step(frame)
        if scanner.stats.cuts > cuts:
            plan.cuts.append(frame.index)
        plan.times.append(frame.t)
        assert scanner.last_update is not None  # set by every step
        plan.regions.append(self._regions(frame, scanner.last_update))
        self._decide(scanner, pending)
        if len(self._samples) >= SAMPLE_BATCH:
            self._embed_samples()

    def finish(self) -> Plan:
        if self.scanner is not None:
            self._decide(self.scanner, self.scanner.finish_pending())
        self._embed_samples()
        fill_gaps(self.plan)
        return self.plan

    def _start(self, image: ImageArray) -> VideoScanner:
        height, width = image.shape[:2]
        scanner = VideoScanner(
            self.engine,
            self.source,
            every=self.every,
            best_k=BEST_K,
            tracker=TRACKER,
            min_face=self.engine.config.min_face if self.keep else UNIDENTIFIED,
            detect=self._detect,
        )
        # the scanner's tracker, told the frame's size: a track that left the picture ends
        scanner.tracker = Tracker(scanner.tracker.config, frame_size=(width, height))
        self.scanner = scanner
        return scanner

    def _detect(self, image: ImageArray) -> Faces:
        self._found = detect_all(self.engine, image)
        return self._found

    def _regions(self, frame: Frame, update: TrackUpdate) -> list[Region]:
        """Every box to hide in this frame (before gap filling), and each track's detection."""
        faces, plan = self._found, self.plan
        regions: list[Region] = []
        if faces is not None:
            plan.detections += len(faces)
            matched = {f.det_index for f in update.faces if f.det_index >= 0}
            regions += [(-1, box_tuple(b)) for i, b in enumerate(faces.boxes) if i not in matched]
        for tracked in update.faces:
            book = plan.tracks.setdefault(tracked.track_id, TrackBook())
            box = box_tuple(tracked.box)
            regions.append((tracked.track_id, box))
            if faces is not None and tracked.det_index >= 0:
                book.detections.append((frame.index, box))
                if self.keep:
                    self._sample(book, frame, faces[tracked.det_index])
        return regions

    def _sample(self, book: TrackBook, frame: Frame, face: Faces) -> None:
        side = float(min(face.widths[0], face.heights[0]))
        if side < self.engine.config.min_face or frame.t - book.last_sample_t < SAMPLE_S:
            return
        book.last_sample_t = frame.t
        crop = self.engine.aligner.align(frame.image, face)[0]
        self._samples.append((book, frame.index, crop))

    def _embed_samples(self) -> None:
        if not self._samples:
            return
        crops = np.stack([crop for _, _, crop in self._samples])
        matches = self.engine.matcher().match(self.engine.embed_crops(crops), SAMPLE_TOP)
        for (book, index, _), match in zip(self._samples, matches, strict=True):
            book.samples.append((index, match.candidates))
        self._samples = []

    def _decide(self, scanner: VideoScanner, pending: list[PendingDecision]) -> None:
        for ready in pending:
            decision = scanner.conclude(ready)
            book = self.plan.tracks.setdefault(ready.track_id, TrackBook())
            book.match = decision.match
            # frame times strictly increase (Clock), so a time names one frame
            book.best_frame = bisect.bisect_left(self.plan.times, decision.best_t)
            book.best_box = decision.best_box


def fill_gaps(plan: Plan) -> None:
    """Add interpolated boxes between a track's detections and a pre-roll before its first
    (never across a cut: tracks end at cuts)."""
    times = plan.times
    for track_id, book in plan.tracks.items():
        dets = book.detections
        for (ia, ba), (ib, bb) in itertools.pairwise(dets):
            for j in range(ia + 1, ib):
                box = interpolate_box(ba, times[ia], bb, times[ib], times[j])
                plan.regions[j].append((track_id, box_tuple(box)))
        if dets:
            first, box0 = dets[0]
            shot_start = max((c for c in plan.cuts if c <= first), default=0)
            j = first - 1
            while j >= shot_start and times[first] - times[j] <= PREROLL_S:
                plan.regions[j].append((track_id, box0))
                j -= 1


def plan_video(
    engine: Engine, src: Path, keep: Keep, every: int, progress: ProgressFn | None
) -> Plan:
    """Pass 1 over the file ``src``. Raises InputError when not one frame decodes; a file
    that breaks part-way (or stops short of what it declares) is planned up to the break,
    with ``Plan.broken`` saying why."""
    import av

    source = str(src)
    container = open_container(source)
    worker = FirstPass(engine, source, keep, every)
    plan = worker.plan
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        plan.declared = int(stream.frames or 0)
        clock = Clock(stream)
        declared_s, slack = declared_duration(container, stream)
        try:
            for frame in container.decode(stream):
                if index == 0:
                    plan.rotation = quarter_turns(frame.rotation)
                t = clock.seconds(clock.pts(frame))
                image = rotate(frame.to_ndarray(format="rgb24"), plan.rotation)
                if index == 0:
                    plan.size = (image.shape[1], image.shape[0])
                worker.feed(Frame(index, t, image))
                index += 1
                if progress is not None:
                    progress("detecting", index, plan.declared)
        except av.FFmpegError as exc:
            plan.broken = f"video broken after frame {index} ({reason(exc)})"
    finally:
        container.close()
    if index == 0:
        raise InputError(
            source, plan.broken or "no decodable video frame (truncated, or a codec PyAV lacks)"
        )
    worker.finish()
    declared = plan.declared
    decoded_s = clock.seconds((clock.last or 0) + clock.step)
    if plan.broken is None and declared and index < declared * 0.98 - 2:
        plan.broken = f"only {index} of the {declared} frames the file lists could be decoded"
    elif plan.broken is None and declared_s and decoded_s < declared_s * (1 - slack) - 0.5:
        plan.broken = (
            f"the video stops at {decoded_s:.1f} s of the {declared_s:.1f} s the file declares"
        )
    return plan
