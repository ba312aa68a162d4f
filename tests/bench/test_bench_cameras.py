"""`faceledger bench cameras` itself, briefly: two 360p cameras, one node against two watch
processes, on real HTTP MPEG-TS servers; the JSON holds what the issue asks for, and
nobody is named wrongly."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from faceledger.cli.main import app
from tests.conftest import LFW, MODELS, need

KEYS = {"cameras", "live", "lag_p95_s", "dropped_ticks_pct", "cpu_per_camera", "baseline_live"}


def test_bench_cameras_compares_a_node_with_separate_watch_processes(tmp_path: Path) -> None:
    need(MODELS)
    need(LFW)
    out = tmp_path / "cameras.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "cameras",
            "--cameras",
            "2",
            "--seconds",
            "5",
            "--height",
            "360",
            "--data",
            str(LFW),
            "--json",
            str(out),
            "--offline",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report.keys() >= KEYS
    run = report["runs"][0]
    assert run["cameras"] == 2 and run["baseline"]["cameras"] == 2
    for mode in (run, run["baseline"]):
        assert mode["named_wrongly"] == 0, mode["wrong"]
        assert mode["named_rightly"] > 0
        assert mode["cpu_per_camera"] > 0
    # purpose limitation: the node never names the person enrolled on no list of its cameras
    assert run["named_off_list"] == 0
    print(json.dumps({k: report[k] for k in KEYS}))
