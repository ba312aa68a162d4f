"""`faceledger bench` on a slice of real LFW (seconds): fixed JSON keys, report files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.bench.run import RESULT_KEYS
from faceledger.cli.main import app

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_bench_lfw_slice_writes_fixed_keys_and_a_report(lfw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    code, stdout, stderr = invoke(
        "bench", "lfw", "--profile", "fast", "--data", lfw, "--per-fold", "2",
        "--cache", tmp_path / "cache", "--speed-sample", "4", "--json", out,
        "--report", tmp_path / "report",
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert list(result)[: len(RESULT_KEYS)] == list(RESULT_KEYS)
    assert result["profile"] == "fast"
    assert result["models"][0] == "yunet"
    assert result["details"]["pairs"] == 40  # 2 mated + 2 non-mated in each of 10 folds
    for key in ("lfw_acc", "auc", "rank1", "rank5", "tar_at_far_1e-3"):
        assert 0.8 <= result[key] <= 1.0, key
    assert result["images_per_s"] > 0 and result["ms_detect"] > 0
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} >= {"report.md", "results.json", "roc.png", "det.png"}
    assert "LFW 10-fold accuracy" in stdout

    # A second run reads every vector from the cache: same numbers.
    code, _, stderr = invoke(
        "bench", "lfw", "--profile", "fast", "--data", lfw, "--per-fold", "2",
        "--cache", tmp_path / "cache", "--speed-sample", "0", "--json", out,
    )  # fmt: skip
    assert code == 0, stderr
    again = json.loads(out.read_text())
    assert again["lfw_acc"] == result["lfw_acc"] and again["rank1"] == result["rank1"]
    assert again["images_per_s"] is None


def test_bench_calibrate_slice(lfw: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke(
        "bench", "calibrate", "--profile", "fast", "--data", lfw, "--limit", "15",
        "--cache", tmp_path / "cache",
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["protocol"] == "LFW View 1 pairsDevTrain"
    assert result["mated_pairs"] == 15
    t = result["thresholds"]
    assert t["0.01"] <= t["0.001"] <= t["0.0001"]


def test_bench_rejects_a_folder_that_is_not_lfw(tmp_path: Path) -> None:
    code, _, stderr = invoke("bench", "lfw", "--data", tmp_path, "--profile", "fast")
    assert code == 2
    assert "pairs.txt" in stderr


def test_bench_rejects_an_unknown_peer(lfw: Path) -> None:
    code, _, stderr = invoke("bench", "lfw", "--data", lfw, "--peer", "deepface")
    assert code == 2
    assert "unknown peer" in stderr


@pytest.mark.skipif(
    importlib.util.find_spec("face_recognition") is None,
    reason="the face_recognition peer is not installed (pip install --no-deps face_recognition)",
)
def test_bench_speed_beside_the_peer(lfw: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke(
        "bench", "speed", "--profile", "fast", "--images", lfw / "images" / "Aaron_Peirsol",
        "--count", "3", "--peer", "face_recognition",
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["images"] == 3 and result["faces"] >= 3
    assert result["speed_ratio"] > 1
