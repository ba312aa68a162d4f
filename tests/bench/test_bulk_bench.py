"""`faceledger bench bulk` on a slice of LFW: every program really runs, on the same photos."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.bench.bulk import pick
from faceledger.cli.main import app
from faceledger.errors import ConfigError
from tests.conftest import standin_env

runner = CliRunner()


def test_the_protocol_enrolls_half_and_probes_mates_and_strangers(lfw: Path) -> None:
    job = pick(lfw, 20)
    assert len(job.known) == 10 and len(job.probes) == 20
    enrolled = {name for name, _ in job.known}
    assert {p.person for p in job.probes[:10]} == enrolled
    assert all(p.person is None for p in job.probes[10:])
    assert {p.path for p in job.probes}.isdisjoint(path for _, path in job.known)


@pytest.mark.parametrize("images", [0, 3, 10**7])
def test_an_impossible_size_is_refused(lfw: Path, images: int) -> None:
    with pytest.raises(ConfigError, match="--images"):
        pick(lfw, images)


def test_bench_bulk_runs_each_program_on_the_same_photos(
    lfw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in standin_env().items():
        monkeypatch.setenv(key, value)
    peer = importlib.util.find_spec("face_recognition") is not None
    out = tmp_path / "bulk.json"
    args = ["bench", "bulk", "--data", str(lfw), "--images", "16", "--profiles", "fast",
            "--workers", "2", "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, [*args, "--peer" if peer else "--no-peer"])
    assert result.exit_code == 0, result.stderr + result.stdout
    body = json.loads(out.read_text())
    assert body["images"] == 16 and body["known"] == 8
    assert body["engine_alone_images_per_s"]["fast"] > 0
    ours = body["runs"][0]
    assert ours["program"] == "faceledger fast" and ours["rc"] == 0
    assert ours["images_per_s"] > 0 and ours["enroll_per_s"] > 0
    assert ours["correct"] >= 6 and ours["wrong"] <= 1  # 8 mates among 8 strangers
    if peer:
        theirs = body["runs"][1]
        assert theirs["program"] == "face_recognition CLI" and theirs["rc"] == 0
        assert theirs["correct"] + theirs["wrong"] > 0
