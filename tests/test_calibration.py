"""Temperature scaling, conformal prediction sets and the abstain rule (artnet.evaluation.calibration, .conformal).

The data are synthetic and exchangeable: per painting, logits whose scale varies (some rows sure, some not), a
label drawn from softmax(logits) (so those probabilities are calibrated by construction), and the "served"
probabilities softmax(logits * T) of a head over-confident by a known T. Fresh draws stand in for a test split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from artnet import labels
from artnet.evaluation import calibration, conformal, metrics
from artnet.evaluation.report import format_report_markdown

TRUE_T = 2.5


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    exp = np.exp(z)
    return exp / exp.sum(axis=1, keepdims=True)


def _head(seed: int, n: int = 5000, classes: int = 6, t: float = TRUE_T):
    """(served probabilities, labels, the calibrated probabilities, the logits) of one synthetic head."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * rng.uniform(0.2, 3.0, size=(n, 1))
    calibrated = _softmax(logits)
    y = (calibrated.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return _softmax(logits * t), y, calibrated, logits


# --- temperature ---------------------------------------------------------------------------------------------


def test_fitted_temperature_recovers_a_known_over_confidence_and_lowers_ece():
    served, y, _, logits = _head(seed=0)
    t = calibration.fit_temperature(served, y)
    assert t == pytest.approx(TRUE_T, abs=0.15)
    # From logits the same T (log p and the logits differ by a constant per row).
    assert calibration.fit_temperature(logits * TRUE_T, y, logits=True) == pytest.approx(t, rel=1e-4)
    before = metrics.expected_calibration_error(y, served)
    after = metrics.expected_calibration_error(y, calibration.apply_temperature(served, t))
    assert before > 0.1 and after < 0.03 and after < before / 4
    # An under-confident head (T < 1) is found too.
    served, y, _, _ = _head(seed=1, t=0.5)
    assert calibration.fit_temperature(served, y) == pytest.approx(0.5, abs=0.05)


def test_apply_temperature_from_probabilities_is_softmax_of_logits_over_t():
    """The export serves probabilities: softmax(log p / T) must equal softmax(logits / T) exactly."""
    _, _, calibrated, logits = _head(seed=2, n=200)
    for t in (0.3, 1.0, 2.5, 20.0):
        np.testing.assert_allclose(calibration.apply_temperature(calibrated, t), _softmax(logits / t), atol=1e-12)
        np.testing.assert_allclose(calibration.apply_temperature(logits, t, logits=True), _softmax(logits / t))
    # A probability that underflowed to 0 stays finite and tiny instead of turning into nan.
    scaled = calibration.apply_temperature(np.array([[1.0, 0.0, 0.0]]), 2.0)
    assert np.isfinite(scaled).all() and scaled[0, 0] > 0.999999
    with pytest.raises(ValueError):
        calibration.apply_temperature(calibrated, 0.0)


def test_unknown_labels_are_masked_when_fitting_temperature():
    served, y, _, _ = _head(seed=3, n=2000)
    rng = np.random.default_rng(3)
    # 500 unknown rows, confidently wrong about every class: they would drag T up if they counted.
    noise = _softmax(rng.normal(size=(500, served.shape[1])) * 30)
    t = calibration.fit_temperature(served, y)
    mixed = calibration.fit_temperature(np.vstack([served, noise]), np.concatenate([y, np.full(500, -1)]))
    assert mixed == t


def test_temperature_edge_cases_stay_in_a_sane_range():
    served, y, _, _ = _head(seed=4, n=300)
    assert calibration.fit_temperature(served, np.full(300, -1)) == 1.0  # nothing known: leave it alone
    assert calibration.fit_temperature(np.full((50, 6), 1 / 6), np.zeros(50, dtype=int)) == 1.0  # T changes nothing
    low, high = calibration.T_BOUNDS
    right = calibration.fit_temperature(served, served.argmax(axis=1))  # every answer right: sharpen to the bound
    assert low <= right <= low * 1.01
    wrong = calibration.fit_temperature(served, (served.argmax(axis=1) + 1) % 6)  # every answer wrong: flatten
    assert high / 1.01 <= wrong <= high
    assert calibration.fit_temperature(served, served.argmax(axis=1), bounds=(0.5, 3.0)) == pytest.approx(0.5)


# --- conformal sets ------------------------------------------------------------------------------------------


def test_threshold_is_the_finite_sample_order_statistic():
    scores = np.arange(1, 100) / 100  # 0.01 .. 0.99, n = 99
    assert conformal.conformal_quantile(scores[:19], 0.9) == scores[17]  # ceil(20 * 0.9) = 18th smallest
    assert conformal.conformal_quantile(scores, 0.9) == scores[89]  # ceil(100 * 0.9) = 90th
    # 100 * 0.55 is 55.00000000000001 in floats: the rank must still be 55, not 56.
    assert conformal.conformal_quantile(scores, 0.55) == scores[54]
    assert conformal.conformal_quantile(scores[:5], 0.9) == np.inf  # ceil(6 * 0.9) = 6 > 5: no finite threshold
    assert conformal.conformal_quantile([], 0.9) == np.inf


def test_sets_cover_fresh_exchangeable_data_at_the_target():
    """Calibrated on one draw, the sets hold the true class of a fresh draw at the target, not far above it; over
    many draws the mean coverage is at least the target (the split-conformal guarantee)."""
    for method, scaled in (("aps", False), ("raps", False), ("aps", True), ("raps", True)):
        coverages = []
        for seed in range(8):  # the guarantee needs exchangeability, not calibrated probabilities: both are tried
            served, cal_y, calibrated, _ = _head(seed=100 + seed)
            cal_probs = calibrated if scaled else served
            served, test_y, calibrated, _ = _head(seed=200 + seed)
            test_probs = calibrated if scaled else served
            sets = conformal.fit_conformal(cal_probs, cal_y, coverage=0.9, method=method)
            assert sets.n == 5000 and sets.method == method
            coverage = conformal.set_coverage(conformal.prediction_set_mask(test_probs, sets), test_y)
            assert 0.885 <= coverage <= 0.93, (method, scaled, seed, coverage)
            coverages.append(coverage)
        assert np.mean(coverages) >= 0.897
        # The model alone is far from the target: the sets, not the top-1 answer, do the covering.
        assert np.mean(test_probs.argmax(axis=1) == test_y) < 0.7


def test_sets_grow_where_the_head_is_unsure_and_always_hold_the_top1_class():
    _, cal_y, cal_probs, _ = _head(seed=5)  # calibrated probabilities: the sets are fitted after T
    _, _, probs, _ = _head(seed=6)
    sets = conformal.fit_conformal(cal_probs, cal_y, coverage=0.9)
    mask = conformal.prediction_set_mask(probs, sets)
    size = mask.sum(axis=1)
    entropy = -(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=1)
    unsure, sure = entropy > np.quantile(entropy, 0.75), entropy < np.quantile(entropy, 0.25)
    assert size[unsure].mean() > 2 * size[sure].mean()
    assert size[sure].mean() < 2 and size[unsure].mean() > 4
    for coverage in (0.1, 0.5, 0.9, 0.99):
        mask = conformal.prediction_set_mask(probs, conformal.fit_conformal(cal_probs, cal_y, coverage))
        assert mask[np.arange(len(probs)), probs.argmax(axis=1)].all(), coverage
    # Lists name the top-1 first, then the rest by falling probability; ties go to the lower index, as argmax.
    listed = conformal.prediction_sets(probs[:50], sets)
    for row, members in zip(probs[:50], listed, strict=True):
        assert members[0] == row.argmax() and list(np.diff(row[members]) <= 0) == [True] * (len(members) - 1)
    tied = conformal.ConformalSets("aps", 0.9, qhat=0.0, n=1)
    assert conformal.prediction_sets(np.array([[0.4, 0.2, 0.4]]), tied) == [[0]]


def test_scores_by_hand_and_the_raps_penalty_caps_the_largest_sets():
    # Ranked 0 (.5), 2 (.3), 1 (.1), 3 (.1; a tie, the lower index first): mass at or above 0.5, 0.8, 0.9, 1.0,
    # and the top-1 class scores 0. RAPS adds lam per rank beyond k_reg (here 0, .1, .2, .3).
    row = np.array([[0.5, 0.1, 0.3, 0.1]])
    np.testing.assert_allclose(conformal.class_scores(row), [[0.0, 0.9, 0.8, 1.0]])
    np.testing.assert_allclose(conformal.class_scores(row, lam=0.1, k_reg=1), [[0.0, 1.1, 0.9, 1.3]])
    # On a ten-class head (the timeframe's size) the penalty trims the longest sets and keeps the coverage.
    _, cal_y, cal_probs, _ = _head(seed=20, classes=10)
    _, y, probs, _ = _head(seed=21, classes=10)
    sizes = {}
    for method in ("aps", "raps"):
        mask = conformal.prediction_set_mask(probs, conformal.fit_conformal(cal_probs, cal_y, 0.9, method))
        assert conformal.set_coverage(mask, y) >= 0.885
        sizes[method] = mask.sum(axis=1)
    assert sizes["raps"].max() < sizes["aps"].max() and sizes["raps"].mean() < sizes["aps"].mean()


def test_lower_coverage_gives_smaller_nested_sets():
    cal_probs, cal_y, _, _ = _head(seed=7)
    probs, y, _, _ = _head(seed=8)
    half = conformal.prediction_set_mask(probs, conformal.fit_conformal(cal_probs, cal_y, 0.5))
    most = conformal.prediction_set_mask(probs, conformal.fit_conformal(cal_probs, cal_y, 0.95))
    assert half.sum(axis=1).mean() < most.sum(axis=1).mean() - 1
    assert (half <= most).all()  # one threshold per coverage on the same scores: sets are nested
    assert conformal.set_coverage(most, y) >= 0.94
    # Where the top-1 answer alone beats the target, every set is that answer and coverage is its accuracy.
    singles = conformal.prediction_set_mask(probs, conformal.fit_conformal(cal_probs, cal_y, 0.2))
    assert (singles.sum(axis=1) == 1).all()


def test_unknown_labels_are_left_out_of_the_sets_calibration():
    probs, y, _, _ = _head(seed=9, n=1000)
    rng = np.random.default_rng(9)
    extra = _softmax(rng.normal(size=(300, 6)) * 5)
    plain = conformal.fit_conformal(probs, y, 0.9)
    mixed = conformal.fit_conformal(np.vstack([probs, extra]), np.concatenate([y, np.full(300, -1)]), 0.9)
    assert mixed == plain and mixed.n == 1000
    nothing = conformal.fit_conformal(probs, np.full(1000, -1), 0.9)
    assert nothing.qhat == np.inf and conformal.prediction_set_mask(probs[:3], nothing).all()
    assert conformal.set_coverage(np.ones((2, 6), dtype=bool), [-1, -1]) is None
    for bad in ({"coverage": 1.0}, {"coverage": 0.0}, {"method": "lac"}):
        with pytest.raises(ValueError):
            conformal.fit_conformal(probs, y, **bad)


def test_calibration_survives_json_and_gives_the_same_sets():
    served, y, _, _ = _head(seed=10, n=3000)
    fitted = calibration.calibrate_heads({"school": served}, {"school": y}, coverage=0.9, method="raps", lam=0.05)
    text = json.dumps(calibration.calibration_to_json(fitted))
    loaded = calibration.calibration_from_json(json.loads(text))
    assert loaded == fitted
    record = json.loads(text)["school"]
    assert record["conformal"]["method"] == "raps" and record["conformal"]["lam"] == 0.05
    assert loaded["school"].prediction_sets(served[:100]) == fitted["school"].prediction_sets(served[:100])
    # Too few calibration rows for the coverage: the threshold is infinite, stored as null, read back as inf.
    few = conformal.fit_conformal(served[:5], y[:5], 0.9)
    assert few.to_dict()["qhat"] is None and conformal.ConformalSets.from_dict(few.to_dict()).qhat == np.inf
    with pytest.raises(ValueError):
        conformal.ConformalSets.from_dict({**few.to_dict(), "method": "lac"})


def test_calibrate_from_an_evaluations_predictions(tmp_path):
    served, y, _, _ = _head(seed=11, n=2000)
    path = tmp_path / "predictions.npz"
    np.savez_compressed(path, school=served, school_true=y, year_true=np.full(2000, -1))
    fitted = calibration.calibrate_from_predictions(path, coverage=0.8)
    assert list(fitted) == ["school"]
    assert fitted["school"].temperature == pytest.approx(TRUE_T, abs=0.25)
    assert fitted["school"].sets.coverage == 0.8


# --- the answer a reader sees --------------------------------------------------------------------------------


def test_abstain_when_the_set_holds_more_than_one_class_and_name_the_set():
    assert conformal.describe_set([1], labels.SCHOOLS) == "Flemish"
    assert conformal.describe_set([0, 1], labels.SCHOOLS) == "Dutch or Flemish"
    assert conformal.describe_set([4, 0, 1], labels.SCHOOLS) == "Italian, Dutch or Flemish"  # as ranked
    # Timeframes read as ordered blocks, whatever order the set was ranked in.
    assert conformal.describe_set([5, 4, 6], labels.TIMEFRAMES) == "1601-1650, 1651-1700 or 1701-1750"
    assert conformal.describe_set([5, 4], labels.TIMEFRAMES, chronological=False) == "1651-1700 or 1601-1650"
    with pytest.raises(ValueError):
        conformal.describe_set([], labels.SCHOOLS)

    assert not conformal.should_abstain(1) and conformal.should_abstain(2)
    assert not conformal.should_abstain([3]) and conformal.should_abstain([3, 1])
    sets = conformal.ConformalSets("aps", 0.9, qhat=0.9, n=100)
    assert not conformal.should_abstain(np.array([0.9, 0.05, 0.05]), sets)  # 0.9 + 0.05 > 0.9: the set is {0}
    assert conformal.should_abstain(np.array([0.45, 0.4, 0.15]), sets)  # 0.45 + 0.4 <= 0.9 < 1.0: {0, 1}
    assert conformal.prediction_sets(np.array([[0.45, 0.4, 0.15]]), sets) == [[0, 1]]


# --- reporting -----------------------------------------------------------------------------------------------


def test_calibration_metrics_report_ece_before_and_after_coverage_and_set_size():
    cal_probs, cal_y, _, _ = _head(seed=12)
    probs, y, _, _ = _head(seed=13, n=3000)
    y[:200] = -1
    fitted = calibration.calibrate_head(cal_probs, cal_y, coverage=0.9)
    result = calibration.calibration_metrics(y, probs, fitted)
    json.dumps(result)  # plain JSON
    assert result["n"] == 2800 and result["coverage_target"] == 0.9 and result["method"] == "aps"
    assert result["ece_after"] < result["ece_before"] / 4
    assert 0.88 <= result["coverage"] <= 0.93
    assert 1.0 < result["mean_set_size"] < 6.0
    assert 0 < result["answered"] < 1 and result["answered_top1"] > 0.7  # sure answers are mostly right
    for key in ("reliability_before", "reliability_after"):
        assert sum(b["count"] for b in result[key]) == 2800
    assert result["reliability_before"] == metrics.reliability_bins(y, probs)


def test_the_report_has_a_calibration_section_only_when_given_one():
    probs, y, _, _ = _head(seed=14, n=500)
    head = {"n": 500, "top1": 0.5, "per_class_accuracy": {}}
    plain = {"model": "m", "heads": {"school": head}}
    text = format_report_markdown(plain)
    assert "Calibration" not in text
    fitted = calibration.calibrate_head(probs, y)
    with_section = {**plain, "calibration": {"school": calibration.calibration_metrics(y, probs, fitted)}}
    full = format_report_markdown(with_section)
    assert "## Calibration and prediction sets" in full
    row = _section(full, "## Calibration and prediction sets")[-1]
    assert f"| {fitted.temperature:.2f} |" in row and "| aps | 90.0% |" in row
    # Everything else is as before: the section is inserted, nothing moved or reworded.
    assert full.replace("\n".join(_section(full, "## Calibration and prediction sets")) + "\n", "") == text


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) - 1  # the blank line before the heading
    end = next((i for i in range(start + 2, len(lines)) if lines[i].startswith("## ")), len(lines)) - 1
    return lines[start:end]


def test_reliability_diagram_draws_the_calibrated_bins_over_the_raw_ones(tmp_path):
    from PIL import Image

    from artnet.evaluation import plots

    probs, y, _, _ = _head(seed=15, n=500)
    plots.plot_reliability_diagram(y, probs, tmp_path / "raw.png", "school")
    scaled = calibration.apply_temperature(probs, TRUE_T)
    plots.plot_reliability_diagram(y, probs, tmp_path / "both.png", "school", calibrated_probs=scaled)
    raw, both = (np.asarray(Image.open(tmp_path / name).convert("RGB")) for name in ("raw.png", "both.png"))
    assert raw.shape == both.shape and (raw != both).any()


def test_evaluate_reports_calibration_when_given_one(tmp_path):
    from artnet.data.synthetic import synthetic_source
    from artnet.evaluation.evaluate import evaluate
    from artnet.models.artnet import ArtNet

    source = synthetic_source(12, seed=2)
    model = ArtNet("tiny", image_size=32)
    sets = conformal.ConformalSets("aps", 0.9, qhat=0.6, n=100)
    given = {"school": calibration.HeadCalibration(2.0, sets)}
    report = evaluate(model, source, tmp_path / "with", calibration=given)
    assert list(report["calibration"]) == ["school"]
    assert report["calibration"]["school"]["temperature"] == 2.0
    assert json.loads((tmp_path / "with" / "report.json").read_text())["calibration"] == report["calibration"]
    assert "## Calibration and prediction sets" in (tmp_path / "with" / "report.md").read_text()
    # Every head's risk-coverage curve beside its reliability diagram, and its AURC beside the oracle's.
    for head in model.heads:
        assert (tmp_path / "with" / f"risk_coverage_{head}.png").is_file()
        values = report["heads"][head]
        assert values["aurc_oracle"] <= values["aurc"] + 1e-12 and values["aurc"] <= 1  # equal up to rounding
    plain = evaluate(model, source, tmp_path / "without")
    assert "calibration" not in plain
    assert "Calibration" not in (tmp_path / "without" / "report.md").read_text()
