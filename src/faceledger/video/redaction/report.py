"""What one redaction did: the report handed back and written to the ledger.

:class:`RedactReport` says what was written (size, frames, codec, audio), how many faces
were found and hidden, and :class:`KeptTrack` each face left visible, with the score that
kept it; ``Publish`` is the hook that records it before the copy is moved into place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.types import Match

Box = tuple[float, float, float, float]
"""x1, y1, x2, y2 in pixels of the upright picture."""


def box_tuple(box: npt.ArrayLike) -> Box:
    """A box (4 numbers) as plain floats."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    return x1, y1, x2, y2


@dataclass(frozen=True)
class KeptTrack:
    """A face left visible: its track (a face index for photos) and why."""

    track_id: int
    subject: str
    score: float
    threshold: float
    first_frame: int
    last_frame: int
    detected: int
    """Frames in which the face was detected."""
    visible: int
    """Frames in which it was left visible (fewer where per-frame checks failed)."""
    best_frame: int
    best_box: Box
    """Where the face was in its best frame (the one identification relied on most)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "track": self.track_id,
            "subject": self.subject,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "detected": self.detected,
            "visible": self.visible,
            "best_frame": self.best_frame,
            "best_box": [round(v, 1) for v in self.best_box],
        }


@dataclass(frozen=True)
class RedactReport:
    """What one redaction did."""

    source: str
    output: str
    kind: str
    """'video' or 'image'."""
    method: str
    width: int
    height: int
    frames: int
    """Frames written (1 for a photo)."""
    fps: float
    detections: int
    """Faces the detector found over all frames."""
    faces_blurred: int
    """Faces hidden, summed over frames (a track counts once per frame)."""
    tracks: int
    kept: tuple[KeptTrack, ...]
    """The faces left visible (kept subjects), one per track."""
    audio_streams: int
    codec: str
    seconds: float
    complete: bool = True
    """False when the input broke part-way and only the frames before were written."""
    notes: tuple[str, ...] = field(default=())

    @property
    def kept_tracks(self) -> int:
        return len(self.kept)

    @property
    def kept_subjects(self) -> tuple[str, ...]:
        return tuple(sorted({k.subject for k in self.kept}))

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output": self.output,
            "kind": self.kind,
            "method": self.method,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "fps": round(self.fps, 3),
            "detections": self.detections,
            "faces_blurred": self.faces_blurred,
            "tracks": self.tracks,
            "kept_tracks": self.kept_tracks,
            "kept_subjects": list(self.kept_subjects),
            "kept": [k.as_json() for k in self.kept],
            "audio_streams": self.audio_streams,
            "codec": self.codec,
            "complete": self.complete,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def kept_track(
    track_id: int,
    match: Match,
    *,
    first: int,
    last: int,
    detected: int,
    visible: int,
    best_frame: int,
    best_box: Box,
) -> KeptTrack:
    """The report line of a face left visible because of ``match``."""
    return KeptTrack(
        track_id=track_id,
        subject=str(match.subject),
        score=match.score,
        threshold=match.threshold.value,
        first_frame=first,
        last_frame=last,
        detected=detected,
        visible=visible,
        best_frame=best_frame,
        best_box=best_box,
    )


Publish = Callable[[RedactReport], None]
"""Called with the report before a finished copy is moved into place (its ledger entry)."""
