"""Redaction: every face hidden in a new file, consenting people kept, bad inputs refused.

Pure pieces (box enlargement, the three methods, the keep-visibility rule) run on tables.
Videos are the synthetic scenes of ``support.synth`` (LFW stills with exact per-frame
ground truth) and the smoke clip (real footage with shot cuts and AAC audio), redacted with
the ``fast`` profile. A face counts as hidden when the sharpness (variance of the Laplacian)
of its whole ground-truth box in the output fell below half of the input's.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from support.synth import SCENES, Scene, frame_truth, render, write_video
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.config import load_config
from faceledger.engine import Engine
from faceledger.errors import ConfigError
from faceledger.ledger import LedgerEntry
from faceledger.operations import Acting, Operations
from faceledger.types import Candidate, Faces, Match, Threshold
from faceledger.video import redact as R
from faceledger.video.redaction.detect import identifiable
from faceledger.video.redaction.keep import visible_frames
from faceledger.video.redaction.plan import FirstPass, Plan, TrackBook
from faceledger.video.scan import VideoScanner
from faceledger.video.source import Frame
from tests.conftest import LFW, MODELS, SMOKE, need

runner = CliRunner()
CLIP = SMOKE / "video" / "short_hamilton_clip.mp4"
LIN = SMOKE / "video" / "lin-manuel-miranda.png"


def run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def enroll(db: Path | str, name: str, photo: Path, basis: str) -> None:
    with Operations(load_config(db=db, profile="fast")) as ops:
        report, entry = ops.enroll(Acting.os_user(), name, [photo], basis)
    assert report.enrolled and entry is not None, report.failures


def redactions(db: Path | str) -> list[LedgerEntry]:
    with Operations(load_config(db=db, profile="fast"), create=False) as ops:
        return ops.audit_entries(action="redact")


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def sharpness(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def crop(image: np.ndarray, box: np.ndarray | tuple[float, ...], keep: float = 1.0) -> np.ndarray:
    """The central ``keep`` fraction of ``box`` (x1,y1,x2,y2), clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * keep, (y2 - y1) * keep
    h_img, w_img = image.shape[:2]
    a, b = max(round(cx - w / 2), 0), max(round(cy - h / 2), 0)
    c, d = min(round(cx + w / 2), w_img), min(round(cy + h / 2), h_img)
    return image[b:d, a:c]


def hidden(before: np.ndarray, after: np.ndarray, box: object, keep: float = 1.0) -> bool:
    a, b = crop(before, box, keep), crop(after, box, keep)  # type: ignore[arg-type]
    return a.size > 0 and sharpness(b) < 0.5 * sharpness(a)


def unblurred(
    scene: Scene, before: list[np.ndarray], after: list[np.ndarray]
) -> list[tuple[int, str]]:
    """(frame, name) of every visible ground-truth face whose box is still sharp."""
    misses = []
    for i, t in enumerate(scene.times):
        for face in frame_truth(scene, float(t)):
            if face.covered > 0.5:  # mostly behind another face: that one's box is checked
                continue
            if not hidden(before[i], after[i], face.box):
                misses.append((i, face.name))
    return misses


def truth_count(scene: Scene) -> int:
    return sum(1 for t in scene.times for f in frame_truth(scene, float(t)) if f.covered <= 0.5)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    need(MODELS)
    base = tmp_path_factory.mktemp("redact-engine")
    config = R.redaction_config(
        load_config(
            profile="fast",
            db=base / "gallery.db",
            model_mirror=MODELS,
            offline=True,
        )
    )
    with Engine(config) as eng:
        eng.load()
        yield eng


# ---- pure pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "margin", "expected"),
    [
        ((100, 100, 140, 180), 0.25, (90, 80, 150, 200)),
        ((0, 0, 40, 40), 0.25, (0, 0, 50, 50)),  # clipped at the top-left corner
        ((300, 200, 320, 240), 0.5, (290, 180, 320, 240)),  # clipped at the bottom-right
        ((10, 10, 20, 20), 0.0, (10, 10, 20, 20)),
    ],
)
def test_expand_boxes(box: tuple, margin: float, expected: tuple) -> None:
    out = R.expand_boxes(np.array([box]), margin, 320, 240)
    assert out.tolist() == [list(map(float, expected))]


def test_expand_boxes_drops_boxes_outside_the_frame() -> None:
    out = R.expand_boxes(np.array([[400, 10, 450, 60], [10, 10, 20, 20]]), 0.25, 320, 240)
    assert out.shape == (1, 4)


@pytest.fixture
def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", R.METHODS)
def test_blur_regions_hides_inside_only_and_never_mutates(noise: np.ndarray, method: str) -> None:
    original = noise.copy()
    box = (40, 30, 104, 94)
    out = R.blur_regions(noise, np.array([box], np.float32), method)
    assert np.array_equal(noise, original)  # the input is untouched
    assert out.shape == noise.shape and out.dtype == np.uint8
    outside = np.ones(noise.shape[:2], bool)
    outside[30:94, 40:104] = False
    assert np.array_equal(out[outside], noise[outside])
    inside = out[30:94, 40:104]
    assert sharpness(inside) < 0.1 * sharpness(noise[30:94, 40:104])
    if method == "box":
        assert (inside == 0).all()
    if method == "pixelate":  # ~8 blocks across: few distinct colours
        assert len(np.unique(inside.reshape(-1, 3), axis=0)) <= 81


def test_blur_regions_works_on_planes_and_ignores_boxes_outside(noise: np.ndarray) -> None:
    plane = noise[..., 0]
    out = R.blur_regions(plane, np.array([[10, 10, 50, 50], [500, 500, 600, 600]]), "box", fill=16)
    assert (out[10:50, 10:50] == 16).all()
    assert np.array_equal(out[60:], plane[60:])
    with pytest.raises(ConfigError, match="pixelate"):
        R.blur_regions(plane, np.zeros((0, 4)), "smudge")


def test_keep_takes_names_or_everyone_enrolled_not_both() -> None:
    with pytest.raises(ConfigError, match="not both"):
        R.Keep.of(["alice"], enrolled=True)
    threshold = Threshold(0.3, 1e-3, "test")
    alice, bob = Match("alice", 0.6, threshold), Match("bob", 0.6, threshold)
    unknown = Match(None, 0.1, threshold)
    assert not R.Keep()
    assert R.Keep.of(["alice"]).keeps(alice) and not R.Keep.of(["alice"]).keeps(bob)
    assert R.Keep.of(enrolled=True).keeps(bob)
    assert not R.Keep.of(enrolled=True).keeps(unknown) and not R.Keep.of(["alice"]).keeps(None)


def test_first_pass_cuts_where_the_scanner_does(engine: Engine) -> None:
    """One rule for shots: redaction's first pass runs the scanner of ``scan``, so a shot
    ends (and every track with it) at the same frames: not at a slight change, at a new
    picture, and again when the first picture comes back. (Pictures with structure larger
    than the scanner's 32x18 thumbnail cells: pixel noise averages away in them.)"""
    blocks = np.random.default_rng(0).integers(0, 256, (9, 12, 3), dtype=np.uint8)
    picture = np.ascontiguousarray(np.repeat(np.repeat(blocks, 20, axis=0), 20, axis=1))
    brighter = np.clip(picture.astype(int) + 5, 0, 255).astype(np.uint8)
    images = [picture, brighter, 255 - picture, 255 - picture, picture]
    first = FirstPass(engine, "cuts", R.Keep(), every=1)
    scanner = VideoScanner(engine, "cuts")
    cuts = []
    for i, image in enumerate(images):
        frame = Frame(i, i / 25, image)
        first.feed(frame)
        before = scanner.stats.cuts
        scanner.step(frame, Faces.empty())
        if scanner.stats.cuts > before:
            cuts.append(i)
    assert first.plan.cuts == cuts == [2, 4]
    assert first.scanner is not None and first.scanner.stats.cuts == 2


def test_a_kept_track_is_hidden_around_samples_of_someone_else() -> None:
    """The track-level decision says 'alice', but the samples at frames 6 and 8 are another
    face (an identity switch): frames from the last good sample (4) to the next good one
    (10) are hidden, so are those after the last good sample when the track ends on a bad one."""
    threshold = Threshold(0.34, 1e-3, "test")
    box = (0.0, 0.0, 10.0, 10.0)
    plan = Plan(regions=[[(7, box)] for _ in range(14)], times=[i / 10 for i in range(14)])
    good, bad = (Candidate("alice", 0.5),), (Candidate("alice", 0.1),)
    book = TrackBook(match=Match("alice", 0.6, threshold))
    book.samples = [(0, good), (2, good), (4, good), (6, bad), (8, bad), (10, good), (12, bad)]
    plan.tracks[7] = book
    visible = visible_frames(plan, R.Keep.of(["alice"]), verify=0.26)
    assert visible == {7: {0, 1, 2, 3, 4, 10}}
    assert visible_frames(plan, R.Keep.of(["bob"]), verify=0.26) == {}


# ---- synthetic scenes -----------------------------------------------------------------------


@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("name", list(SCENES))
def test_every_synthetic_face_is_hidden(
    engine: Engine, name: str, every: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detecting on every frame or on every 3rd (tracks carry the boxes between); with
    nobody to keep, nobody is identified: the gallery is never searched."""
    need(LFW / "images")
    scene = SCENES[name]
    src, dst = tmp_path / f"{name}.mp4", tmp_path / f"{name}_redacted.mp4"
    write_video(scene, src)

    def no_search(*_: object) -> None:
        raise AssertionError("a redaction that keeps nobody searched the gallery")

    monkeypatch.setattr(engine, "matcher", no_search)
    report = R.redact_video(engine, src, dst, every=every)
    before, after = frames_of(src), frames_of(dst)
    assert len(after) == len(before) == report.frames == len(scene.times)
    assert after[0].shape == before[0].shape
    misses = unblurred(scene, before, after)
    total = truth_count(scene)
    print(
        f"{name} every={every}: {len(misses)}/{total} ground-truth faces unblurred; "
        f"{report.detections} "
        f"detections, {report.faces_blurred} faces hidden, {report.tracks} tracks"
    )
    assert misses == []
    if name == "moving":  # the measure itself: nothing counts as hidden in the input
        assert len(unblurred(scene, before, before)) == total
    assert not list(tmp_path.glob(".*partial*"))


def _write_rotated(scene: Scene, path: Path) -> None:
    """The scene stored sideways (turned a quarter counter-clockwise) with an MP4 display
    matrix that turns it back clockwise, as phones record portrait video."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=round(scene.fps))
        stream.width, stream.height, stream.pix_fmt = scene.height, scene.width, "yuv420p"
        for image in render(scene):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(image)), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd") + 4 + 40  # version-0 track header: the matrix follows 40 bytes
    for k, value in enumerate((0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)):
        data[at + 4 * k : at + 4 * k + 4] = struct.pack(">i", value)
    path.write_bytes(bytes(data))


def test_rotated_video_is_searched_and_written_upright(engine: Engine, tmp_path: Path) -> None:
    need(LFW / "images")
    scene = SCENES["moving"]
    src, dst = tmp_path / "portrait.mp4", tmp_path / "out.mp4"
    _write_rotated(scene, src)
    with av.open(str(src)) as container:
        assert next(container.decode(video=0)).rotation == -90
    report = R.redact_video(engine, src, dst)
    assert (report.width, report.height) == (scene.width, scene.height)
    assert any("upright" in note for note in report.notes)
    upright = [np.ascontiguousarray(np.rot90(f, -1)) for f in frames_of(src)]
    after = frames_of(dst)
    assert after[0].shape == (scene.height, scene.width, 3)
    assert unblurred(scene, upright, after) == []


# ---- the real clip: size, timing, audio, and a consenting person kept ------------------------


def _timing(path: Path) -> tuple[tuple, list[int | None], int]:
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        shape = (v.width, v.height, v.average_rate, v.time_base, len(container.streams.audio))
        pts = [f.pts for f in container.decode(v)]  # None: a frame without a time
    with av.open(str(path)) as container:
        audio = sum(1 for p in container.demux(audio=0) if p.dts is not None)
    return shape, pts, audio


def test_clip_keeps_size_timing_audio_and_the_consenting_person(
    engine: Engine, tmp_path: Path
) -> None:
    need(CLIP)
    db, out = tmp_path / "g.db", tmp_path / "clip_redacted.mp4"
    enroll(db, "lin-manuel-miranda", LIN, "consent form 17")
    code, stdout, err = run(
        "redact", CLIP, "-o", out, "--keep", "lin-manuel-miranda", "--profile", "fast",
        "--db", db, "--json", "--purpose", "publish the rehearsal", "--case", "PR-3",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    # whom the copy leaves visible is on the record: one entry, the kept tracks' scores
    [entry] = redactions(db)
    assert (entry.purpose, entry.case_ref, entry.role) == ("publish the rehearsal", "PR-3", "cli")
    assert entry.result["keep"] == ["lin-manuel-miranda"]
    assert entry.result["kept"] == [
        {"subject": k["subject"], "score": k["score"], "track": k["track"]} for k in report["kept"]
    ]
    assert entry.result["kind"] == "video" and entry.result["frames"] == report["frames"]
    assert entry.inputs == (hashlib.sha256(CLIP.read_bytes()).hexdigest(),)
    print(f"clip: {report['frames'] / report['seconds']:.1f} frames/s over both passes; {report}")

    (shape_in, pts_in, audio_in), (shape_out, pts_out, audio_out) = _timing(CLIP), _timing(out)
    assert shape_out == shape_in  # width, height, frame rate, time base, one audio stream
    assert pts_out == pts_in and len(pts_out) == report["frames"] == 275
    assert audio_out == audio_in > 0
    assert report["audio_streams"] == 1 and report["complete"] is True
    assert report["kept_subjects"] == ["lin-manuel-miranda"]

    before, after = frames_of(CLIP), frames_of(out)
    best = max(report["kept"], key=lambda k: k["visible"])
    i = best["best_frame"]
    assert not hidden(before[i], after[i], best["best_box"], keep=0.6)  # his face is visible
    assert (
        np.abs(
            crop(before[i], best["best_box"], 0.6).astype(int)
            - crop(after[i], best["best_box"], 0.6)
        ).mean()
        < 8
    )

    # Everyone the detector finds (every 5th frame) who is clearly not him is hidden; his
    # frame-by-frame matches are mostly visible (a few are hidden by the per-sample check).
    config = load_config(profile="fast", db=db, model_mirror=MODELS, offline=True)
    with Engine(R.redaction_config(config)) as lin:
        threshold = lin.threshold.value
        counts = dict.fromkeys(
            ("other", "other hidden", "him", "him visible", "all", "hidden", "featureless"), 0
        )
        for i in range(0, len(before), 5):
            faces = R.detect_all(lin, before[i])
            big = identifiable(lin, faces)
            for j in range(len(faces)):
                score = -1.0
                if big[j]:
                    score = lin.matcher().match(lin.embed(before[i], faces[j]))[0].score
                if sharpness(crop(before[i], faces.boxes[j], 0.6)) < FEATURELESS:
                    counts["featureless"] += 1  # dark, out of focus: no detail to remove
                    continue
                is_hidden = hidden(before[i], after[i], faces.boxes[j], keep=0.6)
                counts["all"] += 1
                counts["hidden"] += is_hidden
                if score < NOT_HIM:
                    counts["other"] += 1
                    counts["other hidden"] += is_hidden
                elif score >= threshold:
                    counts["him"] += 1
                    counts["him visible"] += not is_hidden
    print(f"clip: detected faces every 5th frame, hidden or visible: {counts}")
    assert counts["other"] > 50 and counts["other hidden"] == counts["other"]
    assert counts["him visible"] >= 0.8 * counts["him"]


FEATURELESS = 10.0
"""Input regions this flat (variance of the Laplacian) cannot show whether they were blurred."""
NOT_HIM = 0.2
"""Below this MobileFaceNet similarity to his enrolled photo a face is surely someone else
(the clip's other people score -0.2..0.18; his own single frames 0.26..0.66)."""


def test_hidden_faces_no_longer_match_their_owner(engine: Engine) -> None:
    """Blur and pixelate strength: a hidden face, detected again (or at its old place), is
    compared with another photo of the same person; it must never clear the threshold."""
    root = need(LFW / "images")
    people = [p for p in sorted(root.iterdir()) if len(list(p.glob("*.jpg"))) >= 2][:20]
    scores: dict[str, list[float]] = {"none": [], "blur": [], "pixelate": []}
    for person in people:
        a, b = (engine.read(p) for p in sorted(person.glob("*.jpg"))[:2])
        fa, fb = engine.detect(a).largest(), engine.detect(b).largest()
        if not len(fa) or not len(fb):
            continue
        ref = engine.embed(a, fa).vectors[0]
        boxes = R.expand_boxes(fb.boxes, R.MARGIN, b.shape[1], b.shape[0])
        for method, found in scores.items():
            b2 = b if method == "none" else R.blur_regions(b, boxes, method)
            again = engine.detect(b2).largest()
            vector = engine.embed(b2, again if len(again) else fb).vectors[0]
            found.append(float(ref @ vector))
    bar = engine.threshold.value
    rates = {m: float(np.mean(np.array(v) >= bar)) for m, v in scores.items()}
    print(f"same-person match rate at {bar:.3f}: {rates}")
    assert len(scores["none"]) >= 15 and rates["none"] >= 0.8
    assert rates["blur"] == 0.0 and rates["pixelate"] == 0.0


# ---- photos -----------------------------------------------------------------------------------


def test_photo_faces_are_hidden(engine: Engine, tmp_path: Path) -> None:
    photo = need(SMOKE / "scenes" / "two_people.jpg")
    out = tmp_path / "two_people_redacted.jpg"
    code, stdout, err = run("redact", photo, "-o", out, "--profile", "fast", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["kind"] == "image" and report["faces_blurred"] == 2
    image = engine.read(photo)
    done = engine.read(out)
    assert done.shape == image.shape
    faces = R.detect_all(engine, image)
    assert len(faces) == 2
    assert all(hidden(image, done, box) for box in faces.boxes)
    print(f"photo: faces found in the redacted copy: {len(engine.detect(done))}")


def test_photo_keeps_an_enrolled_subject(tmp_path: Path) -> None:
    need(MODELS)
    ids = need(SMOKE / "identities" / "fr_obama")
    db = tmp_path / "g.db"
    enroll(db, "obama", ids / "face_recognition_obama.jpg", "consent")
    photo = ids / "face_recognition_obama2.jpg"
    for flag, kept in ((["--keep", "obama"], 1), (["--keep-enrolled"], 1), ([], 0)):
        out = tmp_path / f"out{len(flag)}{kept}.jpg"
        code, stdout, err = run(
            "redact", photo, "-o", out, *flag, "--profile", "fast", "--db", db, "--json"
        )
        assert code == 0, err
        report = json.loads(stdout)
        assert report["kept_tracks"] == kept, flag
        assert report["kept_subjects"] == (["obama"] if kept else [])
        assert report["faces_blurred"] == report["detections"] - kept
    # one entry per redaction, each saying whom it kept (a plain one: nobody)
    assert [e.result["keep"] for e in redactions(db)] == [["obama"], "enrolled", None]
    assert [[k["subject"] for k in e.result["kept"]] for e in redactions(db)] == [
        ["obama"], ["obama"], []
    ]  # fmt: skip


def test_redact_keep_leaves_one_entry_naming_the_kept_subject(db_url: str, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: ``redact --keep NAME`` identifies people, so it leaves one
    'redact' entry (who was kept, with the score) before the copy is handed back."""
    need(MODELS)
    ids = need(SMOKE / "identities" / "fr_obama")
    enroll(db_url, "obama", ids / "face_recognition_obama.jpg", "consent")
    photo, out = ids / "face_recognition_obama2.jpg", tmp_path / "kept.jpg"
    code, stdout, err = run(
        "redact", photo, "-o", out, "--keep", "obama", "--profile", "fast", "--db", db_url,
        "--json", "--purpose", "press release", "--case", "PR-9",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    [entry] = redactions(db_url)
    assert (entry.action, entry.purpose, entry.case_ref) == ("redact", "press release", "PR-9")
    assert entry.result["keep"] == ["obama"]
    [kept] = entry.result["kept"]
    assert kept["subject"] == "obama" and kept["score"] == report["kept"][0]["score"]
    assert kept["score"] >= report["kept"][0]["threshold"]
    assert entry.inputs == (hashlib.sha256(photo.read_bytes()).hexdigest(),)
    assert entry.result["faces_blurred"] == report["faces_blurred"] and out.is_file()
    with Operations(load_config(db=db_url, profile="fast"), create=False) as ops:
        assert ops.audit_verify().ok


def test_photo_method_box_and_no_face(engine: Engine, tmp_path: Path) -> None:
    photo = need(SMOKE / "scenes" / "two_people.jpg")
    out = tmp_path / "boxed.png"
    report = R.redact_image(engine, photo, out, method="box")
    image, done = engine.read(photo), engine.read(out)
    for box in R.detect_all(engine, image).boxes:
        assert (crop(done, box, 0.9) == 0).all()
    assert report.faces_blurred == 2 and report.kept == ()
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((100, 100, 3), 128, np.uint8))
    assert R.redact_image(engine, wall, tmp_path / "wall_out.png").faces_blurred == 0


# ---- bad inputs -------------------------------------------------------------------------------


def _no_leftovers(folder: Path) -> bool:
    return not list(folder.glob(".*partial*"))


def test_bad_inputs_exit_codes_and_nothing_left(tmp_path: Path) -> None:
    need(MODELS)
    need(CLIP)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    truncated = tmp_path / "truncated.mp4"
    data = CLIP.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.3)])
    out = tmp_path / "out.mp4"
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((64, 64, 3), 128, np.uint8))
    cases = [
        (text, out, 1, ["notes.mp4", "cannot open as video"]),
        (truncated, out, 1, ["truncated.mp4"]),
        (tmp_path / "missing.mp4", out, 1, ["missing.mp4", "no such file"]),
        (text, text, 2, ["overwrite the input"]),
        (still, out, 2, ["image file"]),
        (text, tmp_path / "no-such-folder" / "out.mp4", 1, ["does not exist"]),
        (CLIP, tmp_path / "out.zzz", 2, ["out.zzz", ".mp4 or .mkv"]),
    ]
    for src, dst, want, words in cases:
        code, _, err = run("redact", src, "-o", dst, "--profile", "fast")
        assert code == want, (src, err)
        for word in words:
            assert word in err, (src, err)
        assert not out.exists(), src
    assert text.read_text() == "not a video at all\n"
    assert _no_leftovers(tmp_path)


def test_existing_output_needs_force(engine: Engine, tmp_path: Path) -> None:
    photo = need(SMOKE / "scenes" / "two_people.jpg")
    out = tmp_path / "out.jpg"
    out.write_bytes(b"precious")
    code, _, err = run("redact", photo, "-o", out, "--profile", "fast")
    assert code == 2 and "--force" in err
    assert out.read_bytes() == b"precious"
    code, _, err = run("redact", photo, "-o", out, "--profile", "fast", "--force")
    assert code == 0, err
    assert engine.read(out).shape == engine.read(photo).shape


def test_video_broken_part_way_is_finished_with_the_frames_before(
    engine: Engine, tmp_path: Path
) -> None:
    """An MP4 whose index comes first but whose data is cut: the frames that decode are
    written (a valid file), the message says so and the exit code is 1."""
    src, out = tmp_path / "cut.mp4", tmp_path / "cut_redacted.mp4"
    rng = np.random.default_rng(1)
    with av.open(str(src), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(60):
            image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = src.read_bytes()
    src.write_bytes(data[: int(len(data) * 0.6)])
    code, stdout, err = run("redact", src, "-o", out, "--profile", "fast", "--json")
    assert code == 1
    assert "cut.mp4" in err and "wrote the" in err
    report = json.loads(stdout)
    assert report["complete"] is False and 0 < report["frames"] < 60
    assert len(frames_of(out)) == report["frames"]
    assert _no_leftovers(tmp_path)


def test_keep_unknown_subject_is_a_usage_error(tmp_path: Path) -> None:
    need(MODELS)
    photo = need(SMOKE / "scenes" / "two_people.jpg")
    code, _, err = run(
        "redact", photo, "-o", tmp_path / "o.jpg", "--keep", "nobody", "--profile", "fast",
        "--db", tmp_path / "g.db",
    )  # fmt: skip
    assert code == 2 and "nobody" in err
    assert not (tmp_path / "o.jpg").exists()


def test_scan_frames_are_upright_too(tmp_path: Path) -> None:
    from faceledger.video.source import file_frames

    need(LFW / "images")
    scene = SCENES["moving"]
    src = tmp_path / "portrait.mp4"
    _write_rotated(scene, src)
    first = next(iter(file_frames(src)))
    assert first.image.shape == (scene.height, scene.width, 3)
    expected = np.ascontiguousarray(np.rot90(frames_of(src)[0], -1))
    assert np.abs(first.image.astype(int) - expected.astype(int)).mean() < 1.0
