"""Multi- vs single-head statistics over a grid of runs: paired differences, Δm and learning curves.

This module owns the statistics of `experiments/grid.py`: per run top-1 and balanced accuracy computed for many
runs at once (`metric_values`; vectorised, as scikit-learn scores one run a call), their paired bootstrap over
the test images (or painters) and the seeds, the multi minus single-head difference, LibMTL's Δm and the
learning-curve figure (drawn through `plots.save_figure`).

A *group* is the runs of one setting (an arm x loss weighting x training fraction), one per seed, all evaluated
on the same test images. Every interval here is a percentile bootstrap whose replicates

1. resample the test images once (indices with replacement) and apply the same indices to every run of every
   group: paired, since all runs saw the same paintings (a head's unknown labels are then left out). Where the
   predictions name each image's painter (`painter` in `predictions.npz`), a replicate draws whole painters
   with replacement instead (the cluster bootstrap of `artnet.evaluation.intervals.paired_difference`): on a
   painter-disjoint test split one painter's paintings succeed or fail together, so the painters, not the
   images, are the independent draws;
2. resample, independently within each group, its seeds (with replacement) and average the group's metric over
   the drawn seeds: so the interval covers the test-image draw *and* the seed-to-seed spread. With
   `resample_seeds=False` each replicate averages over all of a group's seeds instead (image noise only).

Point estimates are means over a group's seeds on the whole test set. Metrics are higher-is-better:
top-1 and balanced accuracy (mean per-class recall over the classes present, as `artnet.evaluation.metrics`).

Δm follows LibMTL (Maninis et al. 2019; Vandenhende et al. 2021): the mean over tasks t of
(M_multi,t - M_single,t) / M_single,t, in %, each task against its own single-task model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np

from artnet.evaluation.intervals import cluster_members, cluster_resample
from artnet.evaluation.plots import save_figure

METRICS = ("top1", "balanced_accuracy")


def metric_values(y_true, y_pred, indices=None) -> dict[str, np.ndarray]:
    """Per run (a row of `y_pred`, shape (runs, images)), top-1 and balanced accuracy on the test images `indices`
    (default: all), unknown labels (-1) left out; nan where no image has a known label."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.atleast_2d(np.asarray(y_pred, dtype=np.int64))
    if y_pred.shape[1] != len(y_true):
        raise ValueError(f"length mismatch: {y_pred.shape[1]} predictions for {len(y_true)} labels")
    if indices is not None:
        y_true, y_pred = y_true[indices], y_pred[:, indices]
    known = y_true >= 0
    y_true, y_pred = y_true[known], y_pred[:, known]
    runs = len(y_pred)
    if not len(y_true):
        return {metric: np.full(runs, np.nan) for metric in METRICS}
    correct = (y_pred == y_true).astype(np.float64)
    classes = int(y_true.max()) + 1
    support = np.bincount(y_true, minlength=classes)
    cells = (np.arange(runs)[:, None] * classes + y_true[None, :]).ravel()
    hits = np.bincount(cells, weights=correct.ravel(), minlength=runs * classes).reshape(runs, classes)
    present = support > 0
    return {
        "top1": correct.mean(axis=1),
        "balanced_accuracy": (hits[:, present] / support[present]).mean(axis=1),
    }


@dataclasses.dataclass
class Group:
    """The runs of one setting, one per seed: per head the test labels (images,) and predictions (seeds, images);
    `painters` (images,) where the runs saved them."""

    y_true: dict[str, np.ndarray]
    y_pred: dict[str, np.ndarray]
    painters: np.ndarray | None = None

    @property
    def seeds(self) -> int:
        return len(next(iter(self.y_pred.values()))) if self.y_pred else 0

    @property
    def images(self) -> int:
        return len(next(iter(self.y_true.values()))) if self.y_true else 0

    @classmethod
    def from_predictions(cls, runs: list[Mapping[str, np.ndarray]]) -> Group:
        """From each seed's `predictions.npz` (per head `<head>` probabilities and `<head>_true` labels): the heads
        every run predicts (a year head's regression is not a class: left out). Refuses runs evaluated on
        different test images."""
        if not runs:
            raise ValueError("a group needs at least one run")
        heads = [key for key in runs[0] if not key.endswith("_true") and f"{key}_true" in runs[0] and key != "year"]
        heads = [head for head in heads if all(head in run for run in runs)]
        y_true, y_pred = {}, {}
        for head in heads:
            truths = [np.asarray(run[f"{head}_true"]) for run in runs]
            if any(truth.shape != truths[0].shape or (truth != truths[0]).any() for truth in truths[1:]):
                raise ValueError(f"the runs' {head!r} test labels differ: a paired comparison needs one test set")
            y_true[head] = truths[0]
            y_pred[head] = np.stack([np.asarray(run[head]).argmax(axis=1) for run in runs])
        painters = None
        if all("painter" in run for run in runs):
            painters = np.asarray(runs[0]["painter"]).astype(str)
            if any((np.asarray(run["painter"]).astype(str) != painters).any() for run in runs[1:]):
                raise ValueError("the runs' test painters differ: a paired comparison needs one test set")
        return cls(y_true=y_true, y_pred=y_pred, painters=painters)


@dataclasses.dataclass
class Bootstrap:
    """Per (metric, group key, head): the point estimate and the bootstrap replicates (all groups share each
    replicate's image resample, so differences of replicates are paired)."""

    point: dict[tuple[str, Hashable, str], float]
    replicates: dict[tuple[str, Hashable, str], np.ndarray]
    n_resamples: int
    resample_seeds: bool
    by_painter: bool = False  # whether replicates drew whole painters (else images)


def bootstrap(
    groups: Mapping[Hashable, Group], n_resamples: int = 1000, seed: int = 0, resample_seeds: bool = True
) -> Bootstrap:
    """Point estimates and paired bootstrap replicates of every metric of every group and head (see the module)."""
    groups = {key: group for key, group in groups.items() if group.y_pred}
    if not groups:
        raise ValueError("nothing to bootstrap: no group has predictions")
    images = {group.images for group in groups.values()}
    if len(images) != 1:
        raise ValueError(f"the groups were tested on different numbers of images: {sorted(images)}")
    (n,) = images
    labels_by_head: dict[str, np.ndarray] = {}
    for group in groups.values():
        for head, truth in group.y_true.items():
            if head in labels_by_head and (labels_by_head[head] != truth).any():
                raise ValueError(f"the groups' {head!r} test labels differ: a paired comparison needs one test set")
            labels_by_head.setdefault(head, truth)
    painters = [group.painters for group in groups.values()]
    by_painter = all(p is not None for p in painters)
    if by_painter and any((p != painters[0]).any() for p in painters[1:]):
        raise ValueError("the groups' test painters differ: a paired comparison needs one test set")
    members = cluster_members(painters[0] if by_painter else None, n)
    point, replicates = {}, {}
    for key, group in groups.items():
        for head in group.y_pred:
            for metric, values in metric_values(group.y_true[head], group.y_pred[head]).items():
                point[metric, key, head] = float(np.mean(values))
                replicates[metric, key, head] = np.empty(n_resamples)
    rng = np.random.default_rng(seed)
    for b in range(n_resamples):
        indices = cluster_resample(members, rng)
        for key, group in groups.items():
            drawn = rng.integers(0, group.seeds, group.seeds) if resample_seeds else np.arange(group.seeds)
            for head in group.y_pred:
                values = metric_values(group.y_true[head], group.y_pred[head], indices)
                for metric in METRICS:
                    replicates[metric, key, head][b] = values[metric][drawn].mean()
    return Bootstrap(
        point=point,
        replicates=replicates,
        n_resamples=n_resamples,
        resample_seeds=resample_seeds,
        by_painter=by_painter,
    )


def interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (nan replicates left out)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    replicates = np.asarray(replicates, dtype=float)
    replicates = replicates[~np.isnan(replicates)]
    if not len(replicates):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return float(low), float(high)


def difference(
    result: Bootstrap, metric: str, multi: Hashable, single: Hashable, head: str, confidence: float = 0.95
) -> dict:
    """`head`'s metric, group `multi` minus group `single`, with its paired interval."""
    a, b = result.point[metric, multi, head], result.point[metric, single, head]
    low, high = interval(result.replicates[metric, multi, head] - result.replicates[metric, single, head], confidence)
    return {"multi": a, "single": b, "difference": a - b, "low": low, "high": high}


def delta_m_value(multi: Mapping[str, float | np.ndarray], single: Mapping[str, float | np.ndarray]):
    """LibMTL's Δm in %: mean over tasks of (M_multi,t - M_single,t) / M_single,t x 100 (higher-is-better
    metrics). Works elementwise on arrays of replicates; a zero single-task metric gives nan."""
    if set(multi) != set(single) or not multi:
        raise ValueError(f"Δm needs the same tasks on both sides, got {sorted(multi)} and {sorted(single)}")
    terms = []
    for task in multi:
        m, s = np.asarray(multi[task], dtype=float), np.asarray(single[task], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms.append(np.where(s != 0, (m - s) / s, np.nan))
    value = 100.0 * np.mean(terms, axis=0)
    return float(value) if np.ndim(value) == 0 else value


def delta_m(
    result: Bootstrap, metric: str, multi: Hashable, singles: Mapping[str, Hashable], confidence: float = 0.95
) -> dict:
    """Δm of group `multi` against the single-head groups `singles` ({head: group key}), with its interval."""
    estimate = delta_m_value(
        {head: result.point[metric, multi, head] for head in singles},
        {head: result.point[metric, key, head] for head, key in singles.items()},
    )
    replicates = delta_m_value(
        {head: result.replicates[metric, multi, head] for head in singles},
        {head: result.replicates[metric, key, head] for head, key in singles.items()},
    )
    low, high = interval(replicates, confidence)
    return {"delta_m": estimate, "low": low, "high": high, "heads": tuple(singles)}


# --- plot -----------------------------------------------------------------------------------------------


def plot_learning_curves(
    curves: Mapping[str, list[tuple[float, float, float, float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "training painters",
    ylabel: str = "balanced accuracy",
    chance: float | None = None,
) -> Path:
    """One line per label through (x, mean, low, high) points, the band between low and high (e.g. min-max over
    seeds); a log x axis (fractions are geometric). Written with Agg, no pyplot state."""
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    for label, points in curves.items():
        points = sorted(points)
        if not points:
            continue
        x, mean, low, high = (np.asarray(column, dtype=float) for column in zip(*points, strict=True))
        (line,) = axes.plot(x, mean, marker="o", label=label)
        axes.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    if chance is not None:
        axes.axhline(chance, color="grey", linestyle=":", label="chance")
    if all(x > 0 for points in curves.values() for x, *_ in points):
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return save_figure(figure, path, dpi=110)
