"""`faceledger bench console` itself, briefly: every event reaches the open queue, and the
keyboard flow confirms them all as the signed-in reviewer."""

from __future__ import annotations

from faceledger.bench.console import run_console_bench
from faceledger.config import load_config
from tests.conftest import MODELS, need
from tests.web.conftest import need_browser


def test_bench_console_measures_the_queue_delay_and_the_keyboard_flow() -> None:
    need_browser()
    need(MODELS)
    result = run_console_bench(load_config(profile="fast", offline=True), events=4, interval_s=0.2)
    assert (result.events, result.missed) == (4, 0)
    assert 0 < result.latency_p50_s <= result.latency_max_s < 10
    assert result.keyboard_events == result.confirmed_by_reviewer == 4
    assert result.keyboard_keys == 2 + 4  # j, Enter, then c for each
    print(result.as_json())
