"""Face quality on real photos: each factor sees its degradation, a face below the floor is
answered ``insufficient_quality`` (never named, no candidates) in the library, the JSON,
the ledger and video, and a minimum can only make the floor stricter."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.synth import LFW_IMAGES, Scene, _linear, write_video
from typer.testing import CliRunner

from faceledger import Acting, Operations, load_config
from faceledger.cli.main import app
from faceledger.config import Config
from faceledger.engine import Engine
from faceledger.errors import ConfigError
from faceledger.faces.quality import FACTOR_NAMES, QualityFactors, assess, factor, measure
from faceledger.types import ImageArray
from tests.conftest import SMOKE, need

runner = CliRunner()
BUSH = ("George_W_Bush", 1)


def load_image(path: Path) -> ImageArray:
    return np.asarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


def lfw_photo(name: str, number: int) -> Path:
    path = LFW_IMAGES / name / f"{name}_{number:04d}.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is absent: needs the shared LFW images")
    return path


@pytest.fixture
def engine() -> Engine:
    return Engine(load_config(profile="fast"))


def factors_of(engine: Engine, image: ImageArray) -> dict[str, float]:
    faces = engine.detect(image)
    assert len(faces), "no face found"
    return measure(image, faces[:1]).row(0)


def small(image: ImageArray, side: int) -> ImageArray:
    return np.asarray(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))


def test_each_factor_sees_its_degradation(engine: Engine) -> None:
    image = load_image(lfw_photo(*BUSH))
    clean = factors_of(engine, image)
    faces = engine.detect(image)[:1]
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    dark = (image * 0.15).astype(np.uint8)
    assert measure(noisy, faces).row(0)["noise"] > clean["noise"] + 8
    assert measure(blurred, faces).row(0)["sharpness"] < clean["sharpness"] / 2
    assert measure(dark, faces).row(0)["brightness"] < 30 < clean["brightness"]
    tiny = factors_of(engine, small(image, 100))
    assert tiny["eye_distance"] == pytest.approx(clean["eye_distance"] * 100 / 250, rel=0.15)
    assert set(clean) == set(FACTOR_NAMES)


def test_the_score_is_the_weakest_factor_and_the_reason_names_it(engine: Engine) -> None:
    image = small(load_image(lfw_photo(*BUSH)), 60)
    faces = engine.detect(image)[:1]
    factors = measure(image, faces)
    eyes = factor("eye_distance")
    score = float(factors.scores()[0])
    assert score == pytest.approx(float(eyes.score(factors.values["eye_distance"])[0]))
    (quality,) = assess(factors, floor=0.8)
    assert not quality.sufficient
    needed = eyes.needed(0.8)
    shown = round(float(factors.values["eye_distance"][0]))
    assert quality.reason == f"face {shown} px between the eyes; needs {needed:.0f} px"
    (fine,) = assess(factors, floor=score)
    assert fine.sufficient and fine.reason is None


def test_minimums_only_add_conditions() -> None:
    factors = QualityFactors.unpack(np.array([[12, 2.0, 1.0, 0.05, 128, 127, 40, 0.9]]))
    (plain,) = assess(factors, floor=0.3)
    assert plain.sufficient
    (strict,) = assess(factors, floor=0.3, minimums={"eye_distance": 32})
    assert strict.reason == "face 12 px between the eyes; needs 32 px"
    (loose,) = assess(factors, floor=0.9, minimums={"eye_distance": 10})
    assert not loose.sufficient  # a looser minimum never lowers the floor
    with pytest.raises(ConfigError, match="unknown quality factor"):
        load_config(quality_minimums={"iris_colour": 3})


def test_min_quality_raises_the_floor_and_never_lowers_it() -> None:
    base = Engine(load_config(profile="fast"))
    floor = base.quality_floor
    assert 0 < floor < 1
    assert Engine(load_config(profile="fast", min_quality=0.0)).quality_floor == floor
    higher = min(1.0, floor + 0.2)
    assert Engine(load_config(profile="fast", min_quality=higher)).quality_floor == higher
    looser = Engine(load_config(profile="fast", min_quality=floor / 2))
    with pytest.raises(ConfigError, match="can only be stricter"):
        looser.load()


def test_the_cli_refuses_a_looser_minimum(tmp_path: Path) -> None:
    photo = lfw_photo(*BUSH)
    args = ["identify", str(photo), "-p", "fast", "--db", str(tmp_path / "g.db")]
    result = runner.invoke(app, [*args, "--min-quality", "0.01", "--purpose", "t"])
    assert result.exit_code == 2 and "can only be stricter" in result.stderr


@pytest.fixture
def gallery(tmp_path: Path) -> Config:
    config = load_config(profile="fast", db=tmp_path / "g.db")
    with Operations(config) as ops:
        report, _ = ops.enroll(
            Acting.os_user(), "bush", [lfw_photo("George_W_Bush", 2)], "test fixture"
        )
        assert report.enrolled
    return config


def test_a_tiny_face_of_an_enrolled_person_is_not_named(gallery: Config, tmp_path: Path) -> None:
    photo = lfw_photo(*BUSH)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), cv2.cvtColor(small(load_image(photo), 60), cv2.COLOR_RGB2BGR))
    me = Acting.os_user(purpose="test")
    with Operations(gallery) as ops:
        assert ops.identify(me, photo).value.faces[0].match.subject == "bush"  # type: ignore[union-attr]
        face = ops.identify(me, tiny, top=3).value.faces[0]
        entry = ops.audit_entries()[-1]
    match = face.match
    assert match is not None and match.decision == "insufficient_quality"
    assert match.subject is None and match.candidates == () and match.score == -1.0
    assert match.reason is not None and "between the eyes" in match.reason
    answer = face.to_dict()
    assert answer["decision"] == "insufficient_quality" and answer["subject"] is None
    assert answer["quality"]["reason"] == match.reason and not answer["quality"]["sufficient"]
    recorded = entry.result["matches"][0]
    assert recorded == {"decision": "insufficient_quality", "reason": match.reason, "subject": None}
    assert entry.result["insufficient_quality"] == 1 and entry.result["known"] == 0


def test_the_cli_says_too_poor_to_decide(gallery: Config, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    image = small(load_image(lfw_photo(*BUSH)), 60)
    cv2.imwrite(str(tiny), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    args = ["identify", str(tiny), "-p", "fast", "--db", str(gallery.db)]
    shown = runner.invoke(app, [*args, "--purpose", "test"])
    assert shown.exit_code == 0, shown.stderr
    assert "too poor to decide" in shown.stdout and "bush" not in shown.stdout
    as_json = runner.invoke(app, [*args, "--purpose", "test", "--json"])
    face = json.loads(as_json.stdout)["faces"][0]
    assert face["decision"] == "insufficient_quality" and face["subject"] is None


def test_verify_will_not_call_a_tiny_face_the_same_person(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), cv2.cvtColor(small(load_image(lfw_photo(*BUSH)), 60), cv2.COLOR_RGB2BGR))
    with Operations(load_config(profile="fast", db=tmp_path / "g.db")) as ops:
        result = ops.verify(Acting.os_user(purpose="t"), lfw_photo("George_W_Bush", 2), tiny)
    assert result.value.decision == "insufficient_quality" and not result.value.same
    assert result.value.reason is not None and "between the eyes" in result.value.reason
    assert result.entry is not None and result.entry.result["decision"] == "insufficient_quality"


def test_a_track_whose_frames_are_all_too_small_is_not_matched(tmp_path: Path) -> None:
    lfw_photo("Tony_Blair", 1)
    lfw_photo("Colin_Powell", 1)
    scene = Scene(
        "far_and_near",
        (
            _linear("Tony_Blair", (0.0, 2.0), (160, 180, 0.25), (200, 180, 0.25)),
            _linear("Colin_Powell", (0.0, 2.0), (460, 180, 1.1), (440, 180, 1.1)),
        ),
        duration_s=2.0,
    )
    clip = tmp_path / "far_and_near.mp4"
    write_video(scene, clip)
    db = tmp_path / "g.db"
    with Operations(load_config(db=db, profile="fast")) as ops:
        for name in scene.names:
            ops.enroll(Acting.os_user(), name, [lfw_photo(name, 2)], "test fixture")
    result = runner.invoke(app, ["scan", str(clip), "-p", "fast", "--db", str(db), "--json", "-"])
    assert result.exit_code == 0, result.stderr
    events = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    decisions = sorted((e["decision"], e["subject"]) for e in events)
    assert decisions == [("insufficient_quality", None), ("match", "Colin_Powell")]
    far = next(e for e in events if e["decision"] == "insufficient_quality")
    assert "between the eyes" in far["reason"]


def test_the_smoke_photos_are_good_enough(engine: Engine) -> None:
    need(SMOKE)
    photos = sorted((SMOKE / "identities").rglob("*.jpg"))
    for photo in photos:
        image = load_image(photo)
        faces = engine.detect(image)
        if len(faces):
            (quality,) = assess(measure(image, faces[:1]), engine.quality_floor)
            assert quality.sufficient, f"{photo.name}: {quality.reason}"


def test_a_face_too_poor_to_enroll_is_refused_and_the_rest_enrolled(tmp_path: Path) -> None:
    blurred = tmp_path / "blurred.png"  # a large face, out of focus
    image = cv2.GaussianBlur(load_image(lfw_photo(*BUSH)), (0, 0), 4)
    cv2.imwrite(str(blurred), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    good = lfw_photo("George_W_Bush", 2)
    with Operations(load_config(profile="fast", db=tmp_path / "g.db")) as ops:
        report, entry = ops.enroll(Acting.os_user(), "bush", [blurred, good], "test fixture")
    assert report.enrolled == (str(good),)
    ((source, reason),) = report.failures
    assert source == str(blurred) and reason.startswith("face too poor to enroll: face too blur")
    assert "floor 0.75" in reason and entry is not None
