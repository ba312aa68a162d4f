"""`faceledger bench degraded`: seeded degradations, the documented levels, the floor's
calibration on synthetic data, and a small real run on LFW (fast profile, two levels, a few
pairs per fold, the peer on a handful of probes).

Tests that need LFW or the models skip, saying why, when ../shared is absent
(see tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from faceledger.bench import degrade
from faceledger.bench.degraded import FMRS, calibrate_floor, fmr_key, quality_bins
from faceledger.cli.main import app
from tests.conftest import LFW, MODELS, need, need_profile

runner = CliRunner()

DOCUMENTED = {
    "clean": {},
    "ied32": {"ied": 32},
    "ied24": {"ied": 24},
    "ied16": {"ied": 16},
    "ied12": {"ied": 12},
    "jpeg30": {"jpeg": 30},
    "jpeg10": {"jpeg": 10},
    "blur1.5": {"blur": 1.5},
    "blur3": {"blur": 3.0},
    "noise10": {"noise": 10},
    "noise25": {"noise": 25},
    "dark": {"gain": 0.35, "gamma": 1.2},
    "dark-noise": {"gain": 0.35, "gamma": 1.2, "noise": 8},
    "cam-good": {"ied": 32, "blur": 1.0, "noise": 5, "jpeg": 50},
    "cam-poor": {"ied": 20, "blur": 1.5, "noise": 10, "jpeg": 30},
    "cam-bad": {"ied": 14, "blur": 2.0, "noise": 15, "jpeg": 20},
}
"""The levels as the report documents them (faceledger.bench.degrade, ACCURACY.md)."""
SAMPLE = ("Aaron_Peirsol", 1), ("George_W_Bush", 1), ("Colin_Powell", 3), ("Serena_Williams", 2)


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def synthetic_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 120 * 100 * 3).reshape(120, 100, 3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


# ---- degradations ---------------------------------------------------------------------------


def test_every_level_has_its_documented_parameters() -> None:
    assert list(degrade.LEVELS) == list(DOCUMENTED)
    for name, params in DOCUMENTED.items():
        assert degrade.LEVELS[name].params() == params, name
    # a camera-like chain names its steps in the order it takes them
    assert degrade.LEVELS["cam-poor"].describe() == (
        "downscale to IED 20 px -> blur sigma 1.5 px -> noise sigma 10 -> JPEG q30"
    )
    # the cache name changes with the parameters
    signatures = {lv.signature() for lv in degrade.LEVELS.values()}
    assert len(signatures) == len(DOCUMENTED)


def test_degradations_are_deterministic_and_seeded_per_image_and_level() -> None:
    image = synthetic_image()
    for level in degrade.LEVELS.values():
        first = degrade.apply(image, level, "Someone/1", ied=40.0)
        again = degrade.apply(image.copy(), level, "Someone/1", ied=40.0)
        assert first.dtype == np.uint8 and first.tobytes() == again.tobytes(), level.name
    noisy = degrade.LEVELS["noise10"]
    other_key = degrade.apply(image, noisy, "Someone/2", ied=40.0)
    assert other_key.tobytes() != degrade.apply(image, noisy, "Someone/1", ied=40.0).tobytes()
    assert degrade.seed_for("Someone/1", "noise10") == degrade.seed_for("Someone/1", "noise10")
    assert degrade.seed_for("Someone/1", "noise10") != degrade.seed_for("Someone/1", "noise25")
    # the clean level is the image itself; noise has the stated sigma
    assert degrade.apply(image, degrade.LEVELS["clean"], "x/1", 40.0).tobytes() == image.tobytes()
    grey = np.full((200, 200, 3), 128, np.uint8)
    spread = degrade.noise(grey, 10.0, seed=1).astype(np.float32) - 128
    assert abs(float(spread.std()) - 10.0) < 0.2


def test_downscale_never_upscales_and_dark_darkens() -> None:
    image = synthetic_image()
    assert degrade.downscale(image, ied=20.0, target=32.0) is image
    half = degrade.downscale(image, ied=40.0, target=20.0)
    assert half.shape == (60, 50, 3)
    dark = degrade.dark(np.full((4, 4, 3), 120, np.uint8), gain=0.35, gamma=1.2)
    assert 25 <= int(dark[0, 0, 0]) <= 33


def test_unknown_levels_are_refused_with_the_known_ones() -> None:
    from faceledger.errors import ConfigError

    assert [lv.name for lv in degrade.select("ied16, clean")] == ["clean", "ied16"]
    with pytest.raises(ConfigError, match=r"ied99.*choose from: clean"):
        degrade.select("clean,ied99")


def test_downscale_hits_the_target_ied_on_real_lfw_images(lfw: Path) -> None:
    need_profile("fast")
    from faceledger.bench.lfw import detect_one, image_path
    from faceledger.config import load_config
    from faceledger.engine import Engine

    engine = Engine(load_config(profile="fast", detector="yunet"))
    for target in (32.0, 24.0, 16.0):
        measured = []
        for key in SAMPLE:
            image = engine.read(image_path(lfw, key))
            clean = detect_one(engine, image)
            ied = degrade.inter_eye(clean.landmarks)
            assert 30 < ied < 60  # LFW's native IED (median ~44 px)
            small = degrade.downscale(image, ied, target)
            scale = small.shape[1] / image.shape[1]
            # the clean landmarks, scaled with the image, are on target within a pixel
            assert abs(ied * scale - target) < 1.0
            faces = engine.detect(small)
            assert len(faces) >= 1
            measured.append(degrade.inter_eye(faces.largest().landmarks[0]))
        # detected again on the small image: on target within a pixel (median of 4 images;
        # a single image's landmarks move by up to ~2 px at these sizes)
        assert abs(float(np.median(measured)) - target) < 1.0, (target, measured)


# ---- the floor -------------------------------------------------------------------------------


def synthetic_probes(
    n: int = 4000, cut: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quality uniform on 0..1; probes below ``cut`` false-match at 1e-2 of their
    comparisons, those above at 2e-4."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, n)
    comparisons = np.full(n, 10_000)
    false = np.where(q < cut, 100, 2)
    return q, comparisons, false


def test_calibrate_floor_picks_the_lowest_floor_where_every_bin_keeps_the_fmr() -> None:
    q, comparisons, false = synthetic_probes()
    result = calibrate_floor(q, comparisons, false, 1e-3)
    assert result.floor == pytest.approx(0.3)
    below = next(c for c in result.candidates if c["floor"] == pytest.approx(0.275))
    assert not below["acceptable"]  # its first bin holds the bad probes under 0.3
    assert below["bins"][0]["fmr"] > 1e-3
    chosen = next(c for c in result.candidates if c["floor"] == pytest.approx(0.3))
    assert all(b["fmr"] <= 1e-3 for b in chosen["bins"])
    assert sum(b["probes"] for b in chosen["bins"]) == int((q >= 0.3).sum())
    # a looser FMR needs no floor; a stricter one than the good probes give has none
    assert calibrate_floor(q, comparisons, false, 1e-1).floor == 0.0
    assert calibrate_floor(q, comparisons, false, 1e-4).floor is None
    # a tolerance lets a bin pass a little above the FMR: 2e-4 is within 1e-4 x (1 + 1.5)
    assert calibrate_floor(q, comparisons, false, 1e-4, tolerance=1.5).floor == pytest.approx(0.3)
    # probes without a face (NaN quality) are left out
    with_nan = np.r_[q, np.nan, np.nan]
    more = calibrate_floor(with_nan, np.r_[comparisons, 0, 0], np.r_[false, 0, 0], 1e-3)
    assert more.floor == pytest.approx(0.3)


def test_quality_bins_close_at_one_and_merge_a_thin_top_bin() -> None:
    scores = np.r_[np.full(300, 0.55), np.full(300, 0.75), np.full(50, 0.95), np.ones(20)]
    bins = quality_bins(scores, 0.5, width=0.1, min_top=200)
    # [0.9, 1.0] (70, the 1.0s included) and then [0.8, 1.0] (still 70) are under 200:
    # both merge down into [0.7, 1.0]
    assert [(round(lo, 2), round(hi, 2), int(m.sum())) for lo, hi, m in bins] == [
        (0.5, 0.6, 300),
        (0.6, 0.7, 0),
        (0.7, 1.0, 370),
    ]
    assert int(quality_bins(scores, 0.5, width=0.1, min_top=50)[-1][2].sum()) == 70
    top = quality_bins(np.ones(10), 1.0)
    assert len(top) == 1 and int(top[0][2].sum()) == 10


# ---- a real run -------------------------------------------------------------------------------


VERIFICATION = ("fmr_pairs", "fmr_cross", "fnmr", "fmr_pairs_floor", "fmr_cross_floor",
                "fnmr_floor", "insufficient_rate", "floor", "threshold")  # fmt: skip
DECISIONS = ("correct", "wrong", "unknown", "insufficient", "no_face")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One small run for the module (the per-test environment is not set up yet for a
    module fixture: the same settings are made here)."""
    lfw = need(LFW / "pairs.txt").parent
    need(MODELS)
    with pytest.MonkeyPatch.context() as env:
        base = tmp_path_factory.getbasetemp()
        env.setenv("FACELEDGER_MODEL_MIRROR", str(MODELS))
        env.setenv("FACELEDGER_MODEL_CACHE", str(base / "model-cache"))
        env.setenv("FACELEDGER_DB", str(base / "default-gallery.db"))
        env.setenv("FACELEDGER_OFFLINE", "1")
        env.delenv("FACELEDGER_PROFILE", raising=False)
        yield _small_run(lfw, tmp_path_factory.mktemp("degraded"))


def _small_run(lfw: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / "result.json"
    md = tmp / "result.md"
    code, stdout, stderr = invoke(
        "bench", "degraded", "--data", lfw, "-p", "fast", "--levels", "clean,ied16",
        "--limit", 3, "--cache", tmp / "cache", "--json", out, "--markdown", md,
        "--peer", "face_recognition", "--peer-probes", 6,
    )  # fmt: skip
    assert code == 0, stderr + stdout
    assert "### View 2" in stdout and md.read_text().startswith("## Degraded LFW")
    document: dict[str, Any] = json.loads(out.read_text())
    document["_cache"] = str(tmp / "cache")
    document["_lfw"] = str(lfw)
    return document


def test_a_small_real_run_gives_every_figure(small_run: dict[str, Any]) -> None:
    doc = small_run
    assert list(doc["levels"]) == ["clean", "ied16"]
    assert doc["levels"]["ied16"]["params"] == {"ied": 16}
    assert set(doc["thresholds"]) == {fmr_key(f) for f in FMRS}
    assert doc["data"]["view2_pairs"] == 60 and doc["data"]["view1_pairs"] == 6
    for name in ("clean", "ied16"):
        ver = doc["verification"][name]
        assert 0.0 <= ver["no_face_rate"] <= 1.0
        for key in doc["thresholds"]:
            for figure in VERIFICATION:
                assert ver["at"][key][figure] is not None, (name, key, figure)
        ident = doc["identification"][name]
        assert ident["probes"] > 10 and ident["gallery"] > ident["probes"]
        assert ident["rank1"] is not None and ident["fnir_at_fpir_0.01"] is not None
        for key in doc["thresholds"]:
            e = ident["at"][key]
            assert sum(e[d] for d in DECISIONS) == pytest.approx(1.0)
            assert sum(e[f"{d}_floor"] for d in DECISIONS) == pytest.approx(1.0)
        view1 = doc["view1"][name]
        assert view1["non_mated_comparisons"] > 0 and view1["mated_pairs"] == 3
        assert doc["quality"][name]["score_median"] is not None
    # clean faces are found and matched; the small ones are scored lower
    assert doc["verification"]["clean"]["at"]["1e-3"]["fnmr"] < 0.2
    assert doc["quality"]["ied16"]["factor_medians"]["eye_distance"] < 20
    assert doc["quality"]["clean"]["score_median"] > doc["quality"]["ied16"]["score_median"]
    floor = doc["floor"]
    assert floor["mode"] == "auto" and set(floor["in_force"]) == set(doc["thresholds"])
    assert floor["pooled_levels"] == ["clean", "ied16"]
    for cal in floor["calibration"].values():
        assert len(cal["candidates"]) == 41 and cal["candidates"][0]["bins"]
    peer = doc["peer"]
    assert peer["name"] == "face_recognition"
    for name in ("clean", "ied16"):
        p = peer["levels"][name]["peer"]
        assert p["probes"] == 6 and p["tolerance"] == 0.6
        assert sum(p[d] for d in ("correct", "wrong", "unknown", "no_face")) == pytest.approx(1.0)
        assert peer["levels"][name]["ours_same_probes"]["probes"] == 6
    assert doc["not_measured"] and "View 1 only" in doc["chosen_on"]


def test_a_rerun_reads_the_caches_and_another_floor_changes_only_the_floored_figures(
    small_run: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "again.json"
    code, stdout, stderr = invoke(
        "bench", "degraded", "--data", small_run["_lfw"], "-p", "fast", "--levels",
        "clean,ied16", "--limit", 3, "--cache", small_run["_cache"], "--json", out,
        "--floor", 1.0, "--remeasure-quality",
    )  # fmt: skip
    assert code == 0, stderr + stdout
    again = json.loads(out.read_text())
    assert again["floor"]["mode"] == "fixed"
    assert again["runtime_s"] < small_run["runtime_s"]  # nothing detected or embedded again
    # the factors measured again from the cached faces are the ones measured first
    for name in ("clean", "ied16"):
        assert again["quality"][name] == small_run["quality"][name]
    for name in ("clean", "ied16"):
        before, after = small_run["verification"][name]["at"], again["verification"][name]["at"]
        assert after["1e-3"]["fnmr"] == before["1e-3"]["fnmr"]
        assert after["1e-3"]["floor"] == 1.0
        assert after["1e-3"]["insufficient_rate"] >= before["1e-3"]["insufficient_rate"]


def test_wrong_data_and_unknown_levels_are_usage_errors(tmp_path: Path) -> None:
    code, stdout, stderr = invoke("bench", "degraded", "--data", tmp_path, "-p", "fast")
    assert code == 2 and "LFW folder" in stderr + stdout
    code, stdout, stderr = invoke("bench", "degraded", "--levels", "clean,ied99")
    assert code == 2 and "ied99" in stderr + stdout and "cam-bad" in stderr + stdout
    code, stdout, stderr = invoke("bench", "degraded", "--floor", "high")
    assert code == 2 and "--floor" in stderr + stdout
