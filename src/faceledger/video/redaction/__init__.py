"""Redaction: a new copy of a video or photo with faces hidden, except consenting people.

The modules, by what they do:

- :mod:`.settings`: the figures (margins, thresholds, sampling), ``redaction_config``;
- :mod:`.detect`: every face to hide (video frames; photos more thoroughly);
- :mod:`.plan`: a video's first pass, on the scanner of ``faceledger scan``
  (:class:`~faceledger.video.scan.VideoScanner`): per frame the boxes to hide, per track
  its decision;
- :mod:`.keep`: who stays visible (``Keep``), and per frame which boxes are hidden;
- :mod:`.hide`: blur, pixelate or fill boxes;
- :mod:`.encode`: a video's second pass, writing the copy with PyAV (audio copied);
- :mod:`.video` and :mod:`.image`: ``redact_video`` and ``redact_image``;
- :mod:`.report`, :mod:`.files`, :mod:`.stream`: the report, the output files, the input's
  clock and rotation.

Errors lean towards hiding: a track stays visible only when its track-level decision names a
kept subject, and then only between per-frame samples that still match that subject (an
identity switch to a stranger part-way is hidden from the first failing sample); tracks too
small or too poor to identify, tentative tracks and detections outside any track are always
hidden; no track (nor identity) crosses a shot cut. The one exception: a box lying mostly
inside a face left visible in the same frame is taken for a second detection of that face.

The output is written to a hidden temporary file beside the final name and renamed at the
end, so the final name never holds a half-written file. A video that breaks part-way is
finished with the frames decoded so far (``RedactReport.complete`` is False).
"""

from __future__ import annotations

from faceledger.video.redaction.detect import detect_all, nms
from faceledger.video.redaction.hide import blur_regions, expand_boxes
from faceledger.video.redaction.image import redact_image
from faceledger.video.redaction.keep import Keep, check_keep
from faceledger.video.redaction.report import KeptTrack, Publish, RedactReport
from faceledger.video.redaction.settings import (
    BEST_K,
    BLUR_SIGMA,
    DET_THRESHOLD,
    DUPLICATE_INSIDE,
    EDGE_PAD,
    MARGIN,
    METHODS,
    MIN_INSIDE,
    PHOTO_TILE,
    PIXEL_BLOCKS,
    PREROLL_S,
    REDACT_MIN_FACE,
    SAMPLE_BATCH,
    SAMPLE_S,
    SAMPLE_TOP,
    TRACKER,
    VERIFY_STRICTNESS,
    X264_OPTIONS,
    ProgressFn,
    redaction_config,
)
from faceledger.video.redaction.video import redact_video

__all__ = [
    "BEST_K",
    "BLUR_SIGMA",
    "DET_THRESHOLD",
    "DUPLICATE_INSIDE",
    "EDGE_PAD",
    "MARGIN",
    "METHODS",
    "MIN_INSIDE",
    "PHOTO_TILE",
    "PIXEL_BLOCKS",
    "PREROLL_S",
    "REDACT_MIN_FACE",
    "SAMPLE_BATCH",
    "SAMPLE_S",
    "SAMPLE_TOP",
    "TRACKER",
    "VERIFY_STRICTNESS",
    "X264_OPTIONS",
    "Keep",
    "KeptTrack",
    "ProgressFn",
    "Publish",
    "RedactReport",
    "blur_regions",
    "check_keep",
    "detect_all",
    "expand_boxes",
    "nms",
    "redact_image",
    "redact_video",
    "redaction_config",
]
