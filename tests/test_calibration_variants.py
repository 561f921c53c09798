"""experiments/calibration_variants.py on stored answers made up here: each source's temperature is fitted where
it says, the floor is never beaten, and a run without out-of-fold answers is refused with what to run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from artnet import labels
from artnet.evaluation.calibration import apply_temperature, calibrate_head, fit_temperature
from artnet.evaluation.conformal import prediction_set_mask, set_coverage
from artnet.evaluation.metrics import expected_calibration_error

ROOT = Path(__file__).resolve().parents[1]


def _experiment():
    spec = importlib.util.spec_from_file_location(
        "calibration_variants", ROOT / "experiments" / "calibration_variants.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _answers(rng, n: int, sharpness: float) -> dict:
    """Stored answers of every head: probabilities whose confidence `sharpness` over- or understates."""
    stored = {}
    for head, vocabulary in labels.VOCABULARIES.items():
        if head not in ("school", "timeframe", "type"):
            continue
        y = rng.integers(0, len(vocabulary), n)
        logits = rng.normal(0, 1, (n, len(vocabulary)))
        logits[np.arange(n), y] += 1.5
        y[: n // 10] = -1  # unknown labels are left out
        stored[head] = apply_temperature(logits * sharpness, 1.0, logits=True)
        stored[f"{head}_true"] = y
    stored["painter"] = np.asarray([f"painter {i % 20}" for i in range(n)])
    return stored


@pytest.fixture
def run(tmp_path):
    rng = np.random.default_rng(0)
    for name, sharpness in (("eval_validation/predictions.npz", 2.0), ("eval_test/predictions.npz", 0.7)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp_path / name, **_answers(rng, 400, sharpness))
    np.savez(tmp_path / "out_of_fold.npz", **_answers(rng, 600, 1.0))
    return tmp_path


def test_each_source_is_fitted_where_it_says_and_no_temperature_beats_the_floor(run):
    experiment = _experiment()
    rows, shares = experiment.head_rows(run, "school")
    by_source = {row["fitted on"]: row for row in rows}
    validation = experiment.answers(run / "eval_validation" / "predictions.npz", "school")
    test_probs, test_y = experiment.answers(run / "eval_test" / "predictions.npz", "school")
    assert (test_y >= 0).all() and len(test_y) == 360  # the unknown labels are gone
    assert by_source["validation alone"]["T"] == pytest.approx(fit_temperature(*validation))
    assert by_source["none (T = 1)"]["T"] == 1.0 and by_source["none (T = 1)"]["n fitted"] == 0
    assert by_source["validation + out-of-fold (served)"]["n fitted"] == 360 + 540
    # The validation answers are overconfident, the test answers underconfident: validation's T sharpens test.
    assert by_source["validation alone"]["T"] > 1 > by_source[experiment.FLOOR]["T"]
    floor = by_source[experiment.FLOOR]["test ECE"]
    assert all(row["test ECE"] >= floor for row in rows)
    for t in np.exp(np.linspace(-2, 2, 41)):  # nor does any other temperature, beyond the grid's spacing
        assert expected_calibration_error(test_y, apply_temperature(test_probs, t)) >= floor - 0.002
    assert shares["test"].sum() == pytest.approx(1.0) and shares["calibration"].sum() == pytest.approx(1.0)
    # Each fitted source also gives its 90 % sets' test coverage, inside its painter-resampling interval.
    calibration = calibrate_head(*validation)
    sets = prediction_set_mask(calibration.probabilities(test_probs), calibration.sets)
    row = by_source["validation alone"]
    assert row["coverage"] == pytest.approx(set_coverage(sets, test_y))
    assert row["coverage interval"][0] <= row["coverage"] <= row["coverage interval"][1]
    assert row["mean set size"] == pytest.approx(sets.sum(axis=1).mean())
    assert "coverage" not in by_source["none (T = 1)"] and "coverage" not in by_source[experiment.FLOOR]


def test_the_table_names_every_head_and_source(run, tmp_path, capsys):
    out = tmp_path / "results" / "variants.md"
    assert _experiment().main(["--run", str(run), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    for head in ("school", "timeframe", "type"):
        assert sum(line.startswith(f"| {head} |") for line in text.splitlines()) == 5
        assert f"- {head}: " in text


def test_a_run_without_out_of_fold_answers_is_refused_with_what_to_run(run, capsys):
    (run / "out_of_fold.npz").unlink()
    with pytest.raises(SystemExit) as refused:
        _experiment().main(["--run", str(run)])
    assert refused.value.code == 2
    said = capsys.readouterr().err
    assert "out_of_fold.npz is missing" in said and "artnet calibrate --workdir RUN --folds 5" in said
