"""Bootstrap intervals: how much a test-set number, or the difference between two runs, could move with another
draw of paintings.

This module owns the percentile bootstrap of a per-example statistic, the vectorised bootstrap of balanced
accuracy, the cluster bootstrap (whole painters drawn with replacement: `cluster_members`, `cluster_resample`,
also used by `mtl_stats`) and the paired difference of two runs on the same test images. scikit-learn has none
of these; the metrics they resample are those of `metrics` (balanced accuracy as mean recall over the classes
present), recomputed here from counts because a replicate cannot afford scikit-learn's input validation
(about 1 ms a call, 2,000 calls an interval). Unknown labels (-1) are left out first, as everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from artnet.evaluation.metrics import drop_unknown

# Bootstrap resamples are drawn in chunks of about this many indices, to bound memory on big test sets.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


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
    y_true, y_pred = drop_unknown(y_true, y_pred)
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


def _mean_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Balanced accuracy of known labels from one bincount: `metrics.balanced_accuracy`'s number, for a replicate."""
    matrix = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    matrix = matrix.reshape(num_classes, num_classes)
    support = matrix.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


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
    y_true, pred_a, pred_b, *grouped = drop_unknown(y_true, pred_a, pred_b, *([] if groups is None else [groups]))
    if not len(y_true):
        raise ValueError("a paired difference needs at least one example with a known label")
    pred_a, pred_b = pred_a.astype(np.int64), pred_b.astype(np.int64)
    if min(pred_a.min(), pred_b.min()) < 0:
        raise ValueError("predictions must be class indices >= 0")
    num_classes = int(max(y_true.max(), pred_a.max(), pred_b.max())) + 1

    def both(indices):
        y, a, b = y_true[indices], pred_a[indices], pred_b[indices]
        return (
            np.mean(b == y) - np.mean(a == y),
            _mean_recall(y, b, num_classes) - _mean_recall(y, a, num_classes),
        )

    members = cluster_members(grouped[0] if grouped else None, len(y_true))
    rng = np.random.default_rng(seed)
    replicates = np.asarray([both(cluster_resample(members, rng)) for _ in range(n_resamples)])
    point = both(np.arange(len(y_true)))
    return {
        metric: (float(point[column]), *_percentile_interval(replicates[:, column], confidence))
        for column, metric in enumerate(("top1", "balanced_accuracy"))
    }
