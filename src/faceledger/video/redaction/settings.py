"""Redaction's settings: how faces are found, followed, checked and hidden.

Redaction leans towards hiding: it detects at a lower score threshold than identification
(``redaction_config``), hides every detection however small, and enlarges every box before
hiding it. The constants here are the figures the other modules of
:mod:`faceledger.video.redaction` share.
"""

from __future__ import annotations

from collections.abc import Callable

from faceledger.config import Config
from faceledger.errors import ConfigError
from faceledger.faces.track import TrackerConfig
from faceledger.models.catalog import get_card, get_profile

METHODS = ("blur", "pixelate", "box")
"""How a face region is hidden: Gaussian blur, coarse pixels, or a solid black box."""
MARGIN = 0.25
"""Each side of a face box is pushed out by this fraction of its width / height (hair, ears,
chin) before it is hidden."""
BLUR_SIGMA = 0.1
"""Gaussian sigma as a fraction of the enlarged box's longer side (a kernel of ~60% of it)."""
PIXEL_BLOCKS = 8
"""Blocks across the enlarged box's longer side for ``pixelate``."""
PREROLL_S = 0.2
"""A track's first box is also blurred this long before its first detection (faces are often
visible a few frames before the detector fires, e.g. when entering the picture)."""
BEST_K = 5
"""Crops per track kept for its keep decision (the scanner's best by quality, then by score,
size and sharpness)."""
SAMPLE_S = 0.2
"""With --keep, a track's detections are also identified one by one this often (seconds);
a kept track is hidden around samples that no longer match its subject."""
SAMPLE_TOP = 3
SAMPLE_BATCH = 32
VERIFY_STRICTNESS = "lenient"
"""The per-sample check uses this strictness's threshold (the track-level decision uses the
engine's): single frames score lower than a track's mean embedding."""
REDACT_MIN_FACE = 1
"""Every detection is hidden, however small (the engine's min_face only gates identification)."""
PHOTO_TILE = 1280
"""Photos larger than this (longest side, x1.25) are also searched tile by tile."""
EDGE_PAD = 0.15
"""Photos are also searched with mirrored borders this wide (a fraction of the longest side):
the detector then finds faces cut by the picture's edge."""
MIN_INSIDE = 0.3
"""A photo detection must lie this much inside the picture (else it is a mirror image)."""
DET_THRESHOLD = 0.5
"""Redaction's detector score threshold (when none is configured), if lower than the model
card's: background faces (small, blurred, dark) often score 0.5-0.75 with YuNet, and a
hidden hand costs less than a visible face."""
X264_OPTIONS = {"crf": "18", "preset": "veryfast"}
DUPLICATE_INSIDE = 0.7
"""A box to hide that lies this much inside a face left visible (a kept subject) in the same
frame is taken for a second detection of that face and not hidden."""
TRACKER = TrackerConfig(new_track_score=DET_THRESHOLD)
"""Any detection at the redaction threshold may start a track (then its box is also
predicted through misses)."""

ProgressFn = Callable[[str, int, int], None]
"""progress(stage, done, total): stage is 'detecting' (pass 1) or 'writing' (pass 2); total
is 0 when unknown."""


def redaction_config(config: Config) -> Config:
    """``config`` with the detector threshold lowered to ``DET_THRESHOLD`` unless one is set
    (redaction prefers hiding a false detection to missing a face)."""
    if config.det_threshold is not None:
        return config
    card = get_card(config.detector or get_profile(config.profile).detector)
    if card.score_threshold <= DET_THRESHOLD:
        return config
    return config.model_copy(update={"det_threshold": DET_THRESHOLD})


def check_method(method: str) -> None:
    """Refuse a hiding method that is not one of ``METHODS``."""
    if method not in METHODS:
        raise ConfigError(
            f"unknown redaction method {method!r}; choose one of: {', '.join(METHODS)}"
        )
