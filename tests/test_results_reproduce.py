"""The committed result tables reproduce to the last digit now that scikit-learn computes the metrics it has.

`experiments/results/` holds tables made by `experiments/compare.py` (and the grid, the recipe search, the time
heads) from each run's `report.json` (`metrics.head_metrics`, `metrics.timeframe_year_metrics`) and
`predictions.npz` (the bootstrap intervals and paired differences of `intervals`). Their inputs are not committed
(runs/ and ../shared are not in git), so the tables themselves cannot be recomputed here; instead a fixed, seeded
test set of three heads (unknown labels, an absent class, tied probabilities, painters, years, two runs) is
scored twice: by the hand-written implementations of `artnet/evaluation/metrics.py` at commit 2ee184b, copied
below as the reference, and by the current code. Every float must be the same float (compared through `repr`,
as the CSV writer writes it), every report and table the same text.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import top_k_accuracy_score

from artnet import labels
from artnet.data.years import block_centres
from artnet.evaluation import intervals, metrics
from artnet.evaluation import report as evaluation_report

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 700
RUNS = ("probe", "recipe")


# --- the fixture: one test set, two runs ----------------------------------------------------------------


def _softmax32(logits: np.ndarray) -> np.ndarray:
    """Softmax in float32 read back as float64: what `predict_probabilities` hands the metrics."""
    logits = logits.astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float64)


def _head_labels(rng: np.random.Generator, classes: int, absent: int | None) -> np.ndarray:
    """Skewed labels, 8 % unknown (-1), and one class (`absent`) with no example at all."""
    weights = rng.dirichlet(np.full(classes, 0.7))
    if absent is not None:
        weights[absent] = 0
    y = rng.choice(classes, size=IMAGES, p=weights / weights.sum())
    y[rng.random(IMAGES) < 0.08] = -1
    return y


def _run_probabilities(rng: np.random.Generator, y_true: np.ndarray, classes: int, skill: float) -> np.ndarray:
    """Probabilities that lean to the true class, with exact ties: uniform rows and rows with two equal maxima."""
    logits = rng.normal(size=(IMAGES, classes)) * 1.5
    known = y_true >= 0
    logits[known, y_true[known]] += skill * rng.random(known.sum())
    probs = _softmax32(logits)
    uniform = rng.random(IMAGES) < 0.03
    probs[uniform] = 1 / classes
    tied = np.flatnonzero(rng.random(IMAGES) < 0.05)
    first, second = rng.integers(0, classes, len(tied)), rng.integers(0, classes, len(tied))
    probs[tied] = 0.1 / classes
    probs[tied, first] = probs[tied, second] = 0.45
    return probs


def _years(rng: np.random.Generator, timeframe: np.ndarray) -> np.ndarray:
    """A year inside the true block for 60 % of the paintings with a known block, -1 (unknown) otherwise."""
    years = 1401 + 50 * np.maximum(timeframe, 0) + rng.integers(0, 50, IMAGES)
    return np.where((timeframe >= 0) & (rng.random(IMAGES) < 0.6), years, -1)


@pytest.fixture(scope="module")
def fixed_set() -> dict:
    """Labels, years and painters of one test split, and each run's probabilities per head (seeded)."""
    rng = np.random.default_rng(20261202)
    truth = {
        head: _head_labels(rng, len(labels.VOCABULARIES[head]), absent=1 if head == "school" else None)
        for head in labels.HEADS
    }
    painters = np.array([f"painter {k}" for k in rng.integers(0, 45, IMAGES)])
    painters[rng.random(IMAGES) < 0.05] = ""
    runs = {
        run: {
            head: _run_probabilities(rng, truth[head], len(labels.VOCABULARIES[head]), skill) for head in labels.HEADS
        }
        for run, skill in zip(RUNS, (2.5, 3.5), strict=True)
    }
    return {"truth": truth, "years": _years(rng, truth["timeframe"]), "painters": painters, "runs": runs}


def _score(implementation, fixed_set: dict, run: str) -> dict:
    """A report as `evaluate` writes it (baselines spelt out: they are not metrics code), by one implementation."""
    report = {"model": "efficientnet_lite0", "data": "fixture:test", "split_rule": "by painter", "examples": IMAGES}
    report["heads"] = {}
    for head in labels.HEADS:
        names = list(labels.VOCABULARIES[head])
        y_true, probs = fixed_set["truth"][head], fixed_set["runs"][run][head]
        result = implementation.head_metrics(y_true, probs, names, majority_class=0)
        known = y_true[y_true >= 0]
        majority = int(np.bincount(known).argmax())
        result.update(
            chance=1 / len(names),
            train_majority={"class": names[0], "top1": float(np.mean(known == 0))},
            data_majority={"class": names[majority], "top1": float(np.mean(known == majority))},
        )
        if head == "timeframe":
            result.update(implementation.timeframe_year_metrics(y_true, probs, names, fixed_set["years"]))
        report["heads"][head] = result
    # a year head's numbers (`artnet.models.year.year_metrics`, not metrics code): only formatted here
    report["year"] = {"n": 312, "mae": 61.25, "median_ae": 40.5, "mae_constant": 120.0, "mae_chance": 181.5}
    report["year"] |= {"within_one_sigma": 0.6634, "mean_sigma": 55.0, "block_top1": 0.41, "within_one_block": 0.83}
    report["year"] |= {"constant_year": 1650.25}
    return report


REFERENCE = types.SimpleNamespace()  # filled at the bottom: the hand-written implementations of 2ee184b


# --- per-head metrics and the report -------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("head", labels.HEADS)
def test_head_metrics_are_the_hand_written_ones_to_the_last_bit(fixed_set, run, head):
    names = labels.VOCABULARIES[head]
    y_true, probs = fixed_set["truth"][head], fixed_set["runs"][run][head]
    new = metrics.head_metrics(y_true, probs, names, majority_class=2)
    old = REFERENCE.head_metrics(y_true, probs, names, majority_class=2)
    assert json.dumps(new) == json.dumps(old)  # repr of every float, and int vs float, and None
    assert new == old
    # the fixture exercises what the old code had to get right by hand
    assert new["n"] < IMAGES and 0 < new["top1"] < new["top3"] < 1
    if head == "school":
        assert new["per_class_accuracy"][names[1]] == {"n": 0, "accuracy": None}  # a class no painting has


def test_ties_are_broken_towards_the_lower_class_as_before():
    """scikit-learn ranks tied scores the other way; `metrics.top_k_accuracy` hands it the classes reversed."""
    probs = np.array([[0.3, 0.3, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.3, 0.3, 0.3]])
    for y_true in ([2, 3, 1], [0, 1, 2], [3, 2, 3]):
        for k in (1, 2, 3):
            assert metrics.top_k_accuracy(y_true, probs, k) == REFERENCE._top_k_accuracy(np.array(y_true), probs, k)
    # top-2 here: {0, 1}, {0, 1}, {1, 2}; scikit-learn's own order would rank {2, 1}, {3, 2}, {3, 2}
    assert metrics.top_k_accuracy([2, 3, 1], probs, 2) == 1 / 3
    assert top_k_accuracy_score([2, 3, 1], probs, k=2, labels=range(4)) == 2 / 3


@pytest.mark.parametrize("run", RUNS)
def test_calibration_is_the_hand_written_one_and_its_bins_are_sklearn_s(fixed_set, run):
    for head in labels.HEADS:
        y_true, probs = fixed_set["truth"][head], fixed_set["runs"][run][head]
        assert metrics.reliability_bins(y_true, probs) == REFERENCE.reliability_bins(y_true, probs)
        assert repr(metrics.expected_calibration_error(y_true, probs)) == repr(
            REFERENCE.expected_calibration_error(y_true, probs)
        )
        known = y_true >= 0
        correct = probs[known].argmax(axis=1) == y_true[known]
        prob_true, _ = calibration_curve(correct, probs[known].max(axis=1), n_bins=metrics.ECE_BINS)
        table = metrics.reliability_bins(y_true, probs)
        assert [b["accuracy"] for b in table if b["count"]] == prob_true.tolist()


@pytest.mark.parametrize("run", RUNS)
def test_timeframe_year_metrics_are_the_hand_written_ones(fixed_set, run):
    y_true, probs = fixed_set["truth"]["timeframe"], fixed_set["runs"][run]["timeframe"]
    new = metrics.timeframe_year_metrics(y_true, probs, labels.TIMEFRAMES, fixed_set["years"])
    old = REFERENCE.timeframe_year_metrics(y_true, probs, labels.TIMEFRAMES, fixed_set["years"])
    assert json.dumps(new) == json.dumps(old) and new["year_n"] > 0


@pytest.mark.parametrize("run", RUNS)
def test_report_markdown_is_the_hand_written_one(fixed_set, run):
    new, old = _score(metrics, fixed_set, run), _score(REFERENCE, fixed_set, run)
    assert json.dumps(new) == json.dumps(old)
    text = evaluation_report.format_report_markdown(new)
    assert text == REFERENCE.format_report_markdown(old)
    assert metrics.format_report_markdown is evaluation_report.format_report_markdown  # training reads it there
    for section in ("## Summary", "## Baselines", "## Time in years", "## Year head", "## Per-class accuracy: type"):
        assert section in text


# --- intervals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", labels.HEADS)
def test_intervals_are_the_hand_written_ones(fixed_set, head):
    y_true = fixed_set["truth"][head]
    pred_a, pred_b = (fixed_set["runs"][run][head].argmax(axis=1) for run in RUNS)
    for groups in (None, fixed_set["painters"]):
        new = intervals.paired_difference(y_true, pred_a, pred_b, groups=groups)
        assert repr(new) == repr(REFERENCE.paired_difference(y_true, pred_a, pred_b, groups=groups))
    new = intervals.bootstrap_balanced_accuracy_interval(y_true, pred_b)
    assert repr(new) == repr(REFERENCE.bootstrap_balanced_accuracy_interval(y_true, pred_b))
    known = y_true >= 0
    correct = (pred_b[known] == y_true[known]).astype(np.float64)
    assert repr(intervals.bootstrap_interval(correct)) == repr(REFERENCE.bootstrap_interval(correct))


# --- the tables, end to end through experiments/compare.py ----------------------------------------------


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "experiments" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _write_evaluation(folder: Path, implementation, fixed_set: dict, run: str) -> None:
    """`report.json`, `report.md` and `predictions.npz`, as `evaluate` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    report = _score(implementation, fixed_set, run)
    del report["year"]  # a year head would need its (mu, log sigma) outputs in the predictions
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    (folder / "report.md").write_text(implementation.format_report_markdown(report))
    truth = {f"{head}_true": fixed_set["truth"][head] for head in labels.HEADS}
    probabilities = fixed_set["runs"][run]
    np.savez_compressed(
        folder / "predictions.npz",
        **probabilities,
        **truth,
        year_true=fixed_set["years"],
        painter=fixed_set["painters"],
    )


def _tables(compare, implementation, fixed_set: dict, intervals_module) -> dict[str, str]:
    """Every file that `compare.py --against probe` and the two evaluations write, by one implementation."""
    for run in RUNS:
        _write_evaluation(Path("runs", run), implementation, fixed_set, run)
    compare.intervals = intervals_module
    argv = ["--name", "fixture", "--out-dir", "results", "--against", "probe"]
    argv += [f"--run={run}=runs/{run}" for run in RUNS]
    assert compare.main(argv) == 0
    written = [*Path("results").glob("*"), *(Path("runs", run, "report.md") for run in RUNS)]
    return {str(path): path.read_text() for path in written}


def test_compare_tables_reproduce_to_the_last_digit(fixed_set, tmp_path, monkeypatch):
    """The CSV and Markdown tables that compare.py writes (the kind committed in experiments/results), and each
    run's report.md, from the reference implementations and from the current code: the same bytes."""
    monkeypatch.chdir(tmp_path)
    compare = _compare_module()
    monkeypatch.setattr(compare, "intervals", intervals)
    reference = _tables(compare, REFERENCE, fixed_set, REFERENCE)
    current = _tables(compare, metrics, fixed_set, intervals)
    assert sorted(current) == sorted(reference) and len(current) == 5
    for name, text in current.items():
        assert text == reference[name], name
    rows = current[str(Path("results", "fixture.csv"))].splitlines()
    assert len(rows) == 1 + 2 * len(labels.HEADS) and "0." in rows[1]


# --- reference: the hand-written implementations of artnet/evaluation/metrics.py at commit 2ee184b ------
# Copied verbatim (names and bodies; docstrings left out, and format_report_markdown's loop variable `metrics` is
# `scores` here, not to shadow the module); only what computes or formats a number is here.

ECE_BINS = 15
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


def _known(y_true, *arrays):
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    arrays = [np.asarray(array) for array in arrays]
    for array in arrays:
        if len(array) != len(y_true):
            raise ValueError(f"length mismatch: {len(array)} predictions for {len(y_true)} labels")
    keep = y_true >= 0
    return (y_true[keep], *(array[keep] for array in arrays))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    y_true, y_pred = _known(y_true, y_pred)
    y_pred = y_pred.astype(np.int64)
    if y_true.size and (y_true.max() >= num_classes or y_pred.min() < 0 or y_pred.max() >= num_classes):
        raise ValueError(f"labels or predictions outside [0, {num_classes})")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _balanced_accuracy(matrix: np.ndarray) -> float | None:
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def _macro_f1(matrix: np.ndarray) -> float | None:
    true_positives = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # = 2TP + FP + FN
    involved = denominator > 0
    if not involved.any():
        return None
    return float(np.mean(2 * true_positives[involved] / denominator[involved]))


def _top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    ranking = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(ranking == y_true[:, None], axis=1)))


def _bin_sums(y_true: np.ndarray, probs: np.ndarray, bins: int):
    edges = np.linspace(0.0, 1.0, bins + 1)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(which, minlength=bins)
    confidence_sums = np.bincount(which, weights=confidence, minlength=bins)
    correct_sums = np.bincount(which, weights=correct, minlength=bins)
    return edges, counts, confidence_sums, correct_sums


def _as_probs(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, classes), got shape {probs.shape}")
    return probs


def expected_calibration_error(y_true, probs, bins: int = ECE_BINS) -> float | None:
    y_true, probs = _known(y_true, _as_probs(probs))
    if not len(y_true):
        return None
    _, _, confidence_sums, correct_sums = _bin_sums(y_true, probs, bins)
    return float(np.abs(correct_sums - confidence_sums).sum() / len(y_true))


def reliability_bins(y_true, probs, bins: int = ECE_BINS) -> list[dict]:
    y_true, probs = _known(y_true, _as_probs(probs))
    edges, counts, confidence_sums, correct_sums = _bin_sums(y_true, probs, bins)
    return [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": int(counts[i]),
            "confidence": float(confidence_sums[i] / counts[i]) if counts[i] else None,
            "accuracy": float(correct_sums[i] / counts[i]) if counts[i] else None,
        }
        for i in range(bins)
    ]


def head_metrics(y_true, probs, class_names, majority_class: int) -> dict:
    class_names = list(class_names)
    num_classes = len(class_names)
    probs = _as_probs(probs)
    if probs.shape[1] != num_classes:
        raise ValueError(f"probs has {probs.shape[1]} classes, class_names {num_classes}")
    if not 0 <= majority_class < num_classes:
        raise ValueError(f"majority_class {majority_class} outside [0, {num_classes})")
    y_true, probs = _known(y_true, probs)
    if y_true.size and y_true.max() >= num_classes:
        raise ValueError(f"label {y_true.max()} outside [0, {num_classes})")

    n = len(y_true)
    y_pred = probs.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    per_class = {
        name: {"n": int(support[i]), "accuracy": float(matrix[i, i] / support[i]) if support[i] else None}
        for i, name in enumerate(class_names)
    }
    return {
        "n": int(n),
        "top1": float(np.mean(y_pred == y_true)) if n else None,
        "top3": _top_k_accuracy(y_true, probs, min(3, num_classes)) if n else None,
        "balanced_accuracy": _balanced_accuracy(matrix),
        "macro_f1": _macro_f1(matrix),
        "majority_baseline": float(np.mean(y_true == majority_class)) if n else None,
        "per_class_accuracy": per_class,
        "ece": expected_calibration_error(y_true, probs),
        "confusion_matrix": matrix.tolist(),
    }


def timeframe_year_metrics(y_true, probs, class_names, years=None) -> dict:
    class_names = list(class_names)
    k = len(class_names)
    probs = _as_probs(probs)
    y_all = np.asarray(y_true, dtype=np.int64)
    years_all = np.full(len(y_all), -1, dtype=np.int64) if years is None else np.asarray(years, dtype=np.int64)
    if len(years_all) != len(y_all):
        raise ValueError(f"{len(years_all)} years for {len(y_all)} labels")
    known = y_all >= 0
    y, years_known, probs = y_all[known], years_all[known], probs[known]
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
        centres = block_centres(class_names)
        year = years_known[dated].astype(np.float64)
        error = np.abs(centres[probs[dated].argmax(axis=1)] - year)
        result.update(
            year_n=int(dated.sum()),
            year_mae=float(error.mean()),
            year_median_ae=float(np.median(error)),
            year_mae_chance=float(np.abs(centres[None, :] - year[:, None]).mean()),
        )
    return result


def _resample_indices(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, rows_per_chunk):
        yield rng.integers(0, n, size=(min(rows_per_chunk, n_resamples - start), n))


def _percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1 - confidence) / 2
    lower, upper = np.quantile(statistics, [alpha, 1 - alpha])
    return float(lower), float(upper)


def bootstrap_interval(
    correct: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    correct = np.asarray(correct)
    if correct.ndim != 1 or not len(correct):
        raise ValueError("bootstrap needs a non-empty 1-D array of per-example values")
    values = [statistic(correct[row]) for chunk in _resample_indices(len(correct), n_resamples, seed) for row in chunk]
    return _percentile_interval(np.asarray(values, dtype=float), confidence)


def bootstrap_balanced_accuracy_interval(
    y_true, y_pred, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    y_true, y_pred = _known(y_true, y_pred)
    if not len(y_true):
        raise ValueError("bootstrap needs at least one example with a known label")
    num_classes = int(y_true.max()) + 1
    correct = (y_pred == y_true).astype(float)
    values = []
    for indices in _resample_indices(len(y_true), n_resamples, seed):
        rows = len(indices)
        cells = (np.arange(rows)[:, None] * num_classes + y_true[indices]).ravel()
        support = np.bincount(cells, minlength=rows * num_classes).reshape(rows, num_classes)
        hits = np.bincount(cells, weights=correct[indices].ravel(), minlength=rows * num_classes)
        recall = hits.reshape(rows, num_classes) / np.maximum(support, 1)
        present = support > 0
        values.append((recall * present).sum(axis=1) / present.sum(axis=1))
    return _percentile_interval(np.concatenate(values), confidence)


def cluster_members(groups, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([index]) for index in range(n)]
    groups = np.asarray(groups).astype(str)
    if len(groups) != n:
        raise ValueError(f"length mismatch: {len(groups)} group names for {n} images")
    named = groups != ""
    _, inverse = np.unique(groups[named], return_inverse=True)
    members = [np.flatnonzero(named)[inverse == group] for group in range(inverse.max(initial=-1) + 1)]
    return members + [np.array([index]) for index in np.flatnonzero(~named)]


def cluster_resample(members: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])


def paired_difference(
    y_true,
    pred_a,
    pred_b,
    groups=None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    y_true, pred_a, pred_b, *grouped = _known(y_true, pred_a, pred_b, *([] if groups is None else [groups]))
    if not len(y_true):
        raise ValueError("a paired difference needs at least one example with a known label")
    num_classes = int(max(y_true.max(), pred_a.max(), pred_b.max())) + 1

    def both(indices):
        y, a, b = y_true[indices], pred_a[indices], pred_b[indices]
        return (
            np.mean(b == y) - np.mean(a == y),
            _balanced_accuracy(confusion_matrix(y, b, num_classes))
            - _balanced_accuracy(confusion_matrix(y, a, num_classes)),
        )

    members = cluster_members(grouped[0] if grouped else None, len(y_true))
    rng = np.random.default_rng(seed)
    replicates = np.asarray([both(cluster_resample(members, rng)) for _ in range(n_resamples)])
    point = both(np.arange(len(y_true)))
    return {
        metric: (float(point[column]), *_percentile_interval(replicates[:, column], confidence))
        for column, metric in enumerate(("top1", "balanced_accuracy"))
    }


_SUMMARY_COLUMNS = (
    ("n", "n"),
    ("top1", "top-1"),
    ("top3", "top-3"),
    ("balanced_accuracy", "balanced acc."),
    ("macro_f1", "macro F1"),
    ("majority_baseline", "training-majority baseline"),
    ("ece", "ECE"),
)


def percent(value, missing: str = "n/a", suffix: str = "%") -> str:
    return missing if value is None or value == "" else f"{100 * float(value):.1f}{suffix}"


def _cell(key: str, value) -> str:
    if value is None:
        return "n/a"
    if key == "n":
        return str(value)
    if key == "ece":
        return f"{value:.3f}"
    return percent(value)


def _escape(text) -> str:
    return str(text).replace("|", "\\|")


def format_report_markdown(report: dict) -> str:
    lines = ["# Evaluation report", ""]
    info = [
        (key, value)
        for key, value in report.items()
        if key != "heads" and isinstance(value, str | int | float | np.number)
    ]
    if info:
        lines += [f"- **{_escape(key)}**: {_escape(value)}" for key, value in info] + [""]

    heads = report.get("heads", {})
    lines += [
        "## Summary",
        "",
        "Accuracies in percent; ECE (15 confidence bins) as a fraction. n counts examples with a known label.",
        "",
        "| head | " + " | ".join(title for _, title in _SUMMARY_COLUMNS) + " |",
        "| --- |" + " ---: |" * len(_SUMMARY_COLUMNS),
    ]
    for head, scores in heads.items():
        cells = [_cell(key, scores.get(key)) for key, _ in _SUMMARY_COLUMNS]
        lines.append(f"| {_escape(head)} | " + " | ".join(cells) + " |")

    if any("chance" in scores for scores in heads.values()):
        lines += [
            "",
            "## Baselines",
            "",
            "What a model scores without looking: guessing uniformly, and always answering one class.",
            "",
            "| head | chance | training majority | this data's majority |",
            "| --- | ---: | --- | --- |",
        ]
        for head, scores in heads.items():
            cells = [percent(scores.get("chance"))]
            for key in ("train_majority", "data_majority"):
                named = scores.get(key)
                cells.append(
                    f"{_escape(named['class'])}: {percent(named['top1'])}" if named else "n/a (no label counts)"
                )
            lines.append(f"| {_escape(head)} | " + " | ".join(cells) + " |")

    dated = {head: scores for head, scores in heads.items() if "within_one_block" in scores}
    if dated:
        lines += [
            "",
            "## Time in years",
            "",
            "How far in time the top-1 block falls: within one block (the true block or a neighbour) in percent, and "
            "the absolute error in years between the block's centre and the painting's year, over the n paintings "
            "with a known year. Chance: a block drawn uniformly at random.",
            "",
            "| head | ±1 block | chance ±1 | n (years) | mean error (years) | median error (years) | chance mean |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for head, scores in dated.items():
            years = [scores.get(key) for key in ("year_mae", "year_median_ae", "year_mae_chance")]
            cells = [percent(scores.get("within_one_block")), percent(scores.get("within_one_block_chance"))]
            cells += [str(scores.get("year_n", 0))] + ["n/a" if v is None else f"{v:.1f}" for v in years]
            lines.append(f"| {_escape(head)} | " + " | ".join(cells) + " |")

    year = report.get("year")
    if year:

        def years(key):
            return "n/a" if year.get(key) is None else f"{year[key]:.1f}"

        lines += [
            "",
            "## Year head",
            "",
            "The predicted year (the mean of its Gaussian) against the painting's year, over the n paintings with a "
            "known year. Constant: always answering the training split's mean year "
            f"({years('constant_year')}); chance: a block drawn uniformly at random (its centre). Within σ: the "
            "error is within the model's own standard deviation (about 68 % if σ is honest). Read as a block: the "
            "block of the predicted year against the timeframe label.",
            "",
            "| n | mean error (years) | median error | constant mean | chance mean | within σ | mean σ "
            "| block top-1 | ±1 block |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {year.get('n', 0)} | {years('mae')} | {years('median_ae')} | {years('mae_constant')} | "
            f"{years('mae_chance')} | {percent(year.get('within_one_sigma'))} | {years('mean_sigma')} | "
            f"{percent(year.get('block_top1'))} | {percent(year.get('within_one_block'))} |",
        ]

    for head, scores in heads.items():
        lines += ["", f"## Per-class accuracy: {_escape(head)}", ""]
        lines += ["| class | n | accuracy |", "| --- | ---: | ---: |"]
        for name, row in scores.get("per_class_accuracy", {}).items():
            lines.append(f"| {_escape(name)} | {row['n']} | {percent(row['accuracy'])} |")
    return "\n".join(lines) + "\n"


REFERENCE.__dict__.update(
    _top_k_accuracy=_top_k_accuracy,
    head_metrics=head_metrics,
    expected_calibration_error=expected_calibration_error,
    reliability_bins=reliability_bins,
    timeframe_year_metrics=timeframe_year_metrics,
    bootstrap_interval=bootstrap_interval,
    bootstrap_balanced_accuracy_interval=bootstrap_balanced_accuracy_interval,
    paired_difference=paired_difference,
    format_report_markdown=format_report_markdown,
)
