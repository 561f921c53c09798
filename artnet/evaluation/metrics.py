"""Evaluation metrics, calibration and plots for the three softmax heads, in numpy and matplotlib only.

Labels follow `artnet.labels`: an index into the head's vocabulary, or -1 for unknown. Unknown labels
are excluded from every metric (and from ``n``) here, as they are masked in the loss: a painting of
the English school says nothing about how well the school head does.

Everything returned is plain Python (int, float, None, list, dict) so that it goes straight into JSON;
a metric that has no examples to be computed on is None, never nan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from artnet.data.years import block_centres

ECE_BINS = 15
# Bootstrap resamples are drawn in chunks of about this many indices, to bound memory on big test sets.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


# --- counting -------------------------------------------------------------------------------------------


def _known(y_true, *arrays):
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

    Examples with an unknown label (y_true < 0) are ignored.
    """
    y_true, y_pred = _known(y_true, y_pred)
    y_pred = y_pred.astype(np.int64)
    if y_true.size and (y_true.max() >= num_classes or y_pred.min() < 0 or y_pred.max() >= num_classes):
        raise ValueError(f"labels or predictions outside [0, {num_classes})")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _balanced_accuracy(matrix: np.ndarray) -> float | None:
    """Mean recall over the classes present in y_true, so rare classes weigh as much as common ones."""
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def _macro_f1(matrix: np.ndarray) -> float | None:
    """Mean F1 over the classes that are true or predicted at least once (2TP / (2TP + FP + FN))."""
    true_positives = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # = 2TP + FP + FN
    involved = denominator > 0
    if not involved.any():
        return None
    return float(np.mean(2 * true_positives[involved] / denominator[involved]))


def _top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of examples whose true class is among the k most probable; ties go to the lower class index.

    That tie rule is the one `np.argmax` uses, so top-1 here always agrees with the argmax prediction.
    """
    ranking = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(ranking == y_true[:, None], axis=1)))


# --- calibration ----------------------------------------------------------------------------------------


def _bin_sums(y_true: np.ndarray, probs: np.ndarray, bins: int):
    """Per confidence bin: edges, example count, summed top-1 confidence and summed top-1 correctness.

    Bins are equal-width over [0, 1] and closed on the right, (lower, upper], the first one also taking 0.
    """
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
    """Gap between top-1 confidence and top-1 accuracy, averaged over confidence bins weighted by size.

    ECE = sum over bins of |accuracy - mean confidence| * count / n. None when no example has a known label.
    """
    y_true, probs = _known(y_true, _as_probs(probs))
    if not len(y_true):
        return None
    _, _, confidence_sums, correct_sums = _bin_sums(y_true, probs, bins)
    return float(np.abs(correct_sums - confidence_sums).sum() / len(y_true))


def reliability_bins(y_true, probs, bins: int = ECE_BINS) -> list[dict]:
    """Every confidence bin with its bounds, count, mean confidence and accuracy (None when it is empty)."""
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


# --- one head -------------------------------------------------------------------------------------------


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


# --- time in years (the timeframe head) -----------------------------------------------------------------


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


def plot_block_distance(fractions, path, title: str = "") -> None:
    """Fraction of paintings against |top-1 block - true block| (0 = right, 1 = a neighbour, ...)."""
    from matplotlib.figure import Figure

    fractions = np.asarray(fractions, dtype=np.float64)
    figure = Figure(figsize=(5, 3.5), layout="constrained")
    axes = figure.subplots()
    distances = np.arange(len(fractions))
    axes.bar(distances, fractions, color="tab:blue", edgecolor="black")
    for distance, value in zip(distances, fractions, strict=True):
        axes.text(distance, value, f"{100 * value:.0f}%", ha="center", va="bottom", fontsize="small")
    axes.set(
        xticks=distances,
        xlabel="|predicted block - true block| (blocks of 50 years)",
        ylabel="fraction of paintings",
        ylim=(0, max(1.0, float(fractions.max(initial=0)) * 1.1)),
    )
    axes.set_title(title or "error vs distance in time")
    _save(figure, path)


# --- bootstrap ------------------------------------------------------------------------------------------


def _resample_indices(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap index rows (with replacement), in chunks of shape (rows, n); the same for the same seed."""
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
    """Percentile bootstrap interval of `statistic` over per-example values (e.g. 0/1 correctness).

    Says how much a test-set number could move with another draw of paintings of the same size.
    """
    correct = np.asarray(correct)
    if correct.ndim != 1 or not len(correct):
        raise ValueError("bootstrap needs a non-empty 1-D array of per-example values")
    values = [statistic(correct[row]) for chunk in _resample_indices(len(correct), n_resamples, seed) for row in chunk]
    return _percentile_interval(np.asarray(values, dtype=float), confidence)


def bootstrap_balanced_accuracy_interval(
    y_true, y_pred, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of balanced accuracy; unknown labels (-1) are left out first.

    Each resample's recall is taken over the classes present in that resample, as for the point estimate.
    Vectorised: per chunk of resamples, one bincount gives every (resample, class) count.
    """
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
    """The image indices of each cluster for a cluster bootstrap: one cluster per distinct name in `groups` (e.g.
    `Source.painters`), and each image whose name is "" (unknown) a cluster of its own; `groups=None` makes every
    one of the `n` images its own cluster (the plain bootstrap)."""
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
    """One bootstrap replicate's image indices: as many clusters as there are, drawn with replacement, each with
    all its images (so a replicate may hold more or fewer images than the test set)."""
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
    """B minus A on the same test images: {"top1" | "balanced_accuracy": (difference, low, high)}.

    Paired: each bootstrap replicate draws one resample and scores both runs on it, so what the two share (which
    paintings are hard) cancels. With `groups` (e.g. `Source.painters`; "" = unknown, each such image its own
    group) a replicate draws whole groups with replacement and keeps all their images: the cluster bootstrap. On
    a painter-disjoint test split that is the honest interval, since the paintings of one painter succeed or fail
    together, and 25 painters are far fewer independent draws than 2,500 images. Unknown labels (-1) are left out.
    """
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


# --- plots ----------------------------------------------------------------------------------------------


def _save(figure, path) -> None:
    """Write a figure made with `matplotlib.figure.Figure`: Agg renders it, pyplot never holds it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")


def plot_reliability_diagram(y_true, probs, path, title: str = "") -> None:
    """Accuracy per confidence bin against the diagonal (perfect calibration), with bin counts beneath."""
    from matplotlib.figure import Figure

    table = reliability_bins(y_true, probs)
    ece = expected_calibration_error(y_true, probs)
    lowers = np.array([b["lower"] for b in table])
    width = table[0]["upper"] - table[0]["lower"]
    accuracy = np.array([b["accuracy"] or 0.0 for b in table])
    confidence = np.array([b["confidence"] if b["count"] else np.nan for b in table])
    counts = np.array([b["count"] for b in table])

    figure = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(lowers, accuracy, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
    top.plot(lowers + width / 2, confidence, "o", color="tab:red", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.legend(loc="upper left", fontsize="small")
    ece_text = f"ECE = {ece:.3f}" if ece is not None else "ECE = n/a (no labelled examples)"
    top.set_title(f"{title}\n{ece_text}" if title else ece_text)
    bottom.bar(lowers, counts, width=width, align="edge", edgecolor="black", color="gray")
    bottom.set(xlabel="top-1 confidence", ylabel="examples")
    _save(figure, path)


def plot_confusion_matrix(matrix, class_names, path, title: str = "", normalize: bool = True) -> None:
    """Heat-map of a confusion matrix, rows = true class; row-normalised by default so rows read as recall."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=float)
    class_names = list(class_names)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"matrix shape {matrix.shape} does not match {num_classes} class names")
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        values = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    else:
        values = matrix
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)

    side = max(4.5, 0.65 * num_classes + 2.5)
    figure = Figure(figsize=(side + 1, side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of true class" if normalize else "examples")
    ticks = np.arange(num_classes)
    axes.set_xticks(ticks, class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(ticks, class_names)
    axes.set(xlabel="predicted", ylabel="true")
    if title:
        axes.set_title(title)
    fontsize = 9 if num_classes <= 10 else 7
    for row in range(num_classes):
        for column in range(num_classes):
            value = values[row, column]
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > vmax / 2 else "black"
            axes.text(column, row, text, ha="center", va="center", color=color, fontsize=fontsize)
    _save(figure, path)


# --- report ---------------------------------------------------------------------------------------------

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
    """A fraction as a percentage with one decimal (`missing` for None or a blank CSV cell): every table and card
    of artnet writes its figures through this one function."""
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
    """A Markdown evaluation report: run info, a summary row per head, then per-class accuracy per head.

    `report` is ``{"heads": {head: head_metrics(...)}, **info}``; info values that are strings or numbers
    become the bullet list at the top, anything nested is left to the JSON report.
    """
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
    for head, metrics in heads.items():
        cells = [_cell(key, metrics.get(key)) for key, _ in _SUMMARY_COLUMNS]
        lines.append(f"| {_escape(head)} | " + " | ".join(cells) + " |")

    if any("chance" in metrics for metrics in heads.values()):
        lines += [
            "",
            "## Baselines",
            "",
            "What a model scores without looking: guessing uniformly, and always answering one class.",
            "",
            "| head | chance | training majority | this data's majority |",
            "| --- | ---: | --- | --- |",
        ]
        for head, metrics in heads.items():
            cells = [percent(metrics.get("chance"))]
            for key in ("train_majority", "data_majority"):
                named = metrics.get(key)
                cells.append(
                    f"{_escape(named['class'])}: {percent(named['top1'])}" if named else "n/a (no label counts)"
                )
            lines.append(f"| {_escape(head)} | " + " | ".join(cells) + " |")

    dated = {head: metrics for head, metrics in heads.items() if "within_one_block" in metrics}
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
        for head, metrics in dated.items():
            years = [metrics.get(key) for key in ("year_mae", "year_median_ae", "year_mae_chance")]
            cells = [percent(metrics.get("within_one_block")), percent(metrics.get("within_one_block_chance"))]
            cells += [str(metrics.get("year_n", 0))] + ["n/a" if v is None else f"{v:.1f}" for v in years]
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

    for head, metrics in heads.items():
        lines += ["", f"## Per-class accuracy: {_escape(head)}", ""]
        lines += ["| class | n | accuracy |", "| --- | ---: | ---: |"]
        for name, row in metrics.get("per_class_accuracy", {}).items():
            lines.append(f"| {_escape(name)} | {row['n']} | {percent(row['accuracy'])} |")
    return "\n".join(lines) + "\n"
