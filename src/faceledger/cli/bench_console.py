"""``faceledger bench console``: review-queue delay and the keyboard flow, in chromium."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from faceledger.cli.bench import JsonFile, bench_app
from faceledger.cli.common import Offline, Profile, handle_errors
from faceledger.cli.render import err, out
from faceledger.config import load_config


@bench_app.command("console")
@handle_errors
def console(
    events: Annotated[
        int, typer.Option("--events", min=1, max=200, help="decided events to send")
    ] = 20,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, max=10, help="seconds between events")
    ] = 0.5,
    profile: Profile = None,
    json_file: JsonFile = None,
    offline: Offline = False,
) -> None:
    """What a reviewer gets from the operator console (needs chromium and Playwright).

    Starts `faceledger serve` on a temporary gallery and opens the review queue in
    chromium; records EVENTS decided tracks (one every INTERVAL seconds) and reports how
    long each took to appear in the open queue (target < 1 s); then confirms them all with
    the keyboard alone (Enter, then c for each) and reports the time per event.
    """
    from faceledger.bench.console import run_console_bench

    config = load_config(profile=profile, offline=offline or None)
    result = run_console_bench(config, events, interval, progress=err.print)
    if json_file is not None:
        json_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")
    out.print(
        f"{result.events} events, one every {result.interval_s:g} s: shown in the open queue "
        f"after p50 {result.latency_p50_s:.3f} s, p95 {result.latency_p95_s:.3f} s, max "
        f"{result.latency_max_s:.3f} s ({result.missed} missed)\n"
        f"keyboard: {result.keyboard_events} confirmed with {result.keyboard_keys} keys in "
        f"{result.keyboard_seconds:.1f} s ({result.keyboard_per_event_s:.3f} s per event; "
        f"{result.confirmed_by_reviewer} recorded as reviewer-1's)"
    )
