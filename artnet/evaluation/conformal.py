"""Split-conformal prediction sets per head, and the abstain rule they give: answers that say how sure they are.

This module owns the sets: `fit_conformal` reads a head's (temperature-scaled) softmax outputs and labels on a
calibration split (validation, painter-disjoint in practice; -1 labels are left out) and keeps one threshold,
`qhat`, such that on new paintings exchangeable with that split the set `prediction_sets` returns holds the true
class with at least the chosen probability (`coverage`, default 90 %). The score is APS (the probability mass of
the classes ranked at or above the true one), or RAPS (plus `lam` per rank beyond `k_reg`, which trims the longest
sets of a head with many classes), so sets grow where the head is unsure. It is the non-randomised variant and the
top-1 class scores 0, at calibration as at prediction, so that serving gives the same set for the same image and
never an empty one, with the guarantee intact; the price is over-coverage where the head's top-1 accuracy alone
exceeds the target (every set is then the top-1 class and coverage is that accuracy), and sets a little larger
than randomised APS. `should_abstain` replaces a fixed "unsure below a probability": an answer is unsure when its
set holds more than one class, and `describe_set` names the set ("Dutch or Flemish"). It is numpy only, so that
serving can load it from an export's JSON. Written here rather than wrapped: MAPIE (1.6) and crepes (0.9.1) know
neither masks nor several heads, and what they would add is one order statistic, while the score, which serving
must reproduce, is ours either way; MAPIE also wants an estimator to call, randomises its APS calibration scores
whatever the set rule at prediction (so its threshold does not fit a deterministic rule) and keeps the threshold in
private attributes; crepes has no APS score, keeps every calibration score rather than a threshold, and smooths
its p-values at random by default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from artnet import labels

DEFAULT_COVERAGE = 0.9
METHODS = ("aps", "raps")
# RAPS defaults: a small penalty per class beyond the first; the RAPS paper tunes both on held-out data.
RAPS_LAM = 0.01
RAPS_K_REG = 1
# (n + 1) * coverage is a product of floats: 100 * 0.55 is 55.00000000000001, whose ceiling would skip a rank.
_RANK_SLACK = 1e-9


@dataclasses.dataclass(frozen=True)
class ConformalSets:
    """A head's calibrated set rule: a class is in the set when its score is at most `qhat` (inf: every class).

    `n` is the number of calibration examples with a known label; `coverage` the promised share of sets that
    hold the true class. `lam` and `k_reg` are RAPS' penalty (0 and 0 for APS).
    """

    method: str
    coverage: float
    qhat: float
    n: int
    lam: float = 0.0
    k_reg: int = 0

    def to_dict(self) -> dict:
        """Plain JSON (qhat None for inf: too few calibration examples for the coverage, every class is kept)."""
        record = dataclasses.asdict(self)
        record["qhat"] = None if math.isinf(self.qhat) else float(self.qhat)
        return record

    @classmethod
    def from_dict(cls, record: dict, classes: int | None = None) -> ConformalSets:
        """The rule stored by `to_dict`, checked field by field (the record is data read from an export, and a
        crafted one must be refused here, not fail later as a wrong set): ValueError saying which field.
        `classes`: the head's class count, which bounds RAPS' largest possible score."""
        if not isinstance(record, dict):
            raise ValueError(f"the conformal record is a {type(record).__name__}, not an object")
        if record.get("method") not in METHODS:
            raise ValueError(f"unknown conformal method {record.get('method')!r}; the methods are {METHODS}")
        coverage = check_coverage(_real(record.get("coverage"), "coverage"))
        n = _real(record.get("n"), "n")
        if n < 0 or n != int(n):
            raise ValueError(f"n must be a whole number >= 0, got {record.get('n')!r}")
        lam, k_reg = _real(record.get("lam", 0.0), "lam"), _real(record.get("k_reg", 0), "k_reg")
        if lam < 0 or k_reg < 0 or k_reg != int(k_reg):
            raise ValueError(f"lam must be >= 0 and k_reg a whole number >= 0, got {lam} and {record.get('k_reg')!r}")
        qhat = record.get("qhat")
        qhat = math.inf if qhat is None else _real(qhat, "qhat")
        # Every score lies in [0, 1] (a probability mass) plus RAPS' penalty, at most lam per rank: a threshold
        # outside that range is no threshold a fit can give.
        highest = 1.0 + lam * max((classes or 0) - k_reg, 0) if classes else math.inf
        if not math.isinf(qhat) and not 0.0 <= qhat <= highest + _RANK_SLACK:
            raise ValueError(f"qhat must lie in [0, {highest:g}] (or be null: every class), got {qhat}")
        return cls(record["method"], coverage, qhat, int(n), lam, int(k_reg))


def _real(value, name: str) -> float:
    """A finite number (not a boolean, a string or NaN), or ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _as_probs(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, classes), got shape {probs.shape}")
    return probs


def class_scores(probs, lam: float = 0.0, k_reg: int = 0) -> np.ndarray:
    """Every class's non-conformity score, (n, classes) in class order: the mass of the classes ranked at or above
    it, plus `lam` per rank beyond `k_reg` (RAPS), and 0 for the top-1 class (so it is always in the set).

    Ties are ranked lower index first (a stable sort), as `np.argmax` breaks them, so the class forced into the
    set is the one the head answers.
    """
    probs = _as_probs(probs)
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    scores_ranked = np.cumsum(ranked, axis=1)
    if lam:
        ranks = np.arange(1, probs.shape[1] + 1)
        scores_ranked = scores_ranked + lam * np.maximum(ranks - k_reg, 0)
    scores_ranked[:, 0] = 0.0
    scores = np.empty_like(scores_ranked)
    np.put_along_axis(scores, order, scores_ranked, axis=1)
    return scores


def conformal_quantile(scores, coverage: float) -> float:
    """The ceil((n + 1) * coverage)-th smallest score (the split-conformal finite-sample rule), inf when that rank
    exceeds n: with so few examples no finite threshold can promise the coverage."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    rank = math.ceil((len(scores) + 1) * coverage - _RANK_SLACK)
    return math.inf if rank > len(scores) else float(scores[rank - 1])


def check_coverage(coverage) -> float:
    """A coverage a user gives (an argument, a flag, a stored record) as a float in (0, 1), or ValueError saying
    so: 0 would promise nothing, 1 every class."""
    try:
        value = float(coverage)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(coverage, bool) or not 0.0 < value < 1.0:  # NaN fails the comparison too
        raise ValueError(
            f"coverage must be a fraction strictly between 0 and 1 (e.g. 0.9 for 90 % sets), got {coverage!r}"
        )
    return value


def fit_conformal(
    probs,
    y_true,
    coverage: float = DEFAULT_COVERAGE,
    method: str = "aps",
    lam: float | None = None,
    k_reg: int | None = None,
) -> ConformalSets:
    """Calibrate a head's set rule on its (already temperature-scaled) probabilities and labels (-1 left out)."""
    coverage = check_coverage(coverage)
    if method not in METHODS:
        raise ValueError(f"unknown conformal method {method!r}; the methods are {METHODS}")
    if method == "aps":
        lam, k_reg = 0.0, 0
    else:
        lam = RAPS_LAM if lam is None else float(lam)
        k_reg = RAPS_K_REG if k_reg is None else int(k_reg)
        if lam < 0 or k_reg < 0:
            raise ValueError(f"RAPS needs lam >= 0 and k_reg >= 0, got {lam} and {k_reg}")
    probs = _as_probs(probs)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if len(y_true) != len(probs):
        raise ValueError(f"length mismatch: {len(probs)} rows of probabilities for {len(y_true)} labels")
    known = y_true >= 0
    if known.any() and y_true[known].max() >= probs.shape[1]:
        raise ValueError(f"label {y_true[known].max()} outside [0, {probs.shape[1]})")
    scores = class_scores(probs[known], lam, k_reg)
    true_scores = np.take_along_axis(scores, y_true[known, None], axis=1)[:, 0]
    return ConformalSets(method, coverage, conformal_quantile(true_scores, coverage), int(known.sum()), lam, k_reg)


def prediction_set_mask(probs, calibrator: ConformalSets) -> np.ndarray:
    """(n, classes) booleans: which classes each row's set holds (never none: the top-1 class always)."""
    return class_scores(probs, calibrator.lam, calibrator.k_reg) <= calibrator.qhat


def prediction_sets(probs, calibrator: ConformalSets) -> list[list[int]]:
    """Each row's set as class indices, most probable first (so element 0 is the top-1 answer)."""
    probs = _as_probs(probs)
    mask = prediction_set_mask(probs, calibrator)
    order = np.argsort(-probs, axis=1, kind="stable")
    return [[int(c) for c in row_order if row_mask[c]] for row_order, row_mask in zip(order, mask, strict=True)]


def set_coverage(mask, y_true) -> float | None:
    """Share of the rows with a known label whose set holds it (None when no label is known)."""
    mask = np.asarray(mask, dtype=bool)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    known = y_true >= 0
    if not known.any():
        return None
    return float(mask[known, y_true[known]].mean())


# --- the answer a reader sees ---------------------------------------------------------------------------


def should_abstain(answer, calibrator: ConformalSets | None = None) -> bool:
    """True when the answer is "unsure": its conformal set holds more than one class.

    `answer` is a set size (int), a set (class indices), or, with `calibrator`, one row of probabilities. The
    rule replaces a fixed probability cut: the set is what the head can promise at the calibrated coverage, so
    "unsure" means "at that coverage it cannot name one class", and the answer names the set instead.
    """
    if calibrator is not None:
        return int(prediction_set_mask(np.asarray(answer, dtype=np.float64)[None, :], calibrator).sum()) > 1
    if isinstance(answer, int | np.integer):
        return int(answer) > 1
    return len(answer) > 1


def cannot_tell(size, classes: int):
    """True where a set of `size` classes (an int or an array of sizes) holds more than half of the head's
    `classes`: at the promised coverage the head rules out too little to name, so the answer says "cannot tell"
    (and still shows its ranking)."""
    result = np.asarray(size) > classes / 2
    return bool(result) if result.ndim == 0 else result


def describe_set(classes: Sequence[int], class_names: Sequence[str], chronological: bool | None = None) -> str:
    """A set in words: "Dutch", "Dutch or Flemish", "Dutch, Flemish or German".

    Classes keep the order given (most probable first, as `prediction_sets` returns them) unless `chronological`:
    then by index, so timeframes read as ordered blocks ("1601-1650, 1651-1700 or 1701-1750"). None (the default)
    means chronological exactly when `class_names` are the timeframe blocks.
    """
    class_names = tuple(class_names)
    if chronological is None:
        chronological = class_names == labels.TIMEFRAMES
    indices = sorted(int(c) for c in classes) if chronological else [int(c) for c in classes]
    if not indices:
        raise ValueError("an empty set has no description (the sets here always hold the top-1 class)")
    names = [class_names[i] for i in indices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
