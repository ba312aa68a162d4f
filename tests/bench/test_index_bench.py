"""`faceledger bench index` on a slice of real LFW: a real gallery, a saved index opened in
a fresh process, recall against exact search, face-like distractors checked against real
non-mates, and refused inputs.

The embedder is MobileFaceNet (128-d; its ONNX file is in the shared models, no PyTorch
needed). Tests skip, saying why, when ../shared is absent (see tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from faceledger.bench import distractors as dm
from faceledger.cli.main import app
from tests.conftest import MODELS, need

runner = CliRunner()

PEOPLE = 500
"""A seeded sample of LFW people: ~70 probes (each with a mate), ~180 held out."""
KS_BOUND = 0.05
"""Face-like distractors vs held-out real non-mates (scores against the same probes): the
two-sample KS statistic stays under this (measured 0.011 on this slice, 0.008 on all of
LFW with EdgeFace; uniformly random vectors give ~0.19-0.3)."""
FIELDS = (
    "size", "index", "query_ms_p50", "recall_at_1", "recall_at_10", "open_s", "rss_mb",
    "params", "build_s", "rank1_exact", "rank1_index", "enroll_ms", "catch_up_ms",
    "distractors", "ks_statistic", "search_ms_p50", "templates",
)  # fmt: skip


def invoke(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def bench(tmp_path: Path, cache: Path, lfw: Path, *args: object) -> dict[str, Any]:
    out = tmp_path / f"result-{len(list(tmp_path.glob('result-*')))}.json"
    code, stdout, stderr = invoke(
        "bench", "index", "--dim", 128, "--profile", "fast", "--embedder", "mobilefacenet",
        "--data", lfw, "--people", PEOPLE, "--cache", cache, "--json", out, *args,
    )  # fmt: skip
    assert code == 0, stderr + stdout
    assert "recall@1" in stdout
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One LFW embedding cache for the module's runs."""
    return tmp_path_factory.mktemp("lfw-cache")


def test_exact_kinds_find_the_exact_answers_in_a_real_gallery(
    lfw: Path, cache: Path, tmp_path: Path
) -> None:
    need(MODELS)
    result = bench(tmp_path, cache, lfw, "--size", 2000, "--index", "flat")
    for key in FIELDS:
        assert key in result, key
    assert result["size"] == 2000 and result["index"] == "flat" and result["mode"] == "gallery"
    probes = result["probes"]
    assert isinstance(probes, int) and probes >= 40
    assert result["templates"] == 2000 + probes  # distractors and one mate per probe
    assert result["recall_at_1"] == 1.0 and result["recall_at_10"] == 1.0
    assert result["rank1_index"] == result["rank1_exact"]
    assert 0.8 <= float(result["rank1_exact"]) <= 1.0
    assert result["opened_from"] == "saved"  # the fresh process read the persisted index
    assert result["open_s"] > 0 and result["rss_mb"] > 50
    assert result["enrolled_found"] == result["enrolled"] == 5  # each caught up by a search
    assert float(result["enroll_ms"]) > 0 and float(result["catch_up_ms"]) > 0

    # the numpy reference, random distractors
    exact = bench(tmp_path, cache, lfw, "--size", 500, "--index", "exact", "--distractors",
                  "random")  # fmt: skip
    assert exact["recall_at_1"] == 1.0 and exact["distractors"] == "random"


def test_face_like_distractors_score_like_real_non_mates(
    lfw: Path, cache: Path, tmp_path: Path
) -> None:
    need(MODELS)
    face = bench(tmp_path, cache, lfw, "--size", 0, "--index", "flat")
    random = bench(tmp_path, cache, lfw, "--size", 0, "--index", "flat", "--distractors", "random")
    check = face["distractor_model"]["check"]
    assert face["ks_statistic"] == check["ks_vs_held_out"]
    assert float(face["ks_statistic"]) < KS_BOUND
    assert float(random["ks_statistic"]) > 3 * float(face["ks_statistic"])
    real, fake = check["held_out_vs_probes"], check["vs_probes"]
    assert abs(real["q0.5"] - fake["q0.5"]) < 0.02
    assert abs(real["q0.99"] - fake["q0.99"]) < 0.05
    # templates of one distractor identity are about as alike as real mated pairs
    assert abs(check["same_identity_median"] - check["real_mated_median"]) < 0.15


def test_an_approximate_index_reports_its_parameters_and_sweep(
    lfw: Path, cache: Path, tmp_path: Path
) -> None:
    need(MODELS)
    result = bench(tmp_path, cache, lfw, "--size", 2000, "--index", "hnsw", "--hnsw-m", 16,
                   "--ef-search", 64, "--sweep", 16, "--sweep", 256,
                   "--distractors", "random")  # fmt: skip
    assert result["params"]["hnsw_m"] == 16
    assert result["params"]["hnsw_ef_search"] == 64
    sweeps = result["sweeps"]
    assert [s["value"] for s in sweeps] == [16, 256]
    assert sweeps[1]["recall_at_1"] >= sweeps[0]["recall_at_1"]
    assert 0.5 <= float(result["recall_at_1"]) <= 1.0


def test_index_only_streams_chunks_into_the_index(lfw: Path, cache: Path, tmp_path: Path) -> None:
    need(MODELS)
    result = bench(tmp_path, cache, lfw, "--size", 3000, "--index", "flat", "--index-only",
                   "--chunk", 700, "--no-sweep", "--distractors", "random")  # fmt: skip
    assert result["mode"] == "index-only" and result["enroll_ms"] is None
    assert result["recall_at_1"] == 1.0 and result["recall_at_10"] == 1.0
    assert "index only" in str(result["note"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", -1, "--dim", 128], "--size must be 0 or more"),
        (["--size", 10, "--dim", 512], "--dim 512 does not match"),
        (["--size", 10, "--dim", 128, "--index", "annoy"], "unknown index kind 'annoy'; choose"),
        (["--size", 10, "--dim", 128, "--distractors", "gan"], "choose one of: random, face"),
    ],
)
def test_bad_inputs_exit_2_with_a_message(
    lfw: Path, tmp_path: Path, args: list[object], message: str
) -> None:
    need(MODELS)
    code, stdout, stderr = invoke(
        "bench", "index", "--profile", "fast", "--embedder", "mobilefacenet", "--data", lfw,
        "--cache", tmp_path, *args,
    )  # fmt: skip
    assert code == 2, stdout + stderr
    shown = " ".join(stderr.split())
    assert message in shown, stderr
    if "--index" in args:  # the valid kinds are listed
        assert all(kind in shown for kind in ("exact", "flat", "hnsw", "ivf", "ivfpq")), shown


def test_distractor_chunks_are_seeded_and_identities_have_one_to_three_templates() -> None:
    rng = np.random.default_rng(3)
    people = [dm.normalise(rng.standard_normal((n, 16))) for n in (1, 2, 3, 1, 4, 2)]
    model = dm.FaceDistractors.fit(people, gamma=0.3, seed=5)
    a, b = model.chunk(2, 500), model.chunk(2, 500)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.identity, b.identity)
    assert not np.array_equal(a.vectors, model.chunk(3, 500).vectors)
    assert np.allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)
    sizes = np.bincount(a.identity)
    assert sizes.min() >= 1 and sizes.max() <= 3 and sizes.sum() == 500
    assert np.unique(a.vectors, axis=0).shape[0] == 500  # no two templates coincide
    random = dm.RandomDistractors(16, seed=1)
    assert np.array_equal(random.chunk(0, 10).vectors, random.chunk(0, 10).vectors)
    assert dm.ks_statistic(np.arange(10.0), np.arange(10.0)) == 0.0
    assert dm.ks_statistic(np.zeros(5), np.ones(5)) == 1.0
