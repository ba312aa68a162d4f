"""Redaction: a new copy of a video or photo with faces hidden, except consenting people.

Video files go through two passes::

    pass 1  decode (turned upright) -> shot-cut check (every track ends at a cut)
            -> detect (every N-th frame and every cut, downscaled, at ``DET_THRESHOLD``)
            -> Tracker -> per frame, the boxes to hide: every detection, every live track
            (tentative ones too; predicted boxes through misses)
            with --keep: per track its best crops -> one decision (mean embedding), and a
            detection identified alone every ``SAMPLE_S`` seconds (a check on the decision)
    fill    between two detections of a track also the interpolated box (besides the
            prediction); before a track's first detection its first box for ``PREROLL_S``
    pass 2  decode again -> hide every box (enlarged by ``MARGIN``) except those of kept
            tracks in frames where their samples still match -> encode (libx264, else
            mpeg4) with the input's pts and time base; audio packets copied unchanged

Why two passes: whether a track may stay visible is known only once its best frames have
been seen, often long after its first frame, and the gap-filling boxes need detections on
both sides of a gap. Pass 1 keeps boxes only (tens of bytes per face per frame), at most
``BEST_K`` aligned crops per live track and a few candidates per sample, so memory stays
small for long files; the price is decoding the file twice (pass 2 is the cheap one).

Errors lean towards hiding: a track stays visible only when its track-level decision names a
kept subject, and then only between per-frame samples that still match that subject (an
identity switch to a stranger part-way is hidden from the first failing sample); tracks too
small to identify, tentative tracks and detections outside any track are always hidden; no
track (nor identity) crosses a shot cut. The one exception: a box lying mostly inside a face
left visible in the same frame is taken for a second detection of that face.

Photos are searched more thoroughly (also with mirrored borders, for faces cut by the edge,
and tile by tile when large); their faces are identified one by one.

The output is written to a hidden temporary file beside the final name and renamed at the
end, so the final name never holds a half-written file. A video that breaks part-way is
finished with the frames decoded so far (``RedactReport.complete`` is False).
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import itertools
import math
import os
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from faceledger.config import Config
from faceledger.engine import Engine
from faceledger.errors import ConfigError, InputError
from faceledger.faces.quality import sharpness
from faceledger.faces.track import Tracker, TrackerConfig, interpolate_box, iou_matrix
from faceledger.images import IMAGE_SUFFIXES, load_image
from faceledger.models.catalog import STRICTNESS_FMR, get_card, get_profile
from faceledger.types import Candidate, Embeddings, Faces, FloatArray, ImageArray, Match
from faceledger.video.source import open_container

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
"""Crops per track embedded for its keep decision (the best by score, size and sharpness)."""
SAMPLE_S = 0.2
"""With --keep, a track's detections are also identified one by one this often (seconds);
a kept track is hidden around samples that no longer match its subject."""
SAMPLE_TOP = 3
SAMPLE_BATCH = 32
VERIFY_STRICTNESS = "lenient"
"""The per-sample check uses this strictness's threshold (the track-level decision uses the
engine's): single frames score lower than a track's mean embedding."""
CUT_THUMB = (64, 36)
CUT_DIFF = 20.0
"""Mean absolute difference (0-255 grey, on a 64x36 thumbnail) between consecutive frames
above which a new shot starts: every track ends there (no identity crosses a cut)."""
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
Publish = Callable[["RedactReport"], None]
"""Called with the report before a finished copy is moved into place (its ledger entry)."""
"""progress(stage, done, total): stage is 'detecting' (pass 1) or 'writing' (pass 2); total
is 0 when unknown."""


# ---- pure helpers ------------------------------------------------------------------------------


def expand_boxes(
    boxes: npt.ArrayLike, margin: float, width: int, height: int, *, keep_empty: bool = False
) -> FloatArray:
    """Boxes (n,4) pushed out by ``margin`` x their width/height on each side, clipped to the
    image; boxes left empty by clipping are dropped (kept, as empty boxes, with
    ``keep_empty``)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    wh = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1) * margin
    out = b + wh * np.array([-1, -1, 1, 1], np.float32)
    out = np.clip(out, 0, np.array([width, height, width, height], np.float32))
    if keep_empty:
        out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
        return np.ascontiguousarray(out)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return np.ascontiguousarray(out[keep])


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1 = max(math.floor(float(box[0])), 0)
    y1 = max(math.floor(float(box[1])), 0)
    x2 = min(math.ceil(float(box[2])), width)
    y2 = min(math.ceil(float(box[3])), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _gaussian(roi: np.ndarray) -> np.ndarray:
    h, w = roi.shape[:2]
    sigma = max(BLUR_SIGMA * max(h, w), 1.0)
    # A wide blur is done on a downscaled copy (same look, a fraction of the cost).
    factor = max(sigma / 3.0, 1.0)
    if factor > 1.5:
        small_size = (max(round(w / factor), 1), max(round(h / factor), 1))
        small = cv2.resize(roi, small_size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REPLICATE)
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
    return np.asarray(cv2.GaussianBlur(roi, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE))


def _pixelate(roi: np.ndarray) -> np.ndarray:
    h, w = roi.shape[:2]
    side = max(h, w)
    nx = max(round(PIXEL_BLOCKS * w / side), 1)
    ny = max(round(PIXEL_BLOCKS * h / side), 1)
    small = cv2.resize(roi, (nx, ny), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))


def blur_regions(
    image: np.ndarray, boxes: npt.ArrayLike, method: str = "blur", *, fill: int = 0
) -> np.ndarray:
    """A copy of ``image`` (H,W) or (H,W,C) uint8 with every box (n,4 x1,y1,x2,y2, pixels,
    rounded outwards, clipped) hidden by ``method``: 'blur' (Gaussian, sigma scaled to the
    box), 'pixelate' (~``PIXEL_BLOCKS`` blocks across) or 'box' (filled with ``fill``).
    The input is never modified; boxes are used as given (see :func:`expand_boxes`)."""
    if method not in METHODS:
        raise ConfigError(
            f"unknown redaction method {method!r}; choose one of: {', '.join(METHODS)}"
        )
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        px = _pixel_box(box, w, h)
        if px is None:
            continue
        x1, y1, x2, y2 = px
        roi = out[y1:y2, x1:x2]
        if method == "box":
            roi[...] = fill
        elif method == "pixelate":
            roi[...] = _pixelate(np.ascontiguousarray(roi)).reshape(roi.shape)
        else:
            roi[...] = _gaussian(np.ascontiguousarray(roi)).reshape(roi.shape)
    return out


def nms(faces: Faces, iou: float = 0.4) -> Faces:
    """Greedy non-maximum suppression: of overlapping faces keep the higher-scoring one."""
    if len(faces) <= 1:
        return faces
    order = np.argsort(-faces.scores, kind="stable")
    overlaps = iou_matrix(faces.boxes, faces.boxes)
    kept: list[int] = []
    for i in order:
        if all(overlaps[i, j] < iou for j in kept):
            kept.append(int(i))
    return faces[np.array(sorted(kept), dtype=np.int64)]


def redaction_config(config: Config) -> Config:
    """``config`` with the detector threshold lowered to ``DET_THRESHOLD`` unless one is set
    (redaction prefers hiding a false detection to missing a face)."""
    if config.det_threshold is not None:
        return config
    card = get_card(config.detector or get_profile(config.profile).detector)
    if card.score_threshold <= DET_THRESHOLD:
        return config
    return config.model_copy(update={"det_threshold": DET_THRESHOLD})


# ---- what to keep --------------------------------------------------------------------------


@dataclass(frozen=True)
class Keep:
    """Who stays visible: named subjects, or (``enrolled``) anyone in the gallery."""

    subjects: frozenset[str] = frozenset()
    enrolled: bool = False

    @classmethod
    def of(cls, subjects: Collection[str] = (), enrolled: bool = False) -> Keep:
        if subjects and enrolled:
            raise ConfigError("give either --keep SUBJECT ... or --keep-enrolled, not both")
        return cls(frozenset(subjects), enrolled)

    def __bool__(self) -> bool:
        return self.enrolled or bool(self.subjects)

    def keeps(self, match: Match | None) -> bool:
        if match is None or match.subject is None:
            return False
        return self.enrolled or match.subject in self.subjects


def check_keep(engine: Engine, keep: Keep) -> None:
    """Fail before any work when the gallery cannot identify the people to keep."""
    if not keep:
        return
    model = engine.model_id
    _, labels = engine.gallery.vectors(model)
    have = {str(x) for x in labels}
    if keep.enrolled and not have:
        raise ConfigError(
            f"{engine.config.db}: no subject has templates made by {model}, so nobody could be "
            "kept visible (enroll with the same --profile, or re-embed the gallery)"
        )
    missing = sorted(keep.subjects - have)
    if missing:
        known = sorted(s.name for s in engine.gallery.subjects())
        unusable = [m for m in missing if m in known]
        detail = (
            f"; {', '.join(unusable)} has no templates made by {model} (enroll with the same "
            "--profile, or re-embed the gallery)"
            if unusable
            else ""
        )
        raise ConfigError(
            f"cannot keep {', '.join(missing)}: not enrolled in {engine.config.db} with "
            f"{model}{detail}"
        )


# ---- report --------------------------------------------------------------------------------


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
    best_box: tuple[float, float, float, float]
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


# ---- output files --------------------------------------------------------------------------


def _check_paths(src: Path, dst: Path, force: bool, want_image: bool) -> None:
    if not src.exists():
        raise InputError(str(src), "no such file")
    if src.is_dir():
        raise InputError(str(src), "is a folder, not a file")
    if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(dst, src)):
        raise ConfigError(f"{dst}: the output would overwrite the input; choose another -o")
    if dst.is_dir():
        raise ConfigError(f"{dst}: is a folder; give the output file's name")
    if dst.exists() and not force:
        raise ConfigError(f"{dst}: already exists; pass --force to replace it")
    if not dst.parent.is_dir():
        raise InputError(str(dst), f"cannot write: the folder {dst.parent} does not exist")
    is_image = dst.suffix.lower() in IMAGE_SUFFIXES
    if want_image and not is_image:
        raise ConfigError(
            f"{dst}: a photo's redacted copy must be an image file "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if not want_image and is_image:
        raise ConfigError(f"{dst}: a video's redacted copy must be a video file (e.g. .mp4, .mkv)")


def _temp_beside(dst: Path) -> Path:
    """Create (exclusively) a hidden file beside ``dst`` with the same extension."""
    for _ in range(100):
        tmp = dst.with_name(f".{dst.stem}.partial-{secrets.token_hex(4)}{dst.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(str(dst), f"cannot write here ({exc.strerror or exc})") from None
        os.close(fd)
        return tmp
    raise InputError(str(dst), "cannot create a temporary file beside it")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# ---- photos ---------------------------------------------------------------------------------


def _detect_scaled(engine: Engine, image: ImageArray) -> Faces:
    """Every detection (no size gate) on a copy downscaled to ``detect_max_side``."""
    h, w = image.shape[:2]
    scale = min(engine.config.detect_max_side / max(h, w), 1.0)
    if scale >= 1.0:
        return engine.detect(image, min_face=REDACT_MIN_FACE)
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    small: ImageArray = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return engine.detect(small, min_face=REDACT_MIN_FACE).scaled(1.0 / scale)


def _shifted(faces: Faces, dx: float, dy: float) -> Faces:
    shift = np.array([dx, dy], np.float32)
    return Faces(faces.boxes + np.tile(shift, 2), faces.scores, faces.landmarks + shift)


def detect_all(engine: Engine, image: ImageArray, *, photo: bool = False) -> Faces:
    """Every face the detector finds, however small (video frames: one pass on a copy
    downscaled to the engine's ``detect_max_side``).

    With ``photo`` the search is more thorough: also on a copy with mirrored borders (faces
    cut by the picture's edge) and, for a large picture, tile by tile (small faces in group
    photos); duplicates are merged and boxes mostly outside the picture (mirror images of
    faces near the edge) dropped.
    """
    found = _detect_scaled(engine, image)
    if not photo:
        return found
    h, w = image.shape[:2]
    pad = round(EDGE_PAD * max(h, w))
    padded: ImageArray = np.ascontiguousarray(
        cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT), dtype=np.uint8
    )
    parts = [found, _shifted(_detect_scaled(engine, padded), -pad, -pad)]
    if max(h, w) > PHOTO_TILE * 1.25:
        step = int(PHOTO_TILE * 0.75)
        for y0 in range(0, max(h - PHOTO_TILE, 0) + step, step):
            for x0 in range(0, max(w - PHOTO_TILE, 0) + step, step):
                y0c, x0c = min(y0, max(h - PHOTO_TILE, 0)), min(x0, max(w - PHOTO_TILE, 0))
                tile = image[y0c : y0c + PHOTO_TILE, x0c : x0c + PHOTO_TILE]
                got = engine.detect(np.ascontiguousarray(tile), min_face=REDACT_MIN_FACE)
                parts.append(_shifted(got, x0c, y0c))
    merged = Faces.concat(parts)
    if len(merged):
        inside = expand_boxes(merged.boxes, 0.0, w, h, keep_empty=True)
        area = np.prod(np.clip(merged.boxes[:, 2:] - merged.boxes[:, :2], 1e-6, None), axis=1)
        inside_area = np.prod(inside[:, 2:] - inside[:, :2], axis=1)
        merged = merged[inside_area >= MIN_INSIDE * area]
    return nms(merged).clipped(w, h)


def _kept(
    track_id: int,
    match: Match,
    *,
    first: int,
    last: int,
    detected: int,
    visible: int,
    best_frame: int,
    best_box: tuple[float, float, float, float],
) -> KeptTrack:
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


def _identifiable(engine: Engine, faces: Faces) -> np.ndarray:
    side = np.minimum(faces.widths, faces.heights)
    return np.asarray(side >= engine.config.min_face)


def redact_image(
    engine: Engine,
    src: Path,
    dst: Path,
    *,
    keep: Keep = Keep(),
    method: str = "blur",
    force: bool = False,
    publish: Publish | None = None,
) -> RedactReport:
    """Write ``dst``: the upright photo ``src`` with every face hidden except kept subjects.

    ``publish(report)`` runs once the copy is written but before it is moved into place
    (its ledger entry): if it raises, no copy is left."""
    started = time.monotonic()
    if method not in METHODS:
        raise ConfigError(
            f"unknown redaction method {method!r}; choose one of: {', '.join(METHODS)}"
        )
    _check_paths(src, dst, force, want_image=True)
    check_keep(engine, keep)
    c = engine.config
    image = load_image(
        src, c.max_pixels, c.max_bytes,
        max_decode_bytes=c.max_decode_bytes, decode_budget_total=c.decode_budget_total,
    )  # fmt: skip
    h, w = image.shape[:2]
    faces = detect_all(engine, image, photo=True)
    kept = np.zeros(len(faces), dtype=bool)
    visible: list[KeptTrack] = []
    if keep and len(faces):
        idx = np.nonzero(_identifiable(engine, faces))[0]
        if len(idx):
            matches = engine.matcher().match(engine.embed(image, faces[idx]))
            for i, match in zip(idx, matches, strict=True):
                if keep.keeps(match):
                    kept[i] = True
                    box = _box_tuple(faces.boxes[i])
                    visible.append(
                        _kept(
                            int(i),
                            match,
                            first=0,
                            last=0,
                            detected=1,
                            visible=1,
                            best_frame=0,
                            best_box=box,
                        )
                    )
    shown = [_box_tuple(b) for b in faces.boxes[kept]]
    hide = np.array(
        [
            not k and not _duplicate_of(_box_tuple(b), shown)
            for b, k in zip(faces.boxes, kept, strict=True)
        ],
        dtype=bool,
    )
    out = blur_regions(image, expand_boxes(faces.boxes[hide], MARGIN, w, h), method)
    report = RedactReport(
        source=str(src),
        output=str(dst),
        kind="image",
        method=method,
        width=w,
        height=h,
        frames=1,
        fps=0.0,
        detections=len(faces),
        faces_blurred=int(hide.sum()),
        tracks=0,
        kept=tuple(visible),
        audio_streams=0,
        codec="",
        seconds=time.monotonic() - started,
        notes=("metadata (EXIF, GPS) is not copied; pixels are stored upright",),
    )
    tmp = _temp_beside(dst)
    try:
        _write_image(out, tmp, dst)
        if publish is not None:
            publish(report)
        os.replace(tmp, dst)
    finally:
        _unlink(tmp)
    return report


def _write_image(image: ImageArray, tmp: Path, dst: Path) -> None:
    from PIL import Image

    fmt = Image.registered_extensions().get(dst.suffix.lower())
    if fmt is None:
        raise InputError(str(dst), f"cannot write {dst.suffix} images")
    options: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        Image.fromarray(image).save(tmp, format=fmt, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(str(dst), f"cannot write the image ({exc})") from None


# ---- video, pass 1: where the faces are --------------------------------------------------


_Region = tuple[int, tuple[float, float, float, float]]
"""(track id, or -1 for a detection outside any track; box x1,y1,x2,y2)."""
_Shot = tuple[float, int, ImageArray, int, tuple[float, float, float, float]]
"""(quality, tie-breaker, aligned crop, frame index, box)."""


@dataclass
class _TrackBook:
    detections: list[tuple[int, tuple[float, float, float, float]]] = field(default_factory=list)
    """(frame index, box) of every frame in which the track was detected."""
    best: list[_Shot] = field(default_factory=list)
    confirmed: bool = False
    match: Match | None = None
    best_frame: int = -1
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    samples: list[tuple[int, tuple[Candidate, ...]]] = field(default_factory=list)
    """(frame index, top candidates) of detections identified one by one, ``SAMPLE_S`` apart."""
    last_sample_t: float = -math.inf


@dataclass
class _Plan:
    """Pass 1's result: per frame the regions to hide, per track its decision."""

    times: list[float] = field(default_factory=list)
    regions: list[list[_Region]] = field(default_factory=list)
    tracks: dict[int, _TrackBook] = field(default_factory=dict)
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


def _quarter_turns(rotation: float) -> int:
    """np.rot90 ``k`` that shows a frame upright, from its display-matrix rotation
    (degrees counter-clockwise, as FFmpeg reports it)."""
    return round(float(rotation) / 90.0) % 4


def _rotate(image: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A tiny grey copy of a frame, for telling shots apart."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return np.asarray(cv2.resize(grey, CUT_THUMB, interpolation=cv2.INTER_AREA), np.float32)


def is_cut(before: np.ndarray | None, after: np.ndarray) -> bool:
    """Whether two consecutive thumbnails belong to different shots (a hard cut)."""
    return before is not None and float(np.abs(after - before).mean()) > CUT_DIFF


class _Pass1:
    def __init__(self, engine: Engine, keep: Keep, every: int) -> None:
        self.engine = engine
        self.keep = keep
        self.every = max(1, every)
        self.plan = _Plan()
        self.tracker: Tracker | None = None
        self._tie = itertools.count()
        self._thumb: np.ndarray | None = None
        self._pending: list[tuple[_TrackBook, int, ImageArray]] = []
        """Sample crops waiting to be embedded in one batch: (track, frame index, crop)."""

    def feed(self, index: int, t: float, image: ImageArray) -> None:
        plan = self.plan
        if self.tracker is None:
            h, w = image.shape[:2]
            self.tracker = Tracker(TRACKER, frame_size=(w, h))
        plan.times.append(t)
        thumb = thumbnail(image)
        cut = is_cut(self._thumb, thumb)
        self._thumb = thumb
        if cut:  # no track may carry a face (or an identity) from one shot into the next
            plan.cuts.append(index)
            for track_id in self.tracker.finish():
                self._decide(track_id)
        regions: list[_Region] = []
        if index % self.every == 0 or cut:
            faces = detect_all(self.engine, image)
            plan.detections += len(faces)
            update = self.tracker.update(faces, t)
            matched = {f.det_index for f in update.faces if f.det_index >= 0}
            regions.extend(
                (-1, _box_tuple(faces.boxes[i])) for i in range(len(faces)) if i not in matched
            )
            for tracked in update.faces:
                book = plan.tracks.setdefault(tracked.track_id, _TrackBook())
                book.confirmed = book.confirmed or tracked.confirmed
                box = _box_tuple(tracked.box)
                regions.append((tracked.track_id, box))
                if tracked.det_index >= 0:
                    book.detections.append((index, box))
                    if self.keep:
                        self._remember(book, image, faces[tracked.det_index], index, t)
        else:
            update = self.tracker.predict(t)
            for tracked in update.faces:
                plan.tracks.setdefault(tracked.track_id, _TrackBook())
                regions.append((tracked.track_id, _box_tuple(tracked.box)))
        plan.regions.append(regions)
        for track_id in update.ended:
            self._decide(track_id)
        if len(self._pending) >= SAMPLE_BATCH:
            self._embed_samples()

    def finish(self) -> _Plan:
        if self.tracker is not None:
            for track_id in self.tracker.finish():
                self._decide(track_id)
        for track_id in self.plan.tracks:
            self._decide(track_id)
        self._embed_samples()
        _fill_gaps(self.plan)
        return self.plan

    def _remember(
        self, book: _TrackBook, image: ImageArray, face: Faces, index: int, t: float
    ) -> None:
        side = float(min(face.widths[0], face.heights[0]))
        if side < self.engine.config.min_face:
            return
        crop = self.engine.aligner.align(image, face)
        s = float(sharpness(crop)[0])
        quality = float(face.scores[0]) * min(1.0, side / 112.0) * s / (s + 50.0)
        entry: _Shot = (quality, next(self._tie), crop[0], index, _box_tuple(face.boxes[0]))
        if len(book.best) < BEST_K:
            heapq.heappush(book.best, entry)
        elif quality > book.best[0][0]:
            heapq.heapreplace(book.best, entry)
        if t - book.last_sample_t >= SAMPLE_S:
            book.last_sample_t = t
            self._pending.append((book, index, crop[0]))

    def _embed_samples(self) -> None:
        if not self._pending:
            return
        crops = np.stack([crop for _, _, crop in self._pending])
        matches = self.engine.matcher().match(self.engine.embed_crops(crops), SAMPLE_TOP)
        for (book, index, _), match in zip(self._pending, matches, strict=True):
            book.samples.append((index, match.candidates))
        self._pending = []

    def _decide(self, track_id: int) -> None:
        book = self.plan.tracks.get(track_id)
        if book is None or not book.best:
            return
        if book.confirmed:
            crops = np.stack([entry[2] for entry in book.best])
            vectors = self.engine.embed_crops(crops).vectors
            mean = Embeddings(vectors.mean(axis=0, keepdims=True), self.engine.model_id)
            book.match = self.engine.matcher().match(mean)[0]
            _, _, _, book.best_frame, book.best_box = max(book.best)
        book.best = []  # decided once; the crops are not kept


def _box_tuple(box: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


def _fill_gaps(plan: _Plan) -> None:
    """Add interpolated boxes between a track's detections and a pre-roll before its first
    (never across a cut: tracks end at cuts)."""
    times = plan.times
    for track_id, book in plan.tracks.items():
        dets = book.detections
        for (ia, ba), (ib, bb) in itertools.pairwise(dets):
            for j in range(ia + 1, ib):
                box = interpolate_box(ba, times[ia], bb, times[ib], times[j])
                plan.regions[j].append((track_id, _box_tuple(box)))
        if dets:
            first, box0 = dets[0]
            shot_start = max((c for c in plan.cuts if c <= first), default=0)
            j = first - 1
            while j >= shot_start and times[first] - times[j] <= PREROLL_S:
                plan.regions[j].append((track_id, box0))
                j -= 1


def _visible_frames(plan: _Plan, keep: Keep, verify: float) -> dict[int, set[int]]:
    """Per kept track, the frames in which it stays visible.

    A track is kept when its track-level decision names a kept subject. Even then, a frame
    stays visible only when the per-detection samples on both sides of it (the nearest before
    and after, within the track) still match that subject at ``verify`` or more; so a track
    that switched to another person part-way (crossing faces) is hidden from there on.
    """
    kept = {tid: b for tid, b in plan.tracks.items() if keep.keeps(b.match) and b.samples}
    frames: dict[int, list[int]] = {tid: [] for tid in kept}
    for index, regions in enumerate(plan.regions):
        for tid, _ in regions:
            if tid in frames and (not frames[tid] or frames[tid][-1] != index):
                frames[tid].append(index)
    visible: dict[int, set[int]] = {}
    for tid, book in kept.items():
        subject = book.match.subject if book.match else None
        at = [index for index, _ in book.samples]
        ok = [
            any(c.subject == subject and c.score >= verify for c in candidates)
            for _, candidates in book.samples
        ]
        shown: set[int] = set()
        for index in frames[tid]:
            after = bisect.bisect_left(at, index)
            before = after - 1 if after == len(at) or at[after] != index else after
            sides = [i for i in (before, after) if 0 <= i < len(at)]
            if sides and all(ok[i] for i in sides):
                shown.add(index)
        if shown:
            visible[tid] = shown
    return visible


def _plan_video(
    engine: Engine, src: Path, keep: Keep, every: int, progress: ProgressFn | None
) -> _Plan:
    import av

    source = str(src)
    container = open_container(source)
    worker = _Pass1(engine, keep, every)
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        worker.plan.declared = int(stream.frames or 0)
        clock = _Clock(stream)
        declared_s, slack = _declared_duration(container, stream)
        try:
            for frame in container.decode(stream):
                if index == 0:
                    worker.plan.rotation = _quarter_turns(frame.rotation)
                t = float(clock.pts(frame) - clock.first) * float(clock.time_base)
                image = _rotate(frame.to_ndarray(format="rgb24"), worker.plan.rotation)
                if index == 0:
                    worker.plan.size = (image.shape[1], image.shape[0])
                worker.feed(index, t, image)
                index += 1
                if progress is not None:
                    progress("detecting", index, worker.plan.declared)
        except av.FFmpegError as exc:
            worker.plan.broken = f"video broken after frame {index} ({_reason(exc)})"
    finally:
        container.close()
    if index == 0:
        raise InputError(
            source,
            worker.plan.broken or "no decodable video frame (truncated, or a codec PyAV lacks)",
        )
    plan = worker.finish()
    declared = plan.declared
    span = (clock.last or 0) - clock.first + clock.step
    decoded_s = float(span * clock.time_base)
    if plan.broken is None and declared and index < declared * 0.98 - 2:
        plan.broken = f"only {index} of the {declared} frames the file lists could be decoded"
    elif plan.broken is None and declared_s and decoded_s < declared_s * (1 - slack) - 0.5:
        plan.broken = (
            f"the video stops at {decoded_s:.1f} s of the {declared_s:.1f} s the file declares"
        )
    return plan


def _declared_duration(container: Any, stream: Any) -> tuple[float, float]:
    """(seconds the video stream says it lasts, tolerated shortfall as a fraction); the
    container's duration (which may be the audio's) is trusted less."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base), 0.02
    if container.duration:
        return container.duration / 1_000_000, 0.1
    return 0.0, 0.0


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0].strip() or type(exc).__name__


class _Clock:
    """Monotonic presentation times in the stream's time base (made up when missing)."""

    def __init__(self, stream: Any) -> None:
        self.time_base: Fraction = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or 25
        self.step = max(round(1 / (float(rate) * self.time_base)), 1)
        self.last: int | None = None
        self.first = 0

    def pts(self, frame: Any) -> int:
        pts = frame.pts
        if pts is None:
            pts = 0 if self.last is None else self.last + self.step
        if self.last is not None and pts <= self.last:
            pts = self.last + 1
        if self.last is None:
            self.first = pts
        self.last = pts
        return int(pts)


# ---- video, pass 2: write -------------------------------------------------------------------


def _hidden(plan: _Plan, kept: dict[int, set[int]], index: int) -> tuple[FloatArray, int]:
    """Enlarged boxes to hide in frame ``index`` and the number of faces they stand for."""
    regions = plan.regions[index] if index < len(plan.regions) else []
    shown = [box for tid, box in regions if index in kept.get(tid, ())]
    chosen = [
        (tid, box)
        for tid, box in regions
        if index not in kept.get(tid, ()) and not _duplicate_of(box, shown)
    ]
    if not chosen:
        return np.zeros((0, 4), np.float32), 0
    faces = len({tid for tid, _ in chosen if tid >= 0}) + sum(1 for tid, _ in chosen if tid < 0)
    width, height = plan.size
    boxes = expand_boxes(np.array([b for _, b in chosen], np.float32), MARGIN, width, height)
    return boxes, faces


def _duplicate_of(box: tuple[float, ...], shown: list[tuple[float, float, float, float]]) -> bool:
    """Whether ``box`` lies mostly (``DUPLICATE_INSIDE``) inside a face left visible in the
    same frame: a second detection of that face (part of it, at another scale), not a
    stranger, whose face could not be seen through the visible one."""
    if not shown:
        return False
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return True
    for a1, b1, a2, b2 in shown:
        inter = max(min(x2, a2) - max(x1, a1), 0.0) * max(min(y2, b2) - max(y1, b1), 0.0)
        if inter >= DUPLICATE_INSIDE * area:
            return True
    return False


def _planes_yuv420(frame: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, h = frame.width, frame.height
    flat = frame.to_ndarray().reshape(-1)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w + (h // 2) * (w // 2)].reshape(h // 2, w // 2)
    v = flat[h * w + (h // 2) * (w // 2) :].reshape(h // 2, w // 2)
    return _rotate(y, k), _rotate(u, k), _rotate(v, k)


def _even_boxes(boxes: FloatArray, width: int, height: int) -> FloatArray:
    """Boxes rounded outwards to even pixels, so the chroma planes cover the same area."""
    if len(boxes) == 0:
        return boxes
    lo = np.floor(boxes[:, :2] / 2) * 2
    hi = np.ceil(boxes[:, 2:] / 2) * 2
    out = np.concatenate([lo, hi], axis=1)
    return np.clip(out, 0, np.array([width, height, width, height])).astype(np.float32)


def _redacted_frame(frame: Any, plan: _Plan, boxes: FloatArray, method: str, yuv: bool) -> Any:
    import av

    k = plan.rotation
    width, height = plan.size
    if yuv:
        y, u, v = _planes_yuv420(frame, k)
        if len(boxes):
            full_range = frame.format.name == "yuvj420p" or int(frame.color_range or 0) == 2
            even = _even_boxes(boxes, width, height)
            y = blur_regions(y, even, method, fill=0 if full_range else 16)
            u = blur_regions(u, even / 2, method, fill=128)
            v = blur_regions(v, even / 2, method, fill=128)
        data = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, width)
        out = av.VideoFrame.from_ndarray(data, format=frame.format.name)
    else:
        rgb = _rotate(frame.to_ndarray(format="rgb24"), k)
        if len(boxes):
            rgb = blur_regions(rgb, boxes, method)
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if yuv:
        for name in ("color_range", "colorspace", "color_primaries", "color_trc"):
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                setattr(out, name, getattr(frame, name))
    return out


def _video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


@dataclass
class _Written:
    frames: int = 0
    faces: int = 0
    codec: str = ""
    audio: int = 0
    broken: str | None = None
    fps: float = 0.0


class _Writer:
    """The output file: a re-encoded video stream and copies of the input's audio streams."""

    def __init__(self, tmp: Path, dst: Path, in_video: Any, in_audio: list[Any], plan: _Plan):
        import av

        self.dst = dst
        self.codec = _video_codec()
        try:
            self.out = av.open(str(tmp), mode="w")
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise InputError(str(dst), f"cannot write a video here ({_reason(exc)})") from None
        try:
            self.rate = in_video.average_rate or in_video.guessed_rate or Fraction(25)
            self.time_base: Fraction = in_video.time_base or Fraction(1, 90000)
            self.video = self._video_stream(in_video, plan.size)
            self.audio: dict[int, Any] = {}
            for stream in in_audio:
                self.audio[stream.index] = self.out.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as exc:
            self.abort()
            raise InputError(str(dst), f"cannot write this video ({_reason(exc)})") from None

    def _video_stream(self, in_video: Any, size: tuple[int, int]) -> Any:
        width, height = size
        stream: Any = self.out.add_stream(self.codec, rate=self.rate)
        stream.width, stream.height = width, height
        even = width % 2 == 0 and height % 2 == 0
        in_fmt = in_video.codec_context.pix_fmt
        if self.codec == "libx264":
            stream.options = dict(X264_OPTIONS)
            if in_fmt in ("yuv420p", "yuvj420p") and even:
                stream.pix_fmt = in_fmt  # the planes pass through: no colour conversion
            else:
                stream.pix_fmt = "yuv420p" if even else "yuv444p"
        else:
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = int(min(width * height * float(self.rate) * 0.25, 50_000_000))
            if self.time_base.denominator > 65535:  # mpeg4 allows at most 16-bit time bases
                self.time_base = Fraction(1, min(round(float(self.rate) * 1000), 65535))
        stream.codec_context.time_base = self.time_base
        stream.time_base = self.time_base
        for name in ("color_range", "colorspace", "color_primaries", "color_trc"):
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                setattr(stream.codec_context, name, getattr(in_video.codec_context, name))
        return stream

    def write_audio(self, packet: Any) -> None:
        packet.stream = self.audio[packet.stream.index]
        self.out.mux(packet)

    def write_video(self, frame: Any, pts: int, time_base: Fraction) -> None:
        frame.pts = pts if time_base == self.time_base else round(pts * time_base / self.time_base)
        frame.time_base = self.time_base
        for packet in self.video.encode(frame):
            self.out.mux(packet)

    def close(self) -> None:
        for packet in self.video.encode(None):
            self.out.mux(packet)
        self.out.close()

    def abort(self) -> None:
        import av

        with contextlib.suppress(av.FFmpegError, OSError):
            self.out.close()


def _write_video(
    plan: _Plan,
    *,
    src: Path,
    tmp: Path,
    dst: Path,
    kept: dict[int, set[int]],
    method: str,
    progress: ProgressFn | None,
) -> _Written:
    """Pass 2: decode ``src`` again and write the redacted copy to ``tmp``."""
    import av

    container = open_container(str(src))
    try:
        in_video = container.streams.video[0]
        in_video.thread_type = "AUTO"
        in_audio = list(container.streams.audio)
        writer = _Writer(tmp, dst, in_video, in_audio, plan)
        written = _Written(codec=writer.codec, audio=len(in_audio), fps=float(writer.rate))
        try:
            _encode_all(
                container, writer, written, plan, kept=kept, method=method, progress=progress
            )
            writer.close()
        except av.FFmpegError as exc:
            writer.abort()
            hint = "; an .mkv output accepts more audio codecs" if in_audio else ""
            raise InputError(str(dst), f"cannot write the video ({_reason(exc)}){hint}") from None
        except BaseException:
            writer.abort()
            raise
    finally:
        container.close()
    return written


def _encode_all(
    container: Any,
    writer: _Writer,
    written: _Written,
    plan: _Plan,
    *,
    kept: dict[int, set[int]],
    method: str,
    progress: ProgressFn | None,
) -> None:
    in_video = container.streams.video[0]
    clock = _Clock(in_video)
    total = len(plan.times)
    yuv_format: str | None = None
    for kind, item in _demuxed(container, in_video, list(container.streams.audio), written):
        if kind == "audio":
            writer.write_audio(item)
            continue
        if written.frames >= total:
            continue  # pass 1 stopped here (a broken input); audio may still follow
        if written.frames == 0:
            yuv_format = item.format.name if item.format.name in ("yuv420p", "yuvj420p") else None
        yuv = item.format.name == yuv_format and item.width % 2 == 0 and item.height % 2 == 0
        pts = clock.pts(item)
        boxes, faces = _hidden(plan, kept, written.frames)
        writer.write_video(_redacted_frame(item, plan, boxes, method, yuv), pts, clock.time_base)
        written.faces += faces
        written.frames += 1
        if progress is not None:
            progress("writing", written.frames, total)


def _demuxed(
    container: Any, video: Any, audio: list[Any], written: _Written
) -> Iterator[tuple[str, Any]]:
    """('audio', packet) and ('video', decoded frame) in file order; a read error ends the
    iteration and is recorded in ``written.broken`` (errors of writing are not caught here)."""
    import av

    frames = 0
    try:
        for packet in container.demux(video, *audio):
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    yield "audio", packet
                continue
            for frame in packet.decode():
                frames += 1
                yield "video", frame
    except av.FFmpegError as exc:
        written.broken = f"video broken after frame {frames} ({_reason(exc)})"


def _check_video_output(tmp: Path, dst: Path) -> None:
    """Fail before the long first pass when no video can be written under ``dst``'s name."""
    import av

    try:
        av.open(str(tmp), mode="w").close()
    except ValueError:
        raise ConfigError(
            f"{dst}: cannot tell the video format from the name; end it in .mp4 or .mkv"
        ) from None
    except (av.FFmpegError, OSError) as exc:
        raise InputError(str(dst), f"cannot write a video here ({_reason(exc)})") from None


def redact_video(
    engine: Engine,
    src: Path,
    dst: Path,
    *,
    keep: Keep = Keep(),
    method: str = "blur",
    every: int = 1,
    force: bool = False,
    progress: ProgressFn | None = None,
    publish: Publish | None = None,
) -> RedactReport:
    """Write ``dst``: ``src`` with every face hidden except the tracks of kept subjects.
    ``publish(report)`` runs before the finished copy is moved into place (see
    :func:`redact_image`).

    Same size (upright), frame rate and presentation times as the input; audio copied. Raises
    InputError (nothing written under ``dst``) when the input cannot be decoded at all; a
    video broken part-way is written up to the break and reported with ``complete=False``.
    """
    started = time.monotonic()
    if method not in METHODS:
        raise ConfigError(
            f"unknown redaction method {method!r}; choose one of: {', '.join(METHODS)}"
        )
    if every < 1:
        raise ConfigError(f"--every must be at least 1, got {every}")
    _check_paths(src, dst, force, want_image=False)
    check_keep(engine, keep)
    open_container(str(src)).close()  # a clear error for non-videos before any work
    tmp = _temp_beside(dst)
    try:
        _check_video_output(tmp, dst)
        plan = _plan_video(engine, src, keep, every, progress)
        verify = min(
            engine.embedder_card.threshold_for(STRICTNESS_FMR[VERIFY_STRICTNESS]),
            engine.threshold.value,
        )
        kept = _visible_frames(plan, keep, verify)
        written = _write_video(
            plan, src=src, tmp=tmp, dst=dst, kept=kept, method=method, progress=progress
        )
        broken = written.broken or plan.broken
        notes = []
        if broken:
            notes.append(f"{broken}; wrote the {written.frames} frames before it")
        if plan.rotation:
            notes.append(f"frames turned upright ({plan.rotation * 90} degrees); no rotation flag")
        visible = []
        for tid in sorted(kept):
            book = plan.tracks[tid]
            if book.match is not None and book.detections:
                first, last = book.detections[0][0], book.detections[-1][0]
                visible.append(
                    _kept(
                        tid,
                        book.match,
                        first=first,
                        last=last,
                        detected=len(book.detections),
                        visible=len(kept[tid]),
                        best_frame=book.best_frame,
                        best_box=book.best_box,
                    )
                )
        width, height = plan.size
        report = RedactReport(
            source=str(src),
            output=str(dst),
            kind="video",
            method=method,
            width=width,
            height=height,
            frames=written.frames,
            fps=written.fps,
            detections=plan.detections,
            faces_blurred=written.faces,
            tracks=len(plan.tracks),
            kept=tuple(visible),
            audio_streams=written.audio,
            codec=written.codec,
            seconds=time.monotonic() - started,
            complete=broken is None,
            notes=tuple(notes),
        )
        if publish is not None:
            publish(report)
        os.replace(tmp, dst)
    finally:
        _unlink(tmp)
    return report


__all__ = [
    "METHODS",
    "Keep",
    "RedactReport",
    "blur_regions",
    "check_keep",
    "detect_all",
    "expand_boxes",
    "nms",
    "redact_image",
    "redact_video",
]
