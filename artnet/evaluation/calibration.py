"""Honest confidence per head: temperature scaling, the calibration an export stores, and how it scores on a split.

This module owns the temperature and the per-head record built around it. `fit_temperature` finds the one scalar
T > 0 that minimises a head's negative log-likelihood on a calibration split (validation, painter-disjoint in
practice; -1 labels masked); `apply_temperature` rescales probabilities with it. It works from probabilities
because an export serves softmax probabilities, not logits: log p differs from the logits by a per-row constant,
which softmax ignores, so softmax(log p / T) is exactly softmax(logits / T). `calibrate_heads` fits, per head, T
and then the conformal set rule (`conformal`) on the rescaled probabilities, the ones serving will show;
`HeadCalibration` is that pair, stored as plain JSON beside the model. `calibration_metrics` reports what it does
on a labelled split (ECE and reliability bins before and after T, empirical coverage and set size), for the
evaluation report. Strictly, the conformal guarantee wants T fixed before the calibration rows are seen; fitting
one scalar on the same rows moves coverage by a negligible amount (the tests measure it on fresh data).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from artnet import labels
from artnet.evaluation import conformal, metrics

# A sane range for T: below it a head is declared certain of everything, above it of nothing. Fits that run into
# a bound (e.g. every calibration answer right, where the likelihood keeps rising as T falls) stop there.
T_BOUNDS = (0.05, 20.0)
# log p is floored where p underflowed to 0 (float32 softmax of a gap beyond ~87 nats): a finite logit, so that
# neither the likelihood nor the rescaled row holds -inf or nan.
_LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))


def _logits(scores, logits: bool) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n, classes), got shape {scores.shape}")
    if logits:
        return scores
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(scores), _LOG_FLOOR)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    exp = np.exp(z)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(scores, y_true, logits: bool = False, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The T in `bounds` minimising the mean NLL of softmax(z / T) over the rows with a known label.

    `scores` are probabilities (z = log p), or logits with `logits=True`. 1.0 when no label is known or no row
    tells one class from another (T changes nothing then). Brent's bounded search runs on log T, where the
    likelihood is unimodal (it is convex in 1 / T) and a factor of 2 either way weighs the same.
    """
    from scipy.optimize import minimize_scalar  # only fitting needs scipy; serving only applies T
    from scipy.special import logsumexp

    z = _logits(scores, logits)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if len(y_true) != len(z):
        raise ValueError(f"length mismatch: {len(z)} rows for {len(y_true)} labels")
    known = y_true >= 0
    z, y = z[known], y_true[known]
    if not len(y) or not np.ptp(z, axis=1).any():
        return 1.0
    if y.max() >= z.shape[1]:
        raise ValueError(f"label {y.max()} outside [0, {z.shape[1]})")
    true_z = z[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        inverse = np.exp(-log_t)
        return float(np.mean(logsumexp(z * inverse, axis=1) - true_z * inverse))

    low, high = bounds
    if not 0 < low < high:
        raise ValueError(f"bounds must be 0 < low < high, got {bounds}")
    result = minimize_scalar(nll, bounds=(np.log(low), np.log(high)), method="bounded", options={"xatol": 1e-5})
    # Brent never evaluates the bounds themselves; a likelihood still improving there stops exactly on one.
    candidates = (float(result.x), float(np.log(low)), float(np.log(high)))
    best = min(candidates, key=nll)
    return float(np.clip(np.exp(best), low, high))


def apply_temperature(scores, temperature: float, logits: bool = False) -> np.ndarray:
    """softmax(z / T), z = log p (or the logits with `logits=True`): the probabilities a calibrated head shows."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return _softmax(_logits(scores, logits) / float(temperature))


@dataclasses.dataclass(frozen=True)
class HeadCalibration:
    """One head's calibration: its temperature and the set rule fitted on the probabilities rescaled by it."""

    temperature: float
    sets: conformal.ConformalSets

    def probabilities(self, probs) -> np.ndarray:
        """The served probabilities, rescaled by T."""
        return apply_temperature(probs, self.temperature)

    def prediction_sets(self, probs) -> list[list[int]]:
        """Each row's conformal set (most probable first), from the served (unscaled) probabilities."""
        return conformal.prediction_sets(self.probabilities(probs), self.sets)

    def to_dict(self) -> dict:
        return {"temperature": float(self.temperature), "conformal": self.sets.to_dict()}

    @classmethod
    def from_dict(cls, record: dict, classes: int | None = None) -> HeadCalibration:
        """The calibration stored by `to_dict`, checked (ValueError saying which field): a finite temperature > 0
        and a valid set rule (`conformal.ConformalSets.from_dict`; `classes`, the head's class count)."""
        if not isinstance(record, dict):
            raise ValueError(f"a head's calibration is a {type(record).__name__}, not an object")
        temperature = record.get("temperature")
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        return cls(float(temperature), conformal.ConformalSets.from_dict(record.get("conformal"), classes))


def calibrate_head(
    probs, y_true, coverage: float = conformal.DEFAULT_COVERAGE, method: str = "aps", **set_options
) -> HeadCalibration:
    """T on `probs` and `y_true` (a calibration split), then the set rule on the probabilities rescaled by T.

    `set_options` (lam, k_reg) go to `conformal.fit_conformal`.
    """
    temperature = fit_temperature(probs, y_true)
    scaled = apply_temperature(probs, temperature)
    return HeadCalibration(temperature, conformal.fit_conformal(scaled, y_true, coverage, method, **set_options))


def calibrate_heads(
    probabilities: dict, y_true: dict, coverage: float = conformal.DEFAULT_COVERAGE, method: str = "aps", **options
) -> dict[str, HeadCalibration]:
    """`calibrate_head` for every head in `probabilities` (keyed by head; `y_true` likewise), in head order."""
    return {
        head: calibrate_head(probabilities[head], y_true[head], coverage, method, **options)
        for head in probabilities
        if head in y_true
    }


def calibrate_from_predictions(
    path: str | Path,
    coverage: float = conformal.DEFAULT_COVERAGE,
    method: str = "aps",
    also: dict | None = None,
    **options,
) -> dict[str, HeadCalibration]:
    """Per head, the calibration fitted on an evaluation's `predictions.npz` (run it on the validation split):
    it holds each head's probabilities under the head's name and its labels under `<head>_true` (a year head's
    `year` and `year_true` are no classes, and are left out). `also`: more answers in the same layout, pooled
    before the file's (the training painters' out-of-fold answers, `artnet.training.cross_fit`); the heads are
    then those both hold."""
    with np.load(path) as saved:
        heads = [key for key in saved.files if key in labels.HEADS and f"{key}_true" in saved.files]
        probabilities = {head: saved[head] for head in heads}
        truth = {head: saved[f"{head}_true"] for head in heads}
    if also is not None:
        heads = [head for head in heads if head in also and f"{head}_true" in also]
        probabilities = {head: np.concatenate([also[head], probabilities[head]]) for head in heads}
        truth = {head: np.concatenate([also[f"{head}_true"], truth[head]]) for head in heads}
    return calibrate_heads(probabilities, truth, coverage, method, **options)


def calibration_to_json(calibrations: dict[str, HeadCalibration]) -> dict:
    """Per head, plain JSON (what an export stores beside its labels)."""
    return {head: calibration.to_dict() for head, calibration in calibrations.items()}


def calibration_from_json(record, source: str = "calibration.json") -> dict[str, HeadCalibration]:
    """Per head, the calibration of `calibration_to_json`'s record: a JSON object of class heads only, each
    checked (`HeadCalibration.from_dict`); anything else is a ValueError naming `source` (the file it came from),
    the head and the field, since serving a crafted temperature or threshold would show wrong confidence."""
    if not isinstance(record, dict):
        kind = type(record).__name__
        raise ValueError(f"{source} holds a {kind}, not a JSON object of heads: export the model again")
    calibrations = {}
    for head, value in record.items():
        if head not in labels.VOCABULARIES:
            raise ValueError(
                f"{source}: unknown head {head!r} (the calibrated heads are {', '.join(labels.VOCABULARIES)}): "
                "export the model again"
            )
        try:
            calibrations[head] = HeadCalibration.from_dict(value, len(labels.VOCABULARIES[head]))
        except ValueError as error:
            raise ValueError(f"{source}: head {head!r}: {error}: export the model again") from None
    return calibrations


def calibration_metrics(y_true, probs, calibration: HeadCalibration) -> dict:
    """What the calibration does on a labelled split (JSON-ready), over the n rows with a known label.

    ECE and reliability bins (`metrics`) before and after T; `coverage`: the share of sets holding the true class,
    against `coverage_target`; `mean_set_size`; `answered`: the share of single-class sets (answers that do not
    abstain) and `answered_top1`, the accuracy of those answers (None without any); `cannot_tell`: the share of
    sets holding more than half the classes (`conformal.cannot_tell`); the AURC (`metrics.aurc`) before and after
    T, and the oracle's (T never changes the top-1 answer, so one oracle serves both).
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    scaled = calibration.probabilities(probs)
    known = y_true >= 0
    mask = conformal.prediction_set_mask(scaled[known], calibration.sets)
    sizes = mask.sum(axis=1)
    single = sizes == 1
    right = scaled[known].argmax(axis=1) == y_true[known]
    n = int(known.sum())
    return {
        "n": n,
        "temperature": float(calibration.temperature),
        "ece_before": metrics.expected_calibration_error(y_true, probs),
        "ece_after": metrics.expected_calibration_error(y_true, scaled),
        "reliability_before": metrics.reliability_bins(y_true, probs),
        "reliability_after": metrics.reliability_bins(y_true, scaled),
        "method": calibration.sets.method,
        "coverage_target": float(calibration.sets.coverage),
        "coverage": conformal.set_coverage(mask, y_true[known]),
        "mean_set_size": float(sizes.mean()) if n else None,
        "answered": float(single.mean()) if n else None,
        "answered_top1": float(right[single].mean()) if single.any() else None,
        "cannot_tell": float(np.mean(conformal.cannot_tell(sizes, probs.shape[1]))) if n else None,
        "aurc_before": metrics.aurc(y_true, probs),
        "aurc_after": metrics.aurc(y_true, scaled),
        "aurc_oracle": metrics.oracle_aurc(y_true, scaled),
    }
