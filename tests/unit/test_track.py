"""The face tracker on synthetic ground truth (perfect detections with injected faults).

No detector runs: each scripted scene of ``support.synth`` gives exact boxes per frame, to
which we add jitter, random misses, low scores and occlusions; every test runs in
milliseconds. One test writes a real mp4 with PyAV (it needs the LFW photos).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from support.synth import (
    SCENES,
    Actor,
    Scene,
    TruthFace,
    detections,
    frame_truth,
    ground_truth,
    write_video,
)

from faceledger.errors import ConfigError, InputError
from faceledger.faces.track import (
    Tracker,
    TrackerConfig,
    TrackUpdate,
    interpolate_box,
    iou_matrix,
    min_cost_assignment,
)
from faceledger.types import Faces
from tests.conftest import LFW, need


@dataclass
class Run:
    """What a tracker made of one scene, scored against the truth."""

    updates: list[TrackUpdate] = field(default_factory=list)
    names: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Per track id: how often each true identity's detection was matched to it."""
    switches: int = 0
    """Times an identity's detections moved from one confirmed track to another."""
    predicted_ious: list[float] = field(default_factory=list)
    """IoU of each predicted (unmatched) confirmed box with its identity's true box, for
    faces wholly inside the frame (occluded or missed by the detector)."""
    predicted_cover: list[float] = field(default_factory=list)
    """For faces partly outside the frame: the fraction of their part in view that the
    predicted box covers (what redaction needs)."""
    confirmed: set[int] = field(default_factory=set)
    _last_track: dict[str, int] = field(default_factory=dict)

    def identity(self, track_id: int) -> str:
        return self.names[track_id].most_common(1)[0][0]

    def tracks_per_identity(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = defaultdict(set)
        for track_id in self.confirmed:
            out[self.identity(track_id)].add(track_id)
        return dict(out)

    def impure(self) -> list[int]:
        """Confirmed tracks that were matched to detections of more than one identity."""
        return [tid for tid in self.confirmed if len(self.names[tid]) > 1]

    def record(self, update: TrackUpdate, names: tuple[str, ...]) -> None:
        """Note which identity each matched track got, counting identity switches."""
        self.updates.append(update)
        for face in update.faces:
            if face.confirmed:
                self.confirmed.add(face.track_id)
            if face.det_index < 0:
                continue
            name = names[face.det_index]
            self.names[face.track_id][name] += 1
            if face.confirmed:
                previous = self._last_track.setdefault(name, face.track_id)
                self.switches += previous != face.track_id
                self._last_track[name] = face.track_id

    def score_predictions(self, truth: tuple[tuple[TruthFace, ...], ...]) -> None:
        """Compare each predicted confirmed box with its identity's true box."""
        for update, faces in zip(self.updates, truth, strict=True):
            for face in update.faces:
                if face.det_index >= 0 or face.track_id not in self.confirmed:
                    continue
                same = [f for f in faces if f.name == self.identity(face.track_id)]
                if not same:
                    continue
                true = same[0]
                if np.array_equal(true.box, true.full_box):
                    self.predicted_ious.append(float(iou_matrix(face.box, true.box)[0, 0]))
                else:
                    self.predicted_cover.append(coverage(face.box, true.box))


def coverage(box: np.ndarray, target: np.ndarray) -> float:
    """The fraction of ``target``'s area inside ``box``."""
    lt = np.maximum(box[:2], target[:2])
    rb = np.minimum(box[2:], target[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / max(float(np.prod(target[2:] - target[:2])), 1e-9)


def run_scene(
    scene: Scene,
    *,
    every: int = 1,
    jitter: float = 0.0,
    miss: float = 0.0,
    low: float = 0.0,
    seed: int = 0,
    config: TrackerConfig | None = None,
) -> Run:
    """Track a scene from perfect detections spoiled as asked; detect on every N-th frame."""
    rng = np.random.default_rng(seed)
    tracker = Tracker(config or TrackerConfig(), frame_size=(scene.width, scene.height))
    run = Run()
    for i, t in enumerate(scene.times):
        if i % every:
            run.record(tracker.predict(float(t)), ())
            continue
        truth = frame_truth(scene, float(t))
        faces, names = detections(truth, rng, jitter=jitter, miss=miss, low=low)
        run.record(tracker.update(faces, float(t)), names)
    # Predicted boxes against the truth (occluded and partly outside faces included).
    run.score_predictions(ground_truth(scene, hidden=True))
    return run


def check_one_track_per_identity(run: Run, scene: Scene) -> None:
    per_identity = run.tracks_per_identity()
    assert sorted(per_identity) == sorted(scene.names), per_identity
    assert all(len(ids) == 1 for ids in per_identity.values()), per_identity
    assert len(run.confirmed) == len(scene.names)
    assert run.impure() == []
    assert run.switches == 0


# -- the scenarios -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENES))
def test_perfect_detections_give_one_track_per_identity(name: str) -> None:
    scene = SCENES[name]
    run = run_scene(scene)
    check_one_track_per_identity(run, scene)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(SCENES))
def test_noisy_detections_give_one_track_per_identity(name: str, seed: int) -> None:
    """Jitter of 3% of the box, 10% random misses, 15% low-score detections."""
    scene = SCENES[name]
    run = run_scene(scene, jitter=0.03, miss=0.10, low=0.15, seed=seed)
    check_one_track_per_identity(run, scene)
    assert min(run.predicted_ious, default=1.0) > 0.5, run.predicted_ious
    assert min(run.predicted_cover, default=1.0) > 0.5, run.predicted_cover


def test_occlusion_of_half_a_second_keeps_the_track_and_predicts_the_box() -> None:
    scene = SCENES["occlusion"]
    run = run_scene(scene, jitter=0.02, seed=1)
    check_one_track_per_identity(run, scene)
    hidden_frames = [i for i, t in enumerate(scene.times) if 1.2 <= t < 1.7]
    occluded = scene.actors[0].name
    (track_id,) = run.tracks_per_identity()[occluded]
    truth = ground_truth(scene, hidden=True)
    ious = []
    for i in hidden_frames:
        (face,) = [f for f in run.updates[i].faces if f.track_id == track_id]
        assert face.predicted
        assert face.landmarks is None
        assert face.det_score == 0.0
        (true,) = [f for f in truth[i] if f.name == occluded]
        ious.append(float(iou_matrix(face.box, true.full_box)[0, 0]))
    print(f"IoU of predicted and true box while occluded: min {min(ious):.3f}")
    assert len(hidden_frames) >= 7
    assert min(ious) > 0.5


@pytest.mark.parametrize("name", sorted(SCENES))
def test_detection_every_third_frame_with_prediction_between(name: str) -> None:
    scene = SCENES[name]
    for seed in range(3):
        run = run_scene(scene, every=3, jitter=0.02, miss=0.05, seed=seed)
        check_one_track_per_identity(run, scene)
        # Between detections, each confirmed face has a box over its true one.
        assert min(run.predicted_ious, default=1.0) > 0.5, run.predicted_ious
        assert min(run.predicted_cover, default=1.0) > 0.5, run.predicted_cover
    assert min(run.predicted_cover, default=1.0) > 0.5, run.predicted_cover


def test_tracks_per_identity_summary() -> None:
    """Print the figures the scenarios reach (run with -s to see them)."""
    for name, scene in sorted(SCENES.items()):
        for every in (1, 3):
            run = run_scene(scene, every=every, jitter=0.03, miss=0.1, low=0.15, seed=7)
            ious = run.predicted_ious or [1.0]
            cover = run.predicted_cover or [1.0]
            print(
                f"{name:12s} every={every} identities={len(scene.names)} "
                f"tracks={len(run.confirmed)} switches={run.switches} "
                f"predicted={len(run.predicted_ious)} min IoU={min(ious):.3f} "
                f"mean IoU={np.mean(ious):.3f} min edge cover={min(cover):.3f}"
            )
            assert len(run.confirmed) == len(scene.names)


# -- lifecycle -----------------------------------------------------------------------------


def one_face(x: float, score: float = 0.9) -> Faces:
    box = np.array([[x, 100, x + 80, 180]], np.float32)
    return Faces(box, np.array([score]), np.zeros((1, 5, 2)))


def test_track_ends_after_max_miss_s() -> None:
    config = TrackerConfig(max_miss_s=0.5)
    tracker = Tracker(config)
    fps = 20.0
    for i in range(10):
        update = tracker.update(one_face(100 + 4 * i), i / fps)
    (face,) = update.faces
    assert face.confirmed
    last = 9 / fps
    for i in itertools.count(10):
        t = i / fps
        update = tracker.update(Faces.empty(), t)
        if update.ended:
            break
        assert t - last <= 0.5 + 1e-9
        assert [f.track_id for f in update.faces] == [face.track_id]
        assert update.faces[0].predicted
    assert update.ended == (face.track_id,)
    assert update.faces == ()
    assert 0.5 < t - last <= 0.5 + 1 / fps + 1e-9
    assert tracker.finish() == ()


def test_predict_does_not_count_misses_but_ends_after_max_miss_s() -> None:
    tracker = Tracker(TrackerConfig(max_miss_s=0.6))
    for i in range(4):
        tracker.update(one_face(100 + 5 * i), i * 0.1)
    update = tracker.predict(0.35)
    assert len(update.faces) == 1 and update.faces[0].predicted and update.ended == ()
    # The box keeps moving with the track's velocity (about 50 px/s).
    assert update.faces[0].box[0] == pytest.approx(117.5, abs=2.0)
    update = tracker.predict(0.85)
    assert update.ended == ()
    update = tracker.predict(0.95)
    assert update.faces == () and len(update.ended) == 1


def test_a_single_false_detection_stays_tentative_and_ends() -> None:
    tracker = Tracker()
    update = tracker.update(one_face(300), 0.0)
    (face,) = update.faces
    assert not face.confirmed
    assert face.det_index == 0
    assert face.landmarks is not None and face.landmarks.shape == (5, 2)
    # Between detections (predict) a tentative track is still reported: redaction blurs it.
    update = tracker.predict(1 / 15)
    assert [f.confirmed for f in update.faces] == [False]
    update = tracker.update(Faces.empty(), 2 / 15)
    assert update.ended == (face.track_id,)
    assert update.faces == ()


def test_low_score_detections_extend_tracks_but_start_none() -> None:
    tracker = Tracker()
    assert tracker.update(one_face(100, score=0.3), 0.0).faces == ()
    tracker.update(one_face(100), 0.1)
    update = tracker.update(one_face(104), 0.2)
    (face,) = update.faces
    assert face.confirmed
    update = tracker.update(one_face(108, score=0.3), 0.3)
    assert [(f.track_id, f.det_index, f.det_score) for f in update.faces] == [
        (face.track_id, 0, pytest.approx(0.3))
    ]


def test_fast_motion_is_caught_by_the_centre_gate() -> None:
    """A face moving 60% of its width per frame: no IoU with the still prediction at first."""
    tracker = Tracker()
    ids = set()
    for i in range(12):
        update = tracker.update(one_face(20 + 48 * i), i / 15)
        ids |= {f.track_id for f in update.faces}
        assert update.ended == ()
    assert len(ids) == 1


def test_duplicate_detection_starts_no_track() -> None:
    tracker = Tracker()
    tracker.update(one_face(100), 0.0)
    two = Faces.concat([one_face(102), one_face(101, score=0.8)])
    update = tracker.update(two, 0.1)
    assert len(update.faces) == 1


def test_ids_are_never_reused_and_finish_ends_everything() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_miss_s=0.1))
    first = tracker.update(one_face(100), 0.0).faces[0].track_id
    assert tracker.update(Faces.empty(), 0.5).ended == (first,)
    second = tracker.update(one_face(100), 0.6).faces[0].track_id
    assert second != first
    assert tracker.finish() == (second,)
    assert tracker.predict(0.7).faces == ()


def test_update_never_mutates_its_input() -> None:
    faces = one_face(100)
    before = faces.boxes.copy()
    tracker = Tracker()
    update = tracker.update(faces, 0.0)
    assert np.array_equal(faces.boxes, before)
    with pytest.raises((ValueError, AttributeError)):
        update.faces[0].box[0] = 0.0


def test_time_must_not_go_backwards() -> None:
    tracker = Tracker()
    tracker.update(one_face(100), 1.0)
    tracker.predict(1.0)  # the same time again is fine
    with pytest.raises(InputError, match="before the previous frame"):
        tracker.update(one_face(100), 0.9)
    with pytest.raises(InputError, match="finite"):
        tracker.predict(float("nan"))


@pytest.mark.parametrize(
    "bad",
    [
        {"low_score": 0.7, "high_score": 0.5},
        {"match_iou": 0.0},
        {"min_hits": 0},
        {"max_miss_s": -1.0},
        {"size_gate": 0.5},
    ],
)
def test_bad_config_is_a_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="TrackerConfig"):
        TrackerConfig(**bad)  # type: ignore[arg-type]


def test_leaving_the_frame_ends_the_track_when_frame_size_is_known() -> None:
    scene = Scene(
        "out", (Actor("Tony_Blair", ((0.0, 400.0, 180.0, 1.0), (1.0, 760.0, 180.0, 1.0))),)
    )
    tracker = Tracker(frame_size=(scene.width, scene.height))
    ended_at = None
    for t in np.arange(0, 1.6, 1 / 15):
        faces, _ = detections(frame_truth(scene, float(t)))
        update = tracker.update(faces, float(t))
        if update.ended:
            ended_at = float(t)
            break
    assert ended_at is not None and ended_at < 1.0 + TrackerConfig().max_miss_s


# -- pure functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_iou_table(a: list[float], b: list[float], expected: float) -> None:
    assert iou_matrix(a, b)[0, 0] == pytest.approx(expected)
    assert iou_matrix(b, a)[0, 0] == pytest.approx(expected)


def test_iou_matrix_shapes() -> None:
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
    assert iou_matrix(a, a).shape == (2, 2)
    assert np.allclose(np.diag(iou_matrix(a, a)), 1.0)


def test_interpolate_box() -> None:
    a, b = [0, 0, 10, 10], [10, 20, 30, 40]
    assert np.allclose(interpolate_box(a, 1.0, b, 3.0, 2.0), [5, 10, 20, 25])
    assert np.allclose(interpolate_box(a, 1.0, b, 3.0, 1.0), a)
    assert np.allclose(interpolate_box(a, 1.0, b, 1.0, 5.0), a)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 3), (3, 2), (4, 4), (5, 3), (3, 6), (6, 6)])
def test_min_cost_assignment_against_brute_force(n: int, m: int) -> None:
    rng = np.random.default_rng(10 * n + m)
    for _ in range(20):
        cost = rng.random((n, m))
        cost[rng.random((n, m)) < 0.2] = 1e6
        rows, cols = min_cost_assignment(cost)
        k = min(n, m)
        assert len(rows) == len(cols) == k
        assert len(set(rows.tolist())) == len(set(cols.tolist())) == k
        if n <= m:
            best = min(
                sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n)
            )
        else:
            best = min(
                sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m)
            )
        assert cost[rows, cols].sum() == pytest.approx(best)


def test_min_cost_assignment_empty() -> None:
    rows, cols = min_cost_assignment(np.zeros((0, 3)))
    assert rows.size == cols.size == 0


# -- a real clip ---------------------------------------------------------------------------


def test_synthetic_mp4_round_trip(tmp_path: Path) -> None:
    need(LFW / "images")
    av = pytest.importorskip("av", reason="PyAV (the project's video library) is not installed")

    scene = SCENES["crossing"]
    path = tmp_path / "crossing.mp4"
    truth = write_video(scene, path)
    assert len(truth) == len(scene.times)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(scene.times)
    assert {f.shape for f in frames} == {(scene.height, scene.width, 3)}
    # A face really is where the truth says (face patches differ from the background).
    from support.synth import background, render

    first = next(iter(render(scene)))
    assert np.abs(frames[0].astype(int) - first.astype(int)).mean() < 6
    x1, y1, x2, y2 = truth[0][0].box.astype(int)
    back = background(scene)
    inside = np.abs(first[y1:y2, x1:x2].astype(int) - back[y1:y2, x1:x2]).mean()
    assert inside > 20
