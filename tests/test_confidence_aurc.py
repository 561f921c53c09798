"""Answers that know when to abstain: the risk-coverage curve and its area (AURC) per head, beside the oracle's,
in the report and in the evaluation's figures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from artnet.evaluation import metrics
from artnet.evaluation.calibration import HeadCalibration, calibration_metrics
from artnet.evaluation.conformal import ConformalSets
from artnet.evaluation.plots import plot_risk_coverage
from artnet.evaluation.report import format_report_markdown


def _probs(confidence, predicted, classes: int = 3) -> np.ndarray:
    """Rows whose top-1 class is `predicted` with probability `confidence` (the rest spread evenly)."""
    rows = np.tile((1 - np.asarray(confidence, dtype=float))[:, None] / (classes - 1), (1, classes))
    rows[np.arange(len(rows)), predicted] = confidence
    return rows


def test_aurc_by_hand():
    # Most confident first: right, wrong, right, wrong. Risk among the k answered: 0, 1/2, 1/3, 2/4.
    probs = _probs([0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0])
    y = np.array([0, 1, 0, 2])
    coverage, risk = metrics.risk_coverage_curve(y, probs)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 1 / 2, 1 / 3, 2 / 4])
    assert metrics.aurc(y, probs) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    # The oracle answers both right ones first: risk 0, 0, 1/3, 2/4.
    assert metrics.oracle_aurc(y, probs) == pytest.approx((1 / 3 + 2 / 4) / 4)


def test_tied_confidences_are_answered_together():
    probs = _probs([0.9, 0.9, 0.7, 0.6], [0, 0, 0, 0])
    y = np.array([0, 1, 0, 2])
    coverage, risk = metrics.risk_coverage_curve(y, probs)
    np.testing.assert_allclose(coverage, [0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [1 / 2, 1 / 3, 2 / 4])
    assert metrics.aurc(y, probs) == pytest.approx(0.5 * 1 / 2 + 0.25 * 1 / 3 + 0.25 * 2 / 4)


def test_a_perfect_ranking_reaches_the_oracle_and_a_reversed_one_is_worse():
    rng = np.random.default_rng(0)
    n = 200
    right = rng.random(n) < 0.6
    y = np.where(right, 0, 1)
    perfect = _probs(np.where(right, 0.5 + 0.4 * rng.random(n), 0.35 + 0.1 * rng.random(n)), np.zeros(n, int))
    reversed_ = _probs(np.where(right, 0.35 + 0.1 * rng.random(n), 0.5 + 0.4 * rng.random(n)), np.zeros(n, int))
    oracle = metrics.oracle_aurc(y, perfect)
    assert metrics.aurc(y, perfect) == pytest.approx(oracle, abs=1e-12)
    assert metrics.oracle_aurc(y, reversed_) == pytest.approx(oracle)  # same answers, same oracle
    assert metrics.aurc(y, reversed_) > metrics.aurc(y, perfect) + 0.3
    # A random ranking lies in between, near the overall error rate.
    shuffled = _probs(0.35 + 0.5 * rng.random(n), np.zeros(n, int))
    assert oracle < metrics.aurc(y, shuffled) < metrics.aurc(y, reversed_)


def test_unknown_labels_are_left_out_and_none_known_gives_none():
    probs = _probs([0.9, 0.8, 0.7], [0, 0, 0])
    assert metrics.aurc([0, -1, 1], probs) == pytest.approx(metrics.aurc([0, 1], probs[[0, 2]]))
    assert metrics.aurc([-1, -1, -1], probs) is None and metrics.oracle_aurc([-1, -1, -1], probs) is None


def test_the_report_shows_aurc_beside_the_oracle_and_after_temperature():
    probs = _probs([0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], classes=6)
    y = np.array([0, 1, 0, 2])
    head = metrics.head_metrics(y, probs, [f"c{i}" for i in range(6)], 0)
    assert "## Risk against coverage" not in format_report_markdown({"heads": {"school": head}})  # old reports
    head.update(aurc=metrics.aurc(y, probs), aurc_oracle=metrics.oracle_aurc(y, probs))  # as `evaluate` adds them
    calibration = calibration_metrics(y, probs, HeadCalibration(2.0, ConformalSets("aps", 0.9, 0.95, 100)))
    assert calibration["aurc_oracle"] == pytest.approx(head["aurc_oracle"])  # T keeps every answer
    assert calibration["aurc_before"] == pytest.approx(head["aurc"])
    text = format_report_markdown({"heads": {"school": head}, "calibration": {"school": calibration}})
    row = next(line for line in text.split("## Risk against coverage")[1].splitlines() if line.startswith("| school"))
    assert row == f"| school | 4 | 50.0% | {head['aurc']:.3f} | {head['aurc_oracle']:.3f} |"
    assert "AURC after T" in text and "cannot tell" in text


def test_the_risk_coverage_figure_is_drawn(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5), size=80)
    y = rng.integers(0, 5, size=80)
    path = tmp_path / "risk_coverage_school.png"
    plot_risk_coverage(y, probs, path, "school", calibrated_probs=probs**2 / (probs**2).sum(1, keepdims=True))
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100
