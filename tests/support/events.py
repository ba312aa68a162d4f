"""A decided face track, as video scanning hands it to the event store."""

from __future__ import annotations

import numpy as np

from faceledger.types import Candidate, Match, Threshold
from faceledger.video.scan import TrackDecision

THRESHOLD = Threshold(0.5, 1e-3, "unit test")


def crop_image(seed: int = 0, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def decision(
    subject: str | None = "ada",
    *,
    score: float = 0.8,
    track: int = 1,
    source: str = "door.mp4",
    seed: int = 0,
    crop: np.ndarray | None = None,
) -> TrackDecision:
    """Track ``track`` of ``source``, decided as ``subject`` (None: unknown) at ``score``;
    its best crop is ``crop`` or random pixels from ``seed``."""
    return TrackDecision(
        source=source,
        track_id=track,
        first_t=1.25,
        last_t=4.5,
        frames=30,
        embedded=5,
        best_t=2.0,
        best_box=(10.0, 20.0, 60.0, 80.0),
        match=Match(subject, score, THRESHOLD, (Candidate(subject or "ada", score),)),
        best_crop=crop_image(seed) if crop is None else crop,
    )
