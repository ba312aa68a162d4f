"""A search of a gallery is thresholded for the gallery's size: the false-positive
identification rate (FPIR) is what the strictness states, and one comparison may
false-match at FPIR / templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceledger import Acting, Operations, load_config
from faceledger.engine import Engine
from faceledger.models.catalog import get_card
from tests.conftest import SMOKE, need


def test_threshold_at_interpolates_in_log_rate_and_extrapolates_beyond() -> None:
    card = get_card("edgeface_xs")
    table = card.flip_thresholds
    assert card.threshold_at(1e-3, flip=True) == (table[1e-3], False)
    middle, beyond = card.threshold_at(10**-3.5, flip=True)
    assert middle == pytest.approx((table[1e-3] + table[1e-4]) / 2) and not beyond
    lowest = min(table)
    far, beyond = card.threshold_at(lowest / 10, flip=True)
    step = table[lowest] - table[lowest * 10]
    assert beyond and far == pytest.approx(table[lowest] + step)
    assert card.threshold_at(0.5, flip=True) == (table[max(table)], False)


def test_the_search_threshold_grows_with_the_gallery() -> None:
    engine = Engine(load_config(profile="fast", strictness="balanced"))
    one = engine.identification_threshold(1)
    assert one.value == engine.threshold.value and one.fpir == 1e-3 and one.templates == 1
    ten = engine.identification_threshold(10)
    assert ten.fmr == pytest.approx(1e-4)
    assert ten.value == pytest.approx(engine.embedder_card.thresholds[1e-4])
    big = engine.identification_threshold(100_000)
    assert big.fmr == pytest.approx(1e-8) and big.extrapolated and big.value > ten.value
    strict = Engine(load_config(profile="fast", strictness="strict"))
    assert strict.identification_threshold(10).value > ten.value


def test_an_answer_states_the_rate_for_its_gallery(tmp_path: Path) -> None:
    need(SMOKE)
    photos = sorted((SMOKE / "identities" / "deepface_id00").glob("*.jpg"))
    with Operations(load_config(profile="fast", db=tmp_path / "g.db")) as ops:
        me = Acting.os_user(purpose="test")
        ops.enroll(me, "ada", photos[:3], "test fixture")
        face = ops.identify(me, photos[4]).value.faces[0]
        assert ops.search_threshold.templates == 3
    assert face.match is not None and face.match.subject == "ada"
    threshold = face.match.threshold
    assert threshold.templates == 3 and threshold.fpir == 1e-3
    assert threshold.fmr == pytest.approx(1e-3 / 3)
    answer = face.to_dict()
    assert answer["threshold_fpir"] == 1e-3
    assert answer["threshold_fmr"] == pytest.approx(1e-3 / 3)
