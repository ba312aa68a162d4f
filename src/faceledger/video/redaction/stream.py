"""The input video as both passes read it: presentation times, the turn that makes frames
upright, the duration the file declares, and short reasons from PyAV errors.

Both passes number and time frames with the same :class:`Clock`, so the first pass's frame
times (what the scanner and tracker follow) and the second pass's output timestamps agree.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np


class Clock:
    """Monotonic presentation times in the stream's time base (made up when missing)."""

    def __init__(self, stream: Any) -> None:
        self.time_base: Fraction = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or 25
        self.step = max(round(1 / (float(rate) * self.time_base)), 1)
        self.last: int | None = None
        self.first = 0

    def pts(self, frame: Any) -> int:
        """The frame's pts, or one frame after the last when it has none, and always after
        the last (so that times strictly increase)."""
        pts = frame.pts
        if pts is None:
            pts = 0 if self.last is None else self.last + self.step
        if self.last is not None and pts <= self.last:
            pts = self.last + 1
        if self.last is None:
            self.first = pts
        self.last = pts
        return int(pts)

    def seconds(self, pts: int) -> float:
        """Seconds from the first frame to one at ``pts``."""
        return float(pts - self.first) * float(self.time_base)


def quarter_turns(rotation: float) -> int:
    """np.rot90 ``k`` that shows a frame upright, from its display-matrix rotation
    (degrees counter-clockwise, as FFmpeg reports it)."""
    return round(float(rotation) / 90.0) % 4


def rotate(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` turned ``k`` quarter turns counter-clockwise (itself when ``k`` is 0)."""
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def declared_duration(container: Any, stream: Any) -> tuple[float, float]:
    """(seconds the video stream says it lasts, tolerated shortfall as a fraction); the
    container's duration (which may be the audio's) is trusted less."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base), 0.02
    if container.duration:
        return container.duration / 1_000_000, 0.1
    return 0.0, 0.0


def reason(exc: BaseException) -> str:
    """A short human reason from a PyAV / OS error."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0].strip() or type(exc).__name__
