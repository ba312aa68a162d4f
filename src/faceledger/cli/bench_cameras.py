"""``faceledger bench cameras``: live cameras per node, against separate watch processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli.bench import Data, JsonFile, bench_app
from faceledger.cli.common import Offline, Profile, handle_errors
from faceledger.cli.render import err, out
from faceledger.config import load_config
from faceledger.errors import ConfigError


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--cameras {text!r}: give a count or counts, e.g. 8 or 4,8,12") from None
    if not counts or any(not 1 <= c <= 64 for c in counts):
        raise ConfigError(f"--cameras {text!r}: counts from 1 to 64")
    return counts


@bench_app.command("cameras")
@handle_errors
def cameras(
    cameras: Annotated[
        str, typer.Option("--cameras", help="cameras to run: a count, or several (4,8,12)")
    ] = "8",
    detect_fps: Annotated[
        float, typer.Option("--detect-fps", min=0.5, max=30, help="detections per second")
    ] = 5.0,
    seconds: Annotated[
        float, typer.Option("--seconds", min=5, max=3600, help="measured seconds per run")
    ] = 30.0,
    height: Annotated[int, typer.Option("--height", help="stream height: 720 or 360")] = 720,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="also run N watch processes")
    ] = True,
    data: Data = Path("../shared/datasets/lfw"),
    profile: Profile = "fast",
    json_file: JsonFile = None,
    offline: Offline = False,
) -> None:
    """How many live 720p cameras one node keeps up with, against N `watch` processes.

    Each camera is a real HTTP MPEG-TS server looping a synthetic clip of LFW people
    (known identities; some enrolled on the cameras' watch list, one enrolled on no list,
    one stranger). For each count, one `faceledger node` runs every camera, then as many
    separate `faceledger watch` processes do, on the same streams. A camera is live when
    its lag p95 is under 1 s and under 5% of its detection ticks were dropped. Reports lag,
    dropped ticks, CPU per camera and who was named. Example:
    faceledger bench cameras --cameras 4,8,12 --profile fast --json cameras.json
    """
    from faceledger.bench.cameras import run_cameras_bench

    config = load_config(profile=profile, offline=offline or None)
    result = run_cameras_bench(
        config, _counts(cameras), lfw_images=data / "images", detect_fps=detect_fps,
        seconds=seconds, height=height, baseline=baseline, progress=err.print,
    )  # fmt: skip
    report = result.as_json()
    if json_file is not None:
        json_file.write_text(json.dumps(report, indent=2) + "\n")
    for run in report["runs"]:
        watch = run.get("baseline") or {}
        out.print(
            f"{run['cameras']} cameras: node live {run['live']} (lag p95 {run['lag_p95_s']} s, "
            f"{run['dropped_ticks_pct']}% ticks dropped, {run['cpu_per_camera']} cores/camera, "
            f"named rightly {run['named_rightly']}, wrongly {run['named_wrongly']}); "
            f"watch live {run.get('baseline_live')} (lag p95 {watch.get('lag_p95_s')} s, "
            f"{watch.get('dropped_ticks_pct')}% dropped, {watch.get('cpu_per_camera')} "
            "cores/camera)"
        )
    out.print(
        f"largest live: node {report['largest_live']}, watch processes "
        f"{report['baseline_largest_live']}"
    )
