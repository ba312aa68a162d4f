"""The ONNX face detectors on real photos: counts, landmarks, OpenCV parity, agreement.

Needs the shared data beside the project (``../shared``: models and the smoke photos).
Expected counts were set by drawing each detector's boxes and counting, by eye, the faces
that are clearly visible (a face cut in half by the frame edge is not counted).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from faceledger.errors import ModelNotFoundError
from faceledger.faces.detect.base import (
    Detector,
    DetectorFactory,
    DetectorOptions,
    create_detector,
    resize_for_network,
)
from faceledger.faces.detect.retinaface import RetinaFaceDetector
from faceledger.faces.detect.scrfd import ScrfdDetector
from faceledger.faces.detect.yunet import YuNetDetector
from faceledger.models.catalog import get_card
from faceledger.models.store import ModelStore
from faceledger.types import Faces

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MODELS = SHARED / "models"
SMOKE = SHARED / "datasets" / "smoke"

CLASSES: dict[str, DetectorFactory] = {
    "yunet": YuNetDetector,
    "scrfd_2.5g": ScrfdDetector,
    "scrfd_500m": ScrfdDetector,
    "retinaface_mnet025": RetinaFaceDetector,
}
EXPECTED = {
    "scenes/two_people.jpg": 2,
    "scenes/couple.jpg": 2,
    "scenes/selfie-many-people.jpg": 6,
    "identities/fr_obama/face_recognition_obama.jpg": 1,
    "identities/fr_kit_harington/face_recognition_john1.jpeg": 1,
}
SINGLE = [photo for photo, n in EXPECTED.items() if n == 1]
Runner = Callable[[str, str], Faces]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    missing = [n for n in CLASSES if not (MODELS / get_card(n).files[0].name).is_file()]
    if missing:
        pytest.skip(f"shared model files for {missing} not found under {MODELS}")
    return ModelStore(cache_dir=tmp_path_factory.mktemp("cache"), mirror=MODELS, offline=True)


@pytest.fixture(scope="module")
def detectors(store: ModelStore) -> dict[str, Detector]:
    return {name: cls(get_card(name), store, DetectorOptions()) for name, cls in CLASSES.items()}


@cache
def photo(rel: str) -> np.ndarray:
    path = SMOKE / rel
    if not path.is_file():
        pytest.skip(f"smoke photo {path} not found (shared data set missing)")
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.fixture(scope="module")
def run(detectors: dict[str, Detector]) -> Runner:
    """``run(detector name, photo)``: one detection per pair for the whole module."""
    done: dict[tuple[str, str], Faces] = {}

    def detect(name: str, rel: str) -> Faces:
        if (name, rel) not in done:
            done[name, rel] = detectors[name].detect(photo(rel))
        return done[name, rel]

    return detect


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def test_constructor_is_lazy_and_missing_model_is_reported(tmp_path: Path) -> None:
    empty = ModelStore(cache_dir=tmp_path, mirror=tmp_path / "nowhere", offline=True)
    detector = YuNetDetector(get_card("yunet"), empty, DetectorOptions())
    with pytest.raises(ModelNotFoundError, match="yunet"):
        detector.detect(np.zeros((64, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", CLASSES)
def test_registered_by_card_name(tmp_path: Path, name: str) -> None:
    detector = create_detector(get_card(name), ModelStore(cache_dir=tmp_path), DetectorOptions())
    assert isinstance(detector, CLASSES[name])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("rel", EXPECTED)
def test_face_counts(run: Runner, name: str, rel: str) -> None:
    faces = run(name, rel)
    assert len(faces) == EXPECTED[rel], (name, rel, faces.boxes.round(1).tolist())
    assert np.all((faces.scores >= 0.5) & (faces.scores <= 1.0))
    assert np.all(np.diff(faces.scores) <= 0), "faces must come best first"


@pytest.mark.parametrize("name", CLASSES)
def test_landmarks_inside_boxes_and_eyes_ordered(run: Runner, name: str) -> None:
    checked = 0
    for rel in EXPECTED:
        h, w = photo(rel).shape[:2]
        faces = run(name, rel)
        for box, marks in zip(faces.boxes, faces.landmarks, strict=True):
            if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
                continue  # cut by the frame: landmarks may be extrapolated outside it
            assert np.all((marks >= box[:2]) & (marks <= box[2:])), (rel, box, marks)
            assert marks[0, 0] < marks[1, 0], f"{rel}: left eye must be left of right eye"
            assert marks[3, 0] < marks[4, 0], f"{rel}: left mouth corner must be left"
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("rel", EXPECTED)
def test_yunet_matches_opencv(run: Runner, rel: str) -> None:
    image = photo(rel)
    ours = run("yunet", rel)
    canvas, back = resize_for_network(image, None, DetectorOptions().input_max_side, upscale=False)
    nh, nw = round(image.shape[0] / back), round(image.shape[1] / back)
    reference = cv2.FaceDetectorYN.create(str(MODELS / "yunet_2026may.onnx"), "", (nw, nh))
    reference.setScoreThreshold(0.5)
    reference.setNMSThreshold(0.4)
    _, rows = reference.detect(np.ascontiguousarray(canvas[:nh, :nw, ::-1]))
    rows = np.zeros((0, 15), np.float32) if rows is None else rows
    assert len(rows) == len(ours)
    boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1) * back
    for box, marks, score in zip(ours.boxes, ours.landmarks, ours.scores, strict=True):
        j = int(np.argmin(np.abs(boxes - box).max(axis=1)))
        assert np.abs(boxes[j] - box).max() < 2.0
        assert np.abs(rows[j, 4:14].reshape(5, 2) * back - marks).max() < 2.0
        assert abs(rows[j, 14] - score) < 0.01


@pytest.mark.parametrize("rel", SINGLE)
def test_detectors_agree_on_a_single_face(run: Runner, rel: str) -> None:
    boxes = {name: run(name, rel).boxes for name in CLASSES}
    assert all(len(b) == 1 for b in boxes.values()), boxes
    for a, b in itertools.combinations(CLASSES, 2):
        assert iou(boxes[a][0], boxes[b][0]) > 0.7, (rel, a, b)


@pytest.mark.parametrize("name", CLASSES)
def test_blank_image_has_no_faces(detectors: dict[str, Detector], name: str) -> None:
    assert len(detectors[name].detect(np.full((120, 90, 3), 128, dtype=np.uint8))) == 0
