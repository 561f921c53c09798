"""The figures of an evaluation report: reliability diagram, risk-coverage curve, confusion matrix and error against
distance in time.

This module owns drawing, and `save_figure`, the one way artnet writes a figure: every figure is a
`matplotlib.figure.Figure` rendered by Agg, so that nothing lands in pyplot's global state (a server or a long
grid run would leak figures). The numbers drawn come from `metrics`. matplotlib is imported inside the functions
that draw: it is heavy, and the modules that import this one (evaluation, the grid) mostly only compute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from artnet.evaluation.metrics import (
    aurc,
    expected_calibration_error,
    oracle_aurc,
    reliability_bins,
    risk_coverage_curve,
)


def save_figure(figure, path, **savefig) -> Path:
    """Write a figure made with `matplotlib.figure.Figure` as PNG (creating its folder): Agg renders it, pyplot
    never holds it. `savefig` goes to `Figure.savefig` (e.g. dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: only when a figure is written

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", **savefig)
    return path


def plot_reliability_diagram(y_true, probs, path, title: str = "", calibrated_probs=None) -> None:
    """Accuracy per confidence bin against the diagonal (perfect calibration), with bin counts beneath.

    With `calibrated_probs` (the same rows after temperature scaling, `calibration`) each of their occupied bins
    is drawn over the bars as a point (mean confidence, accuracy), on the diagonal when calibrated, and their ECE
    beside the first, so one figure shows before and after.
    """
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

    table = reliability_bins(y_true, probs)
    ece = expected_calibration_error(y_true, probs)
    lowers = np.array([b["lower"] for b in table])
    width = table[0]["upper"] - table[0]["lower"]
    accuracy = np.array([b["accuracy"] or 0.0 for b in table])
    confidence = np.array([b["confidence"] if b["count"] else np.nan for b in table])
    counts = np.array([b["count"] for b in table])

    figure = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    bars = "accuracy" if calibrated_probs is None else "accuracy before T"
    top.bar(lowers, accuracy, width=width, align="edge", edgecolor="black", color="tab:blue", label=bars)
    top.plot(lowers + width / 2, confidence, "o", color="tab:red", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ece_text = f"ECE = {ece:.3f}" if ece is not None else "ECE = n/a (no labelled examples)"
    if calibrated_probs is not None:
        after = reliability_bins(y_true, calibrated_probs)
        occupied = [b for b in after if b["count"]]
        top.plot(
            [b["confidence"] for b in occupied],
            [b["accuracy"] for b in occupied],
            "s-",
            color="tab:green",
            markersize=4,
            label="after T: accuracy at mean confidence",
        )
        ece_after = expected_calibration_error(y_true, calibrated_probs)
        ece_text += f" (after T: {ece_after:.3f})" if ece_after is not None else ""
    top.legend(loc="upper left", fontsize="small")
    top.set_title(f"{title}\n{ece_text}" if title else ece_text)
    bottom.bar(lowers, counts, width=width, align="edge", edgecolor="black", color="gray")
    bottom.set(xlabel="top-1 confidence", ylabel="examples")
    save_figure(figure, path)


def plot_risk_coverage(y_true, probs, path, title: str = "", calibrated_probs=None) -> None:
    """Top-1 error among the answered against the share answered, answering the most confident first
    (`metrics.risk_coverage_curve`), with its AURC; the oracle's curve (every right answer first) beneath it, the
    best this accuracy allows. With `calibrated_probs` the curve ranked by the calibrated top probability too
    (temperature scaling keeps each answer but may reorder confidences across paintings)."""
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

    figure = Figure(figsize=(5, 4), layout="constrained")
    axes = figure.subplots()
    curves = [("confidence", probs, "tab:blue")]
    if calibrated_probs is not None:
        curves = [("raw confidence", probs, "tab:blue"), ("calibrated confidence", calibrated_probs, "tab:green")]
    for name, scores, colour in curves:
        coverage, risk = risk_coverage_curve(y_true, scores)
        if len(coverage):
            axes.step(coverage, risk, where="post", color=colour, label=f"{name}: AURC {aurc(y_true, scores):.3f}")
    _, risk = risk_coverage_curve(y_true, probs)
    if len(risk):
        accuracy = 1 - risk[-1]  # the risk at full coverage is the overall top-1 error
        answered = np.linspace(0, 1, 201)[1:]
        oracle = np.clip(1 - accuracy / answered, 0, None)  # no error until every right answer is given
        axes.plot(answered, oracle, "--", color="gray", label=f"oracle: AURC {oracle_aurc(y_true, probs):.3f}")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="coverage (share answered)", ylabel="risk (top-1 error of answered)")
    axes.legend(loc="upper left", fontsize="small")
    axes.set_title(title or "risk against coverage")
    save_figure(figure, path)


def _annotate_cells(axes, values: np.ndarray, normalize: bool, vmax: float) -> None:
    """Each cell's value written on it, white on dark cells."""
    fontsize = 9 if len(values) <= 10 else 7
    for row in range(len(values)):
        for column in range(len(values)):
            value = values[row, column]
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > vmax / 2 else "black"
            axes.text(column, row, text, ha="center", va="center", color=color, fontsize=fontsize)


def plot_confusion_matrix(matrix, class_names, path, title: str = "", normalize: bool = True) -> None:
    """Heat-map of a confusion matrix, rows = true class; row-normalised by default so rows read as recall."""
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

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
    _annotate_cells(axes, values, normalize, vmax)
    save_figure(figure, path)


def plot_block_distance(fractions, path, title: str = "") -> None:
    """Fraction of paintings against |top-1 block - true block| (0 = right, 1 = a neighbour, ...)."""
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

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
    save_figure(figure, path)
