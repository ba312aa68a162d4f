"""Synthetic face videos with exact ground truth, for tracker and video-pipeline tests.

Faces are LFW stills (the central 120x120 of a 250x250 photo, where the face sits) pasted
on a seeded noisy background and moved along scripted paths: linear motion, scaling,
entering and leaving through the frame's edge, crossing, and occlusion (a face not drawn
for a while). The geometry is pure arithmetic, so the ground truth (and "perfect
detections" made from it) costs microseconds and needs no data; only :func:`render` and
:func:`write_video` read LFW photos.

    from support.synth import SCENES, ground_truth, detections, write_video
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from faceledger.types import Faces

LFW_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "lfw" / "images"
"""Where the LFW photos are expected (``../shared`` beside the project)."""

PATCH = 120
"""Side of the square cut from the middle of a 250x250 LFW photo (scale 1.0 on screen)."""
FACE_FRACTION = 110 / 120
"""The face box's side as a fraction of the pasted patch's side (same centre)."""
MIN_VISIBLE = 0.4
"""A face counts as visible when at least this fraction of its box lies inside the frame."""

_LANDMARK_TEMPLATE = np.array(
    [[0.32, 0.40], [0.68, 0.40], [0.50, 0.58], [0.36, 0.76], [0.64, 0.76]], dtype=np.float32
)
"""Rough five-point positions inside a face box (fractions of its width and height)."""


@dataclass(frozen=True)
class Actor:
    """One person's path: keyframes (t, cx, cy, scale), linear in between.

    The face exists only from the first key's time to the last's; ``hidden`` holds
    [start, end) intervals when it is occluded (not drawn, still in the truth as hidden).
    """

    name: str
    keys: tuple[tuple[float, float, float, float], ...]
    hidden: tuple[tuple[float, float], ...] = ()

    def state(self, t: float) -> tuple[float, float, float] | None:
        """(cx, cy, scale) at ``t``, or ``None`` outside the path's time span."""
        times = np.array([k[0] for k in self.keys])
        if t < times[0] or t > times[-1]:
            return None
        values = np.array([k[1:] for k in self.keys])
        cx, cy, scale = (float(np.interp(t, times, values[:, i])) for i in range(3))
        return cx, cy, scale

    def is_hidden(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.hidden)


@dataclass(frozen=True)
class Scene:
    """A scripted clip: actors drawn in order (later ones on top)."""

    name: str
    actors: tuple[Actor, ...]
    duration_s: float = 3.0
    fps: float = 15.0
    width: int = 640
    height: int = 360
    seed: int = 0

    @property
    def times(self) -> np.ndarray:
        """Presentation time of each frame, seconds."""
        return np.arange(round(self.duration_s * self.fps)) / self.fps

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actors)


@dataclass(frozen=True, eq=False)
class TruthFace:
    """Where one person's face is in one frame."""

    name: str
    box: np.ndarray
    """(4,) x1,y1,x2,y2 of the face, clipped to the frame."""
    full_box: np.ndarray
    """(4,) the same box unclipped (it may reach outside the frame)."""
    visible: bool
    """Drawn (not occluded) and at least ``MIN_VISIBLE`` of it inside the frame."""
    covered: float
    """Fraction of the box covered by faces drawn on top of it (0 when none)."""


def _placement(cx: float, cy: float, scale: float) -> tuple[int, int, int]:
    """Integer top-left corner and side of the pasted patch."""
    side = max(round(PATCH * scale), 8)
    return round(cx - side / 2), round(cy - side / 2), side


def _face_box(x0: int, y0: int, side: int) -> np.ndarray:
    margin = side * (1 - FACE_FRACTION) / 2
    return np.array([x0 + margin, y0 + margin, x0 + side - margin, y0 + side - margin], np.float32)


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])


def frame_truth(scene: Scene, t: float, *, hidden: bool = False) -> tuple[TruthFace, ...]:
    """The faces at time ``t``: visible ones, and with ``hidden=True`` also occluded or
    mostly-outside ones (flagged ``visible=False``)."""
    frame = np.array([0, 0, scene.width, scene.height], np.float32)
    placed: list[tuple[Actor, np.ndarray, np.ndarray]] = []  # actor, face box, patch box
    for actor in scene.actors:
        state = actor.state(t)
        if state is None:
            continue
        x0, y0, side = _placement(*state)
        patch = np.array([x0, y0, x0 + side, y0 + side], np.float32)
        placed.append((actor, _face_box(x0, y0, side), patch))
    out = []
    for i, (actor, box, _) in enumerate(placed):
        area = _area(box)
        inside = _area(_intersection(box, frame)) / area
        if inside <= 0:
            continue
        drawn = not actor.is_hidden(t)
        covered = 0.0
        for other, _, patch in placed[i + 1 :]:
            if not other.is_hidden(t):
                covered = max(covered, _area(_intersection(box, patch)) / area)
        visible = drawn and inside >= MIN_VISIBLE
        if visible or hidden:
            clipped = _intersection(box, frame).astype(np.float32)
            out.append(TruthFace(actor.name, clipped, box, visible, min(covered, 1.0)))
    return tuple(out)


def ground_truth(scene: Scene, *, hidden: bool = False) -> tuple[tuple[TruthFace, ...], ...]:
    """Per frame, the faces in it (see :func:`frame_truth`)."""
    return tuple(frame_truth(scene, float(t), hidden=hidden) for t in scene.times)


def detections(
    truth: Sequence[TruthFace],
    rng: np.random.Generator | None = None,
    *,
    jitter: float = 0.0,
    miss: float = 0.0,
    low: float = 0.0,
    low_score: float = 0.3,
    max_covered: float = 1.0,
) -> tuple[Faces, tuple[str, ...]]:
    """A fake detector's output for one frame of truth, and the name behind each face.

    Only visible faces are detected. ``jitter``: standard deviation of each box edge, as a
    fraction of the box size; ``miss``: chance a face is not detected; ``low``: chance it
    comes with ``low_score`` instead of ~0.9; faces covered by others more than
    ``max_covered`` are missed (as a real detector would).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    boxes, scores, names = [], [], []
    for face in truth:
        if not face.visible or face.covered > max_covered:
            continue
        draws = rng.random(2)
        noise = rng.normal(size=4)
        if draws[0] < miss:
            continue
        size = float(np.sqrt(_area(face.box)))
        boxes.append(face.box + jitter * size * noise)
        scores.append(low_score if draws[1] < low else 0.9)
        names.append(face.name)
    if not boxes:
        return Faces.empty(), ()
    box_arr = np.asarray(boxes, np.float32)
    wh = box_arr[:, 2:] - box_arr[:, :2]
    landmarks = box_arr[:, None, :2] + _LANDMARK_TEMPLATE[None] * wh[:, None, :]
    return Faces(box_arr, np.asarray(scores, np.float32), landmarks), tuple(names)


@lru_cache(maxsize=32)
def _face_patch(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: cannot read this LFW photo")
    h, w = image.shape[:2]
    y0, x0 = (h - PATCH) // 2, (w - PATCH) // 2
    return np.ascontiguousarray(image[y0 : y0 + PATCH, x0 : x0 + PATCH, ::-1])  # BGR -> RGB


def photo_path(name: str, images: Path = LFW_IMAGES) -> Path:
    return images / name / f"{name}_0001.jpg"


def background(scene: Scene) -> np.ndarray:
    """A seeded, static background: a soft grey gradient with noise, (H, W, 3) uint8."""
    rng = np.random.default_rng(scene.seed)
    ramp = np.linspace(70, 150, scene.width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (scene.height, scene.width, 3))
    noise = rng.normal(0, 10, size=(scene.height, scene.width, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def render(scene: Scene, images: Path = LFW_IMAGES) -> Iterator[np.ndarray]:
    """The clip's frames, RGB uint8 (H, W, 3), one per ``scene.times``."""
    back = background(scene)
    patches = {a.name: _face_patch(str(photo_path(a.name, images))) for a in scene.actors}
    for t in scene.times:
        frame = back.copy()
        for actor in scene.actors:
            state = actor.state(float(t))
            if state is None or actor.is_hidden(float(t)):
                continue
            x0, y0, side = _placement(*state)
            fx0, fy0 = max(x0, 0), max(y0, 0)
            fx1, fy1 = min(x0 + side, scene.width), min(y0 + side, scene.height)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            patch = cv2.resize(patches[actor.name], (side, side), interpolation=cv2.INTER_LINEAR)
            frame[fy0:fy1, fx0:fx1] = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        yield frame


def write_video(
    scene: Scene, path: Path, images: Path = LFW_IMAGES, codec: str = "libx264"
) -> tuple[tuple[TruthFace, ...], ...]:
    """Write the clip to ``path`` (.mp4, yuv420p) with PyAV; returns its ground truth."""
    import av  # the project's video library; imported here so geometry needs no PyAV

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=round(scene.fps))
        if not isinstance(stream, av.VideoStream):
            raise TypeError(f"{codec} is not a video codec")
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        for frame in render(scene, images):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return ground_truth(scene)


def _linear(
    name: str,
    span: tuple[float, float],
    start: tuple[float, float, float],
    end: tuple[float, float, float],
    hidden: tuple[tuple[float, float], ...] = (),
) -> Actor:
    return Actor(name, ((span[0], *start), (span[1], *end)), hidden)


SCENES: dict[str, Scene] = {
    # Two faces moving in straight lines at different speeds and sizes.
    "moving": Scene(
        "moving",
        (
            _linear("Aaron_Eckhart", (0.0, 3.0), (110, 120, 1.0), (530, 140, 1.0)),
            _linear("Angelina_Jolie", (0.0, 3.0), (500, 270, 0.7), (380, 230, 0.7)),
        ),
    ),
    # One face grows from 0.6x to 1.6x while drifting, another shrinks.
    "scaling": Scene(
        "scaling",
        (
            _linear("George_W_Bush", (0.0, 3.0), (180, 180, 0.6), (240, 180, 1.6)),
            _linear("Serena_Williams", (0.0, 3.0), (500, 160, 1.4), (470, 200, 0.6)),
        ),
    ),
    # One face walks in from the left and out on the right; another comes down from the
    # top edge later and leaves through the bottom.
    "enter_leave": Scene(
        "enter_leave",
        (
            _linear("Tony_Blair", (0.0, 3.0), (-70, 150, 1.0), (710, 190, 1.0)),
            _linear("Colin_Powell", (0.8, 3.0), (420, -60, 0.8), (450, 420, 0.8)),
        ),
    ),
    # Two faces cross, briefly overlapping (the second is drawn on top).
    "crossing": Scene(
        "crossing",
        (
            _linear("AJ_Cook", (0.0, 3.0), (90, 160, 0.9), (550, 180, 0.9)),
            _linear("Gloria_Macapagal_Arroyo", (0.0, 3.0), (550, 210, 0.9), (90, 190, 0.9)),
        ),
    ),
    # A moving face is occluded for 0.5 s; a still face stays in view.
    "occlusion": Scene(
        "occlusion",
        (
            _linear("Aaron_Eckhart", (0.0, 3.0), (100, 170, 0.9), (540, 200, 0.9), ((1.2, 1.7),)),
            _linear("Serena_Williams", (0.0, 3.0), (320, 80, 0.6), (330, 85, 0.6)),
        ),
    ),
}
"""The scripted scenarios, by name (3 s at 15 fps, 640x360)."""


__all__ = [
    "LFW_IMAGES",
    "SCENES",
    "Actor",
    "Scene",
    "TruthFace",
    "background",
    "detections",
    "frame_truth",
    "ground_truth",
    "photo_path",
    "render",
    "write_video",
]
