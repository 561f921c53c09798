"""What a calibrated answer says: the set with its coverage ("Dutch or Flemish (90 % set)"), "cannot tell" when
the set holds more than half the classes, the seed's influence reading only where the heads are calibrated (with
what the numbers mean), and the card's calibration line. Plain functions of plain values: no model."""

from __future__ import annotations

import numpy as np
import pytest

from artnet import labels
from artnet.evaluation.calibration import HeadCalibration, calibration_to_json
from artnet.evaluation.conformal import ConformalSets, cannot_tell
from artnet.serving.cards import (
    INFLUENCE_MEANING,
    TITLES,
    calibration_line,
    confidence_note,
    head_title,
    model_card_markdown,
)
from artnet.serving.model_card import hub_readme, write_readme

SCHOOLS = labels.VOCABULARIES["school"]
TIMEFRAMES = labels.VOCABULARIES["timeframe"]


def _result(school_set, timeframe_set, type_set=("portrait",)):
    """A calibrated prediction: a ranking per head (the set's classes first) and the sets."""
    result = {
        "school": [("French", 0.6), ("German", 0.4), ("Dutch", 0.0)],
        "timeframe": [(name, 0.1) for name in TIMEFRAMES[:3]],
        "type": [("portrait", 0.8), ("genre", 0.1), ("landscape", 0.05)],
    }
    result["sets"] = {"school": list(school_set), "timeframe": list(timeframe_set), "type": list(type_set)}
    return result


def test_cannot_tell_is_more_than_half_the_classes():
    assert not cannot_tell(3, 6) and cannot_tell(4, 6)  # school: 6 classes
    assert not cannot_tell(5, 10) and cannot_tell(6, 10)  # timeframe: 10 blocks
    assert not cannot_tell(3, 7) and cannot_tell(4, 7)  # type: 7 classes
    np.testing.assert_array_equal(cannot_tell(np.array([1, 3, 4, 6]), 6), [False, False, True, True])


def test_a_calibrated_title_names_the_set_and_its_coverage():
    ranked = [("Dutch", 0.55), ("Flemish", 0.35)]
    assert head_title("school", ranked, ["Dutch", "Flemish"], 0.9) == f"{TITLES['school']}: Dutch or Flemish (90 % set)"
    assert head_title("school", ranked, ["Dutch"], 0.8) == f"{TITLES['school']}: Dutch (80 % set)"
    # Timeframes read in time order whatever their rank.
    title = head_title("timeframe", [], [TIMEFRAMES[5], TIMEFRAMES[4]], 0.9)
    assert title.endswith(f"{TIMEFRAMES[4]} or {TIMEFRAMES[5]} (90 % set)")


def test_a_set_of_more_than_half_the_classes_says_cannot_tell_and_keeps_the_ranking():
    chosen = list(TIMEFRAMES[:6])
    title = head_title("timeframe", [(TIMEFRAMES[0], 0.2)], chosen, 0.9)
    assert "cannot tell" in title and "6 of 10" in title and TIMEFRAMES[1] not in title
    note = confidence_note(labels.HEADS, _result(["French"], chosen), 0.9)
    assert "timeframe: cannot tell" in note and "school: French (90 % set)" in note
    half = list(TIMEFRAMES[:5])  # exactly half is still a set worth naming
    assert "cannot tell" not in head_title("timeframe", [(TIMEFRAMES[0], 0.2)], half, 0.9)


def test_an_uncalibrated_title_is_as_before():
    assert head_title("school", [("Dutch", 0.7)]) == f"{TITLES['school']}: Dutch (70 %)"
    assert head_title("school", [("Dutch", 0.3)]) == f"{TITLES['school']}: unsure (best guess Dutch, 30 %)"


def test_the_influence_reading_comes_only_with_calibrated_heads_and_says_what_it_means():
    calibrated = confidence_note(labels.HEADS, _result(["French", "German"], [TIMEFRAMES[0]]), 0.9)
    assert "60 % French, 40 % German" in calibrated and INFLUENCE_MEANING in calibrated
    assert calibrated.count(INFLUENCE_MEANING) == 1
    # One school: no mix to read; a "cannot tell" school: nothing worth reading as influence.
    assert INFLUENCE_MEANING not in confidence_note(labels.HEADS, _result(["French"], [TIMEFRAMES[0]]), 0.9)
    many = _result(list(SCHOOLS[:4]), [TIMEFRAMES[0]])
    assert INFLUENCE_MEANING not in confidence_note(labels.HEADS, many, 0.9)
    uncalibrated = _result(["French", "German"], [TIMEFRAMES[0]])
    del uncalibrated["sets"]
    plain = confidence_note(labels.HEADS, uncalibrated)
    assert INFLUENCE_MEANING not in plain and "influence" not in plain and "%" in plain


CALIBRATION = {
    "school": HeadCalibration(1.5, ConformalSets("aps", 0.9, 0.8, 500)),
    "timeframe": HeadCalibration(0.75, ConformalSets("aps", 0.9, 0.7, 500)),
}


def test_the_cards_calibration_line():
    line = calibration_line(calibration_to_json(CALIBRATION))
    assert "calibrated on the validation paintings" in line and "school 1.50" in line and "timeframe 0.75" in line
    assert "90.0 % prediction set" in line
    for nothing in (None, {}, "calibrated!", {"painter": {"temperature": 2}}):
        assert "uncalibrated" in calibration_line(nothing)
    # Data, not markup: a crafted temperature is not shown.
    crafted = calibration_line({"school": {"temperature": "<b>9</b>", "conformal": {"coverage": 7}}})
    assert "<b>" not in crafted and "not recorded" in crafted and "a prediction set" in crafted
    card = {"backbone": "tiny", "heads": ["school"], "calibration": None}
    assert "uncalibrated" in model_card_markdown(card)
    assert "Calibration" not in model_card_markdown({"backbone": "tiny", "heads": ["school"]})


def test_the_hub_readme_says_calibrated_uncalibrated_or_where_it_lives(tmp_path):
    card = {"backbone": "tiny", "heads": ["school", "timeframe"], "image_size": 32}
    stated = write_readme(tmp_path / "a", card, calibration=CALIBRATION).read_text()
    assert "calibrated on the validation paintings" in stated and "school 1.50" in stated
    plain = write_readme(tmp_path / "b", card, calibration=None).read_text()
    assert "**Calibration:** uncalibrated" in plain
    unstated = hub_readme(card)
    assert "only where `calibration.json` sits beside the model" in unstated


@pytest.mark.parametrize("coverage", [0.8, 0.95])
def test_the_note_states_the_coverage_it_was_given(coverage):
    note = confidence_note(labels.HEADS, _result(["French"], [TIMEFRAMES[0]]), coverage)
    assert f"({100 * coverage:.0f} % set)" in note and f"for {100 * coverage:.0f} % of paintings" in note
