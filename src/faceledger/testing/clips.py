"""Synthetic camera clips with exact ground truth, for streaming tests and benchmarks.

::

    from faceledger.testing.clips import lfw_people, write_camera_clip, loop_ts

    people = lfw_people(Path("../shared/datasets/lfw/images"), 3, seed=1)
    truth = write_camera_clip(
        Path("cam.mp4"), [(p.name, p.photos[0]) for p in people], seconds=10.0
    )
    truth.appearances[0]   # Appearance(label=..., t_in=..., t_out=..., box_at_middle=(...))
    loop_ts(truth.path, Path("cam.ts"))   # the same H.264, remuxed to MPEG-TS

A clip is a static, seeded background (a smooth gradient with mild noise) on which LFW
faces (the middle of each 250x250 photo, where the face is) drift slowly, one or two at a
time. Each person is on screen during their own window, fully inside the frame, and the
windows are separated by a gap with nobody on screen, so a tracker ends one track before
the next person appears. The clip is H.264 (libx264, yuv420p, no B-frames, a keyframe every
second) in MP4, encoded fast enough that a 10 s 720p clip takes seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceledger.errors import InputError

__all__ = [
    "Appearance",
    "ClipTruth",
    "Person",
    "lfw_people",
    "loop_ts",
    "write_camera_clip",
]

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1 and y1 exclusive."""

CROP_FRACTION = 150 / 250
"""The side of the square cut from the middle of an LFW photo, as a fraction of its side:
the central 150x150 of a 250x250 photo holds the face with a little hair and background."""

MIN_VISIBLE_S = 2.5
"""The shortest time a person stays on screen."""

GAP_S = 1.25
"""Nobody is on screen for at least this long between two windows (and, split in half, at
the clip's start and end, so a looped clip keeps the gap across the seam): longer than
the default tracker's ``max_miss_s`` (1 s) and a detection period, so that a tracker ends
one track before the next person appears."""

SPEED_PX_S = (20.0, 40.0)
"""The range of a face's drift speed, in pixels per second."""

_FEATHER = 0.08
"""The width of a pasted face's soft edge, as a fraction of its side."""


@dataclass(frozen=True)
class Person:
    """One LFW identity and its photos (sorted by file name)."""

    name: str
    photos: tuple[Path, ...]


@dataclass(frozen=True)
class Appearance:
    """One person's window on screen: from ``t_in`` (the first frame showing them) to
    ``t_out`` (just after the last one), in seconds, and where the pasted patch (the
    middle of the LFW photo, ``face_side`` square) was at the window's middle frame. A
    detector's face box lies inside it: about 0.65 of its width and 0.85 of its height."""

    label: str
    t_in: float
    t_out: float
    box_at_middle: Box

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "t_in": self.t_in,
            "t_out": self.t_out,
            "box_at_middle": list(self.box_at_middle),
        }


@dataclass(frozen=True)
class ClipTruth:
    """What a clip written by :func:`write_camera_clip` shows, and where it is."""

    path: Path
    size: tuple[int, int]
    """(width, height) in pixels."""
    fps: int
    frames: int
    appearances: tuple[Appearance, ...]

    @property
    def seconds(self) -> float:
        """The clip's duration."""
        return self.frames / self.fps

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": list(self.size),
            "fps": self.fps,
            "frames": self.frames,
            "seconds": self.seconds,
            "appearances": [a.as_json() for a in self.appearances],
        }


# -- choosing people ------------------------------------------------------------------------


def lfw_people(lfw_images: Path, n: int, *, min_photos: int = 2, seed: int = 0) -> list[Person]:
    """``n`` distinct LFW people with at least ``min_photos`` photos each, chosen by ``seed``
    (the same folder and seed always give the same people, in the same order).

    ``lfw_images`` holds one folder per person (``<Name>/<Name>_0001.jpg``)."""
    if not lfw_images.is_dir():
        raise InputError(str(lfw_images), "not a folder of LFW people (<Name>/<Name>_0001.jpg)")
    eligible: list[Person] = []
    for folder in sorted(p for p in lfw_images.iterdir() if p.is_dir()):
        photos = tuple(sorted(folder.glob("*.jpg")))
        if len(photos) >= min_photos:
            eligible.append(Person(folder.name, photos))
    if len(eligible) < n:
        raise InputError(
            str(lfw_images),
            f"only {len(eligible)} people have {min_photos} or more photos; {n} were asked for",
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(eligible), size=n, replace=False)
    return [eligible[int(i)] for i in chosen]


# -- the scene ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    """A face's straight-line drift during frames [first, last)."""

    label: str
    patch: np.ndarray  # (side, side, 3) RGB, uint8
    alpha: np.ndarray  # (side, side, 1) float32 in [0, 1]
    first: int
    last: int
    x0: float
    y0: float
    vx: float  # pixels per frame
    vy: float

    def top_left(self, frame: int) -> tuple[int, int]:
        k = frame - self.first
        return round(self.x0 + self.vx * k), round(self.y0 + self.vy * k)

    def box(self, frame: int) -> Box:
        x, y = self.top_left(frame)
        side = self.patch.shape[0]
        return (x, y, x + side, y + side)


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth two-colour diagonal gradient with mild noise (blurred, so it compresses)."""
    a, b = rng.uniform(40, 200, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    image = a[None, None, :] * (1 - ramp[..., None]) + b[None, None, :] * ramp[..., None]
    grain = rng.normal(0.0, 6.0, size=(height, width)).astype(np.float32)
    noise = cv2.GaussianBlur(grain, (0, 0), 1.2)[..., None]
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _face_patch(photo: Path, side: int) -> np.ndarray:
    """The middle of an LFW photo (where the face is), RGB, scaled to ``side`` x ``side``."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(str(photo), "cannot be read as an image")
    h, w = image.shape[:2]
    crop = round(min(h, w) * CROP_FRACTION)
    y, x = (h - crop) // 2, (w - crop) // 2
    patch = image[y : y + crop, x : x + crop]
    patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(patch[..., ::-1])


def _feather(side: int) -> np.ndarray:
    """An alpha mask that is 1 inside and fades to 0 at the border (no hard paste edge)."""
    edge = max(1.0, side * _FEATHER)
    ramp = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5) / edge
    ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
    return (ramp[:, None] * ramp[None, :])[..., None]


def _min_frames(fps: int) -> tuple[int, int]:
    """(frames on screen, frames of gap): the least each window needs."""
    return math.ceil(MIN_VISIBLE_S * fps), math.ceil(GAP_S * fps)


def _groups(count: int, frames: int, fps: int) -> int:
    """How many people share a window (1 or 2) so every window lasts long enough."""
    visible, gap = _min_frames(fps)
    for per_window in (1, 2):
        if frames // math.ceil(count / per_window) >= visible + gap:
            return per_window
    raise ValueError(
        f"{frames / fps:g} s is too short for {count} people two at a time: each window "
        f"needs {(visible + gap) / fps:g} s ({MIN_VISIBLE_S:g} s on screen, {GAP_S:g} s gap)"
    )


def _windows(count: int, frames: int, fps: int, per_window: int) -> list[tuple[int, int]]:
    """[first, last) frame ranges, one per window. Each window's gap is split before and
    after it, so two windows (and the clip's end and its start, when it loops) are apart
    by a whole gap: at least ``GAP_S``, a fifth of the window when there is room."""
    windows = math.ceil(count / per_window)
    visible, least_gap = _min_frames(fps)
    length = frames // windows
    gap = max(least_gap, min(round(0.2 * length), length - visible))
    head = gap // 2
    spans = []
    for w in range(windows):
        start = round(w * frames / windows)
        end = round((w + 1) * frames / windows)
        spans.append((start + head, end - (gap - head)))
    return spans


def _drift(
    rng: np.random.Generator,
    lane: tuple[int, int],
    *,
    height: int,
    side: int,
    frames: int,
    fps: int,
) -> tuple[float, float, float, float]:
    """(x0, y0, vx, vy): a slow straight drift that stays inside the lane [x_lo, x_hi) and
    the frame's height for ``frames`` frames."""
    speed = rng.uniform(*SPEED_PX_S) / fps
    angle = rng.uniform(0, 2 * math.pi)
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    dx, dy = vx * frames, vy * frames
    x_lo, x_hi = lane
    room_x = (x_hi - x_lo - side) - abs(dx)
    room_y = (height - side) - abs(dy)
    if room_x < 0 or room_y < 0:
        raise ValueError(f"a {side} px face drifting {abs(dx):.0f} px does not fit the frame")
    x0 = x_lo + rng.uniform(0, room_x) + max(0.0, -dx)
    y0 = rng.uniform(0, room_y) + max(0.0, -dy)
    return x0, y0, vx, vy


def _plan(
    faces: Sequence[tuple[str, Path]],
    size: tuple[int, int],
    *,
    fps: int,
    frames: int,
    face_side: int,
    rng: np.random.Generator,
) -> list[_Path]:
    """Who is on screen when and where: each person's window and drift."""
    width, height = size
    per_window = _groups(len(faces), frames, fps)
    spans = _windows(len(faces), frames, fps, per_window)
    alpha = _feather(face_side)
    paths = []
    for i, (label, photo) in enumerate(faces):
        first, last = spans[i // per_window]
        shares = per_window if (i // per_window + 1) * per_window <= len(faces) else 1
        slot = i % per_window
        lane = (slot * width // shares, (slot + 1) * width // shares)
        x0, y0, vx, vy = _drift(
            rng, lane, height=height, side=face_side, frames=last - first - 1, fps=fps
        )
        patch = _face_patch(photo, face_side)
        paths.append(_Path(label, patch, alpha, first, last, x0, y0, vx, vy))
    return paths


def _paste(canvas: np.ndarray, path: _Path, frame: int) -> None:
    x, y = path.top_left(frame)
    side = path.patch.shape[0]
    region = canvas[y : y + side, x : x + side].astype(np.float32)
    blended = region * (1 - path.alpha) + path.patch.astype(np.float32) * path.alpha
    canvas[y : y + side, x : x + side] = blended.astype(np.uint8)


def _render(background: np.ndarray, paths: Sequence[_Path], frames: int) -> Iterator[np.ndarray]:
    """Every frame of the clip, RGB."""
    for frame in range(frames):
        visible = [p for p in paths if p.first <= frame < p.last]
        if not visible:
            yield background
            continue
        canvas = background.copy()
        for path in visible:
            _paste(canvas, path, frame)
        yield canvas


# -- writing --------------------------------------------------------------------------------


def _x264_options(fps: int) -> dict[str, str]:
    """Fast, streaming-friendly H.264: a keyframe every second exactly, no B-frames, one
    slice per frame (``zerolatency`` would slice frames across threads, and FFmpeg's RTSP
    client splits a multi-slice keyframe into two frames with the same timestamp)."""
    return {
        "preset": "veryfast",
        "tune": "zerolatency",
        "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0:sliced-threads=0",
    }


def write_camera_clip(
    path: Path,
    faces: Sequence[tuple[str, Path]],
    *,
    size: tuple[int, int] = (1280, 720),
    fps: int = 25,
    seconds: float = 10.0,
    seed: int = 0,
    face_side: int = 150,
) -> ClipTruth:
    """Write an H.264 MP4 of a fixed camera watching ``faces`` ((label, LFW photo) pairs)
    pass by one or two at a time, and return what it shows.

    People appear in the given order, each for at least 2.5 s, with a gap of at least
    0.5 s with nobody on screen between windows. Raises ``ValueError`` when the clip is too
    short for that, ``InputError`` when a photo cannot be read. ``face_side`` is the side
    of the square patch pasted for each person (the face in it is about 0.85 of that tall).
    """
    import av

    if not faces:
        raise ValueError("a camera clip needs at least one face")
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs an even frame size, not {width}x{height}")
    frames = round(seconds * fps)
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    paths = _plan(faces, size, fps=fps, frames=frames, face_side=face_side, rng=rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options=_x264_options(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = fps
        stream.codec_context.max_b_frames = 0
        time_base = Fraction(1, fps)
        for index, image in enumerate(_render(background, paths, frames)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    appearances = tuple(
        Appearance(p.label, p.first / fps, p.last / fps, p.box((p.first + p.last - 1) // 2))
        for p in paths
    )
    return ClipTruth(path, (width, height), fps, frames, appearances)


def loop_ts(src_mp4: Path, dst_ts: Path) -> Path:
    """Remux (no re-encoding) the H.264 video of ``src_mp4`` into an MPEG-TS file."""
    import av

    dst_ts.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src_mp4)) as inp, av.open(str(dst_ts), "w", format="mpegts") as out:
        source = inp.streams.video[0]
        target = out.add_stream_from_template(source)
        for packet in inp.demux(source):
            if packet.dts is None:
                continue
            packet.stream = target
            out.mux(packet)
    return dst_ts
