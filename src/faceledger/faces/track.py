"""Multi-object face tracking for video: one id per face across frames (ByteTrack-style).

::

    detections at t ──► predict every track to t (constant-velocity Kalman filter)
                    ├─► stage 1: high-score detections  ↔ all live tracks
                    │            (IoU, or a centre-distance gate relative to box size)
                    ├─► stage 2: low-score detections   ↔ tracks still unmatched (IoU only)
                    ├─► unmatched high-score detections start tentative tracks
                    └─► unmatched tracks are predicted; ended after ``max_miss_s``
                        (tentative ones after ``tentative_max_misses`` missed updates)

Each track keeps a Kalman filter on (centre x, centre y, width, height) and their
velocities, in pixels and pixels per second, so frames may come at irregular times and
detection may run only on every N-th frame (:meth:`Tracker.predict` in between). Low-score
detections never start a track but keep an existing one alive through blur or partial
occlusion (the ByteTrack idea). Nothing here touches pixels.

The tracker is a stateful stage (unlike the one-method stages of the pipeline): it is fed
:class:`~faceledger.types.Faces` frame by frame and returns new frozen
:class:`TrackUpdate` values; it never mutates what it is given.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import ConfigError, InputError
from faceledger.types import Faces, FloatArray

_FORBIDDEN = 1e6
"""Cost standing for 'may not be matched' inside the assignment solver."""


@dataclass(frozen=True)
class TrackerConfig:
    """How detections are linked into tracks. Times in seconds, sizes relative to the box."""

    high_score: float = 0.5
    """Detections at or above this score are matched first and may start tracks."""
    low_score: float = 0.1
    """Detections below ``high_score`` and at or above this only extend existing tracks."""
    new_track_score: float = 0.6
    """Lowest score of an unmatched detection that starts a (tentative) track."""
    match_iou: float = 0.3
    """Stage 1: a predicted box and a detection may be matched at this IoU or more ..."""
    centre_gate: float = 1.0
    """... or when their centres are closer than this many box sizes (fast motion)."""
    centre_gate_growth: float = 1.0
    """The centre gate widens by this many box sizes per second a track goes unmatched."""
    size_gate: float = 1.6
    """Largest ratio between the predicted and detected box sizes for the centre gate."""
    low_match_iou: float = 0.4
    """Stage 2 (low-score detections): the IoU needed to match."""
    duplicate_iou: float = 0.7
    """An unmatched detection overlapping a matched one this much starts no track."""
    min_hits: int = 2
    """Matched detections (the first included) that confirm a tentative track."""
    max_miss_s: float = 1.0
    """A confirmed track unmatched for longer than this is ended."""
    tentative_max_misses: int = 0
    """Missed detection updates a tentative track survives (0: it ends at its first miss)."""
    measurement_std: float = 0.05
    """Detector noise, as a fraction of the box height (Kalman measurement noise)."""
    motion_accel: float = 2.0
    """Random acceleration of a face's centre, in box heights per second squared."""
    scale_accel: float = 1.0
    """Random acceleration of a face's width and height, in box heights per second squared."""
    initial_velocity_std: float = 2.0
    """Prior uncertainty of a new track's velocity, in box heights per second."""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.low_score <= self.high_score:
            problems.append(
                f"need 0 <= low_score <= high_score, got {self.low_score}, {self.high_score}"
            )
        for name in ("match_iou", "low_match_iou", "duplicate_iou"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                problems.append(f"{name} must be in (0, 1], got {value}")
        if self.size_gate < 1.0:
            problems.append(f"size_gate must be >= 1, got {self.size_gate}")
        if self.min_hits < 1:
            problems.append(f"min_hits must be >= 1, got {self.min_hits}")
        if self.tentative_max_misses < 0:
            problems.append(f"tentative_max_misses must be >= 0, got {self.tentative_max_misses}")
        for name in (
            "centre_gate",
            "centre_gate_growth",
            "max_miss_s",
            "measurement_std",
            "motion_accel",
            "scale_accel",
            "initial_velocity_std",
        ):
            value = getattr(self, name)
            if value < 0 or not np.isfinite(value):
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        if problems:
            raise ConfigError("TrackerConfig: " + "; ".join(problems))


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """One track's state at one update."""

    track_id: int
    box: FloatArray
    """(4,) x1,y1,x2,y2: the matched detection's box, else the filter's prediction."""
    landmarks: FloatArray | None
    """(5, 2) of the matched detection; ``None`` when the box is predicted."""
    det_index: int
    """Index into the :class:`Faces` given to :meth:`Tracker.update`; -1 when predicted."""
    det_score: float
    """Score of the matched detection; 0.0 when predicted."""
    confirmed: bool
    """False while the track is tentative (it may be a false detection)."""

    @property
    def predicted(self) -> bool:
        """True when no detection was matched to the track at this update."""
        return self.det_index < 0


@dataclass(frozen=True, eq=False)
class TrackUpdate:
    """Every live track at one time, and the tracks that ended there."""

    faces: tuple[TrackedFace, ...]
    """Every live track (confirmed or tentative), by increasing ``track_id``."""
    ended: tuple[int, ...]
    """Ids of the tracks that ended at this update; they never come back."""
    t: float
    """The time of the frame, in seconds."""

    def confirmed(self) -> tuple[TrackedFace, ...]:
        return tuple(f for f in self.faces if f.confirmed)

    def boxes(self) -> FloatArray:
        """(n, 4) boxes of every live track (what redaction blurs)."""
        if not self.faces:
            return np.zeros((0, 4), dtype=np.float32)
        return np.stack([f.box for f in self.faces]).astype(np.float32)


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over union of every box in ``a`` (n,4) with every box in ``b`` (m,4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def interpolate_box(
    box_a: npt.ArrayLike, t_a: float, box_b: npt.ArrayLike, t_b: float, t: float
) -> FloatArray:
    """The box at ``t`` on the straight line from ``box_a`` at ``t_a`` to ``box_b`` at ``t_b``.

    For filling the frames between two detections of a track after the fact (redaction of
    a file). Outside [t_a, t_b] the line is extended; equal times give ``box_a``.
    """
    a = np.asarray(box_a, dtype=np.float64).reshape(4)
    b = np.asarray(box_b, dtype=np.float64).reshape(4)
    if t_b == t_a:
        return a.astype(np.float32)
    w = (t - t_a) / (t_b - t_a)
    return ((1.0 - w) * a + w * b).astype(np.float32)


def min_cost_assignment(cost: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost assignment of a rectangular cost matrix.

    Hungarian algorithm (shortest augmenting paths, O(n^2 m)) with its inner loop
    vectorised; every row (or every column, whichever is fewer) gets a partner. Returns
    (rows, cols) sorted by row.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a matrix, got shape {c.shape}")
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.all(np.isfinite(c)):
        raise ValueError("cost must be finite (use a large number for forbidden pairs)")
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: row (1-based) holding column j
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = int(way[j0])
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.nonzero(owner[1:])[0]
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def _to_state(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=np.float64)


def _to_box(z: np.ndarray) -> np.ndarray:
    cx, cy = z[0], z[1]
    w, h = max(float(z[2]), 1.0), max(float(z[3]), 1.0)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float32)


_H = np.hstack([np.eye(4), np.zeros((4, 4))])
"""Measurement matrix: a detection observes (cx, cy, w, h), not the velocities."""


class _Track:
    """One face's Kalman filter and bookkeeping (internal; never handed out)."""

    def __init__(self, track_id: int, box: np.ndarray, t: float, config: TrackerConfig) -> None:
        self.track_id = track_id
        self.config = config
        z = _to_state(box)
        size = max(float(z[3]), 1.0)
        self.x = np.concatenate([z, np.zeros(4)])
        pos_std = 2.0 * config.measurement_std * size
        vel_std = config.initial_velocity_std * size
        self.P = np.diag([pos_std**2] * 4 + [vel_std**2] * 4)
        self.t = t  # time of the filter's state
        self.last_match_t = t
        self.hits = 1
        self.misses = 0  # consecutive detection updates without a match
        self.confirmed = config.min_hits <= 1

    @property
    def size(self) -> float:
        return max(float(self.x[3]), 1.0)

    def predict(self, t: float) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        f = np.eye(8)
        f[:4, 4:] = dt * np.eye(4)
        size = self.size
        # Discrete white-noise acceleration, per coordinate.
        accel = np.array([self.config.motion_accel] * 2 + [self.config.scale_accel] * 2) * size
        q_pos = accel**2 * dt**4 / 4
        q_cross = accel**2 * dt**3 / 2
        q_vel = accel**2 * dt**2
        q = np.zeros((8, 8))
        idx = np.arange(4)
        q[idx, idx] = q_pos
        q[idx, idx + 4] = q_cross
        q[idx + 4, idx] = q_cross
        q[idx + 4, idx + 4] = q_vel
        self.x = f @ self.x
        self.P = f @ self.P @ f.T + q
        self.t = t

    def correct(self, box: np.ndarray, t: float) -> None:
        z = _to_state(box)
        r = np.eye(4) * (self.config.measurement_std * max(float(z[3]), 1.0)) ** 2
        s = _H @ self.P @ _H.T + r
        gain = np.linalg.solve(s, _H @ self.P).T  # P H^T S^-1 (S and P symmetric)
        self.x = self.x + gain @ (z - _H @ self.x)
        self.P = (np.eye(8) - gain @ _H) @ self.P
        self.P = (self.P + self.P.T) / 2
        self.last_match_t = t
        self.hits += 1
        self.misses = 0
        if self.hits >= self.config.min_hits:
            self.confirmed = True

    def box(self) -> np.ndarray:
        return _to_box(self.x[:4])


class Tracker:
    """Links per-frame detections into face tracks; feed it frames in time order.

    >>> tracker = Tracker()
    >>> for t, faces in frames:                  # doctest: +SKIP
    ...     update = tracker.update(faces, t)    # or tracker.predict(t) between detections
    ...     for face in update.faces: ...        # box, landmarks, det_index, confirmed
    ...     for track_id in update.ended: ...    # decide once per finished track
    >>> tracker.finish()                          # doctest: +SKIP
    """

    def __init__(
        self,
        config: TrackerConfig = TrackerConfig(),
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        """``frame_size`` (width, height), when known, ends a predicted track at once when
        its box has left the frame entirely (a face that walked out of the picture)."""
        self.config = config
        self.frame_size = frame_size
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)
        self._t: float | None = None

    @property
    def live_ids(self) -> tuple[int, ...]:
        return tuple(tr.track_id for tr in self._tracks)

    def update(self, faces: Faces, t: float) -> TrackUpdate:
        """A frame at time ``t`` (seconds) with its detections (possibly none)."""
        self._advance(t)
        cfg = self.config
        tracks = self._tracks
        for tr in tracks:
            tr.predict(t)
        pred = np.stack([tr.box() for tr in tracks]) if tracks else np.zeros((0, 4), np.float32)
        scores = faces.scores
        high = np.nonzero(scores >= cfg.high_score)[0]
        low = np.nonzero((scores >= cfg.low_score) & (scores < cfg.high_score))[0]

        matches: dict[int, int] = {}  # track position -> detection index
        # Stage 1: high-score detections against every live track.
        all_tracks = np.arange(len(tracks))
        for ti, di in self._associate(t, all_tracks, pred, faces.boxes, high, gated=True):
            matches[ti] = di
        # Stage 2: low-score detections against the tracks left over.
        rest = np.array([i for i in all_tracks if i not in matches], dtype=np.int64)
        for ti, di in self._associate(t, rest, pred, faces.boxes, low, gated=False):
            matches[ti] = di

        out: dict[int, TrackedFace] = {}
        ended: list[int] = []
        survivors: list[_Track] = []
        for i, tr in enumerate(tracks):
            if i in matches:
                di = matches[i]
                tr.correct(faces.boxes[di], t)
                out[tr.track_id] = self._matched(tr, faces, di)
                survivors.append(tr)
                continue
            tr.misses += 1
            if self._expired(tr, t, counting_miss=True):
                ended.append(tr.track_id)
            else:
                out[tr.track_id] = self._predicted(tr)
                survivors.append(tr)

        # Unmatched confident detections start tentative tracks (unless they duplicate one).
        taken = set(matches.values())
        fresh = [int(d) for d in high if int(d) not in taken and scores[d] >= cfg.new_track_score]
        if fresh:
            claimed = [faces.boxes[d] for d in taken]
            for d in sorted(fresh, key=lambda d: -float(scores[d])):
                box = faces.boxes[d]
                if claimed and float(iou_matrix(box, np.stack(claimed)).max()) >= cfg.duplicate_iou:
                    continue
                tr = _Track(next(self._ids), box, t, cfg)
                survivors.append(tr)
                claimed.append(box)
                out[tr.track_id] = self._matched(tr, faces, d)
        self._tracks = survivors
        return TrackUpdate(tuple(out[k] for k in sorted(out)), tuple(ended), t)

    def predict(self, t: float) -> TrackUpdate:
        """A frame at time ``t`` on which no detection ran: every track's predicted box.

        No miss is counted; a track ends here only when it has gone unmatched for longer
        than ``max_miss_s`` (or left the frame).
        """
        self._advance(t)
        out: list[TrackedFace] = []
        ended: list[int] = []
        survivors: list[_Track] = []
        for tr in self._tracks:
            tr.predict(t)
            if self._expired(tr, t, counting_miss=False):
                ended.append(tr.track_id)
            else:
                out.append(self._predicted(tr))
                survivors.append(tr)
        self._tracks = survivors
        return TrackUpdate(tuple(sorted(out, key=lambda f: f.track_id)), tuple(ended), t)

    def finish(self) -> tuple[int, ...]:
        """End every live track (end of stream); returns their ids."""
        ended = tuple(tr.track_id for tr in self._tracks)
        self._tracks = []
        return ended

    # -- internals ---------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        if not np.isfinite(t):
            raise InputError("tracker", f"frame time {t} is not a finite number of seconds")
        if self._t is not None and t < self._t:
            raise InputError(
                "tracker", f"frame time {t:.6f}s is before the previous frame's {self._t:.6f}s"
            )
        self._t = float(t)

    def _expired(self, tr: _Track, t: float, *, counting_miss: bool) -> bool:
        cfg = self.config
        if t - tr.last_match_t > cfg.max_miss_s:
            return True
        if not tr.confirmed and counting_miss and tr.misses > cfg.tentative_max_misses:
            return True
        if self.frame_size is None:
            return False
        width, height = self.frame_size
        x1, y1, x2, y2 = (float(v) for v in tr.box())
        return x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height

    def _associate(
        self,
        t: float,
        track_pos: np.ndarray,
        pred: np.ndarray,
        det_boxes: np.ndarray,
        det_idx: np.ndarray,
        *,
        gated: bool,
    ) -> list[tuple[int, int]]:
        """Minimum-cost matching of some tracks to some detections; (track pos, det index)."""
        if len(track_pos) == 0 or len(det_idx) == 0:
            return []
        cfg = self.config
        p = pred[track_pos].astype(np.float64)
        d = det_boxes[det_idx].astype(np.float64)
        iou = iou_matrix(p, d)
        if gated:
            allowed = iou >= cfg.match_iou
            p_size = np.sqrt(np.prod(p[:, 2:] - p[:, :2], axis=1).clip(1.0))
            d_size = np.sqrt(np.prod(np.clip(d[:, 2:] - d[:, :2], 0, None), axis=1).clip(1.0))
            p_centre = (p[:, :2] + p[:, 2:]) / 2
            d_centre = (d[:, :2] + d[:, 2:]) / 2
            dist = np.linalg.norm(p_centre[:, None] - d_centre[None], axis=2) / p_size[:, None]
            since = np.array([t - self._tracks[i].last_match_t for i in track_pos])
            gate = cfg.centre_gate * (1.0 + cfg.centre_gate_growth * since)
            ratio = d_size[None, :] / p_size[:, None]
            near = (dist <= gate[:, None]) & (ratio <= cfg.size_gate) & (ratio >= 1 / cfg.size_gate)
            allowed |= near
            cost = 1.0 - iou + 0.1 * np.minimum(dist, 10.0)
        else:
            allowed = iou >= cfg.low_match_iou
            cost = 1.0 - iou
        cost = np.where(allowed, cost, _FORBIDDEN)
        rows, cols = min_cost_assignment(cost)
        return [
            (int(track_pos[r]), int(det_idx[c]))
            for r, c in zip(rows, cols, strict=True)
            if allowed[r, c]
        ]

    @staticmethod
    def _matched(tr: _Track, faces: Faces, di: int) -> TrackedFace:
        box: Any = faces.boxes[di]
        return TrackedFace(
            track_id=tr.track_id,
            box=box,
            landmarks=faces.landmarks[di],
            det_index=int(di),
            det_score=float(faces.scores[di]),
            confirmed=tr.confirmed,
        )

    @staticmethod
    def _predicted(tr: _Track) -> TrackedFace:
        box = tr.box()
        box.setflags(write=False)
        return TrackedFace(
            track_id=tr.track_id,
            box=box,
            landmarks=None,
            det_index=-1,
            det_score=0.0,
            confirmed=tr.confirmed,
        )


__all__ = [
    "TrackUpdate",
    "TrackedFace",
    "Tracker",
    "TrackerConfig",
    "interpolate_box",
    "iou_matrix",
    "min_cost_assignment",
]
