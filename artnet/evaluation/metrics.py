"""Per-head metrics of the three softmax heads: what one head scores on one set of paintings, as plain numbers.

This module owns the numbers of a report: the confusion matrix, top-1 and top-3, balanced accuracy, macro F1,
the majority baseline, calibration (reliability bins and ECE) and, for the timeframe head, time in blocks and
years. scikit-learn computes every metric it has (`confusion_matrix`, `accuracy_score`, `top_k_accuracy_score`,
`balanced_accuracy_score`, `f1_score`, `calibration_curve`); the code here adds what it lacks: labels follow
`artnet.labels` (an index into the head's vocabulary, or -1 for unknown) and unknown labels are excluded from
every metric (and from ``n``), as they are masked in the loss; a metric with no example to be computed on is
None, never nan; ECE and the ±1 block and year errors. Everything returned is plain Python (int, float, None,
list, dict), so that it goes straight into JSON. Intervals live in `intervals`, figures in `plots`, the Markdown
report in `report` (`format_report_markdown` and `percent` are also importable from here).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, top_k_accuracy_score
from sklearn.metrics import confusion_matrix as _sklearn_confusion_matrix

from artnet.data.years import block_centres

# Re-exported: the linear probe (artnet.training.probe) and the demo's cards read these two from here.
from artnet.evaluation.report import format_report_markdown as format_report_markdown
from artnet.evaluation.report import percent as percent

ECE_BINS = 15

# What scikit-learn warns about that the definitions here settle: recall is averaged over the classes present in
# y_true only (a class that is only predicted has no recall), and a small set may hold a single class.
_SETTLED_WARNINGS = ("y_pred contains classes not in y_true", "A single label was found")


@contextlib.contextmanager
def _settled_warnings():
    with warnings.catch_warnings():
        for message in _SETTLED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


# --- counting -------------------------------------------------------------------------------------------


def drop_unknown(y_true, *arrays):
    """`y_true` as int64, and it and `arrays` restricted to the examples with a known label (>= 0)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    arrays = [np.asarray(array) for array in arrays]
    for array in arrays:
        if len(array) != len(y_true):
            raise ValueError(f"length mismatch: {len(array)} predictions for {len(y_true)} labels")
    keep = y_true >= 0
    return (y_true[keep], *(array[keep] for array in arrays))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are the true class, columns the predicted one.

    Examples with an unknown label (y_true < 0) are ignored. Unlike scikit-learn's, which silently drops a pair
    outside `labels`, a label or prediction outside [0, num_classes) is an error.
    """
    y_true, y_pred = drop_unknown(y_true, y_pred)
    y_pred = y_pred.astype(np.int64)
    if not y_true.size:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    if y_true.max() >= num_classes or y_pred.min() < 0 or y_pred.max() >= num_classes:
        raise ValueError(f"labels or predictions outside [0, {num_classes})")
    with _settled_warnings():
        return _sklearn_confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def balanced_accuracy(y_true, y_pred) -> float | None:
    """Mean recall over the classes present in y_true (a class only predicted does not count), so rare classes
    weigh as much as common ones; unknown labels are left out, None when no label is known."""
    y_true, y_pred = drop_unknown(y_true, y_pred)
    if not y_true.size:
        return None
    with _settled_warnings():
        return balanced_accuracy_score(y_true, y_pred)


def macro_f1(y_true, y_pred) -> float | None:
    """Mean F1 = 2TP / (2TP + FP + FN) over the classes that are true or predicted at least once (scikit-learn's
    default labels: a class never seen nor predicted would be 0/0); None when no label is known."""
    y_true, y_pred = drop_unknown(y_true, y_pred)
    if not y_true.size:
        return None
    with _settled_warnings():
        return float(f1_score(y_true, y_pred, average="macro"))


def top_k_accuracy(y_true, probs, k: int) -> float | None:
    """Share of examples whose true class is among the k most probable; ties go to the lower class index.

    That tie rule is the one `np.argmax` uses, so top-1 here always agrees with the argmax prediction.
    scikit-learn ranks tied scores the other way (the higher index first), so it is given the classes in
    reverse order. With k >= the number of classes every example is a hit.
    """
    y_true, probs = drop_unknown(y_true, _as_probs(probs))
    if not y_true.size:
        return None
    num_classes = probs.shape[1]
    if k >= num_classes:
        return 1.0
    reversed_true = num_classes - 1 - y_true
    return top_k_accuracy_score(reversed_true, probs[:, ::-1], k=k, labels=np.arange(num_classes))


# --- calibration ----------------------------------------------------------------------------------------


def _as_probs(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, classes), got shape {probs.shape}")
    return probs


def _confidence_bins(y_true: np.ndarray, probs: np.ndarray, bins: int):
    """Per example: top-1 confidence, top-1 correctness (0/1) and confidence bin.

    The bins are `calibration_curve`'s (strategy "uniform"): equal-width over [0, 1] and closed on the right,
    (lower, upper], the first one also taking 0.
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    which = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], confidence, side="left")
    return confidence, correct, which


def expected_calibration_error(y_true, probs, bins: int = ECE_BINS) -> float | None:
    """Gap between top-1 confidence and top-1 accuracy, averaged over confidence bins weighted by size.

    ECE = sum over bins of |accuracy - mean confidence| * count / n, computed as the sum over bins of
    |correct answers - summed confidence| / n. None when no example has a known label.
    """
    y_true, probs = drop_unknown(y_true, _as_probs(probs))
    if not len(y_true):
        return None
    confidence, correct, which = _confidence_bins(y_true, probs, bins)
    correct_sums = np.bincount(which, weights=correct, minlength=bins)
    confidence_sums = np.bincount(which, weights=confidence, minlength=bins)
    return float(np.abs(correct_sums - confidence_sums).sum() / len(y_true))


def reliability_bins(y_true, probs, bins: int = ECE_BINS) -> list[dict]:
    """Every confidence bin with its bounds, count, mean confidence and accuracy (None when it is empty).

    Mean confidence and accuracy of the occupied bins are `calibration_curve`'s; it leaves out empty bins and
    counts, which are added here.
    """
    y_true, probs = drop_unknown(y_true, _as_probs(probs))
    edges = np.linspace(0.0, 1.0, bins + 1)
    confidence, correct, which = _confidence_bins(y_true, probs, bins)
    counts = np.bincount(which, minlength=bins)
    accuracy, mean_confidence = np.full(bins, np.nan), np.full(bins, np.nan)
    if len(y_true):
        occupied = counts > 0
        accuracy[occupied], mean_confidence[occupied] = calibration_curve(
            correct, confidence, pos_label=1, n_bins=bins, strategy="uniform"
        )
    return [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": int(counts[i]),
            "confidence": float(mean_confidence[i]) if counts[i] else None,
            "accuracy": float(accuracy[i]) if counts[i] else None,
        }
        for i in range(bins)
    ]


# --- selective answers: risk against coverage ------------------------------------------------------------


def risk_coverage_curve(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk): answering only the examples whose top-1 probability is at least a threshold, the share
    answered and the top-1 error among them, at every distinct threshold from the highest down (coverage ends at
    1). Tied confidences are answered together: no threshold can tell them apart. Unknown labels are left out;
    empty arrays when no label is known. (scikit-learn has no such curve; it is two cumulative sums.)
    """
    y_true, probs = drop_unknown(y_true, _as_probs(probs))
    if not len(y_true):
        return np.zeros(0), np.zeros(0)
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(probs.argmax(axis=1)[order] != y_true[order])
    ranked = confidence[order]
    # The last position of each run of equal confidences: where a threshold at that confidence stops answering.
    last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    answered = last + 1
    return answered / len(y_true), errors[last] / answered


def aurc(y_true, probs) -> float | None:
    """The area under the risk-coverage curve (lower is better): the top-1 error among the answered, averaged over
    coverage as the examples are answered one confidence level at a time (a step function, each step as wide as
    the share it answers). Without ties it is Geifman et al.'s (1 / n) * sum over k of the error among the k most
    confident. None when no label is known."""
    coverage, risk = risk_coverage_curve(y_true, probs)
    if not len(coverage):
        return None
    return float(np.sum(np.diff(coverage, prepend=0.0) * risk))


def oracle_aurc(y_true, probs) -> float | None:
    """The AURC of the same answers ranked by an oracle (every right answer before every wrong one): the least a
    confidence can reach with this top-1 accuracy, the reference AURC is read against. With e errors of n it is
    (1 / n) * sum over k > n - e of (k - (n - e)) / k. None when no label is known."""
    y_true, probs = drop_unknown(y_true, _as_probs(probs))
    n = len(y_true)
    if not n:
        return None
    right = int(np.sum(probs.argmax(axis=1) == y_true))
    k = np.arange(right + 1, n + 1)
    return float(np.sum((k - right) / k) / n)


# --- one head -------------------------------------------------------------------------------------------


def _per_class_accuracy(matrix: np.ndarray, class_names: list) -> dict:
    """Per class name: its number of known examples and its recall (None without examples)."""
    support = matrix.sum(axis=1)
    return {
        name: {"n": int(support[i]), "accuracy": float(matrix[i, i] / support[i]) if support[i] else None}
        for i, name in enumerate(class_names)
    }


def head_metrics(y_true, probs, class_names, majority_class: int) -> dict:
    """All the numbers reported for one head, from its labels and softmax outputs (JSON-ready).

    `majority_class` is the train split's most frequent class: the accuracy a model gets for free.
    """
    class_names = list(class_names)
    num_classes = len(class_names)
    probs = _as_probs(probs)
    if probs.shape[1] != num_classes:
        raise ValueError(f"probs has {probs.shape[1]} classes, class_names {num_classes}")
    if not 0 <= majority_class < num_classes:
        raise ValueError(f"majority_class {majority_class} outside [0, {num_classes})")
    y_true, probs = drop_unknown(y_true, probs)
    if y_true.size and y_true.max() >= num_classes:
        raise ValueError(f"label {y_true.max()} outside [0, {num_classes})")

    n = len(y_true)
    y_pred = probs.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    return {
        "n": int(n),
        "top1": accuracy_score(y_true, y_pred) if n else None,
        "top3": top_k_accuracy(y_true, probs, min(3, num_classes)),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "majority_baseline": float(np.mean(y_true == majority_class)) if n else None,
        "per_class_accuracy": _per_class_accuracy(matrix, class_names),
        "ece": expected_calibration_error(y_true, probs),
        "confusion_matrix": matrix.tolist(),
    }


# --- time in years (the timeframe head) -----------------------------------------------------------------


def _year_errors(dated_probs: np.ndarray, years: np.ndarray, class_names: list) -> dict:
    """Over dated examples: absolute error in years of the top-1 block's centre, and of a uniformly random one."""
    centres = block_centres(class_names)
    year = years.astype(np.float64)
    error = np.abs(centres[dated_probs.argmax(axis=1)] - year)
    return {
        "year_n": len(year),
        "year_mae": float(error.mean()),
        "year_median_ae": float(np.median(error)),
        "year_mae_chance": float(np.abs(centres[None, :] - year[:, None]).mean()),
    }


def timeframe_year_metrics(y_true, probs, class_names, years=None) -> dict:
    """How far in time the top-1 block falls, over the examples whose block is known (JSON-ready).

    `within_one_block`: the top-1 block is the true one or a neighbour; `block_distance_fractions[d]`: the
    fraction of examples whose top-1 block is d blocks from the true one. With `years` (-1 = unknown), over the
    examples with both a known block and a known year: the mean and median absolute error in years between the
    top-1 block's centre and the year (`year_n` of them). Each has its `_chance` beside it: a block drawn
    uniformly at random (its expected value, computed exactly).
    """
    class_names = list(class_names)
    k = len(class_names)
    probs = _as_probs(probs)
    y_all = np.asarray(y_true, dtype=np.int64)
    years_all = np.full(len(y_all), -1, dtype=np.int64) if years is None else np.asarray(years, dtype=np.int64)
    if len(years_all) != len(y_all):
        raise ValueError(f"{len(years_all)} years for {len(y_all)} labels")
    y, years_known, probs = drop_unknown(y_all, years_all, probs)
    n = len(y)
    distance = np.abs(probs.argmax(axis=1) - y) if n else np.zeros(0, dtype=np.int64)
    all_distances = np.abs(np.arange(k)[None, :] - y[:, None])  # (n, k): every block's distance from the truth
    result = {
        "within_one_block": float(np.mean(distance <= 1)) if n else None,
        "within_one_block_chance": float(np.mean(all_distances <= 1)) if n else None,
        "block_distance_fractions": (np.bincount(distance, minlength=k)[:k] / n).tolist() if n else None,
        "year_n": 0,
        "year_mae": None,
        "year_median_ae": None,
        "year_mae_chance": None,
    }
    dated = years_known >= 0
    if dated.any():
        result.update(_year_errors(probs[dated], years_known[dated], class_names))
    return result
