"""Evaluate a model on a source: report.json, report.md, and per head the figures (reliability, risk-coverage,
confusion).

Every head is scored over the examples whose label for that head is known; the majority baseline answers the
train split's most frequent class (from `label_counts.json`, written by training beside the model). Beside it
each head reports `chance` (1 / classes), `train_majority` and `data_majority` ({class, top1}: always answering
the training split's or the evaluated data's own most frequent class), and the report states its `split_rule`.
Each head also reports its AURC beside the oracle's (`metrics.aurc`), and its risk-coverage curve is drawn beside
the reliability diagram (`risk_coverage_<head>.png`). The timeframe head also reports how far in time it errs
(`metrics.timeframe_year_metrics`): accuracy within one block, the fraction per block distance (plotted as
`distance_timeframe.png`) and, where the source knows years, the mean and median absolute error in years, each
with its uniform-chance value. A year head is scored under
`year` (`artnet.models.year.year_metrics`): errors in years against always answering the training mean year,
the fraction within its own σ, and the same block measures as the timeframe head. Given a calibration fitted on
another split (`calibration.calibrate_heads`, on validation), the report also holds, under `calibration`, each
head's ECE before and after its temperature and its conformal sets' coverage and size, and the reliability diagram
shows the calibrated bins over the raw ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from artnet import labels
from artnet.data.pipeline import make_dataset
from artnet.data.sources import Source
from artnet.evaluation import metrics, plots
from artnet.evaluation.calibration import calibration_metrics
from artnet.evaluation.report import format_report_markdown
from artnet.models.year import year_metrics
from artnet.workdir import Evaluation


def risk_coverage_png(files: Evaluation, head: str) -> Path:
    """The head's risk-coverage curve, beside its reliability diagram."""
    return files.root / f"risk_coverage_{head}.png"


def predict_probabilities(model, source: Source, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per head, the probabilities over `source`; with a year head also `year`: its raw (μ, log σ) outputs."""
    dataset = make_dataset(source, model.heads, model.image_size, batch_size, training=False, framing=model.framing)
    images_only = dataset.map(lambda images, y, w: images)
    outputs = model.predict(images_only, verbose=0)
    tasks = getattr(model, "tasks", None) or model.heads
    return {task: np.asarray(outputs[task], dtype=np.float64) for task in tasks}


# How each wga config splits its paintings (datasets/wga/README.md); other sources name their own rule.
SPLIT_RULES = {
    "artist": "by painter: every painter on one side of the train/test line (author-disjoint 70/15/15)",
    "random": "by image: a painter's works may fall on both sides (random 70/15/15; leakage of style is possible)",
    "sample": "by painter: a small author-disjoint sample (at most 25 paintings per school x timeframe cell)",
}


def split_rule_of(source_name: str) -> str:
    """The split rule a source's name implies (`wga/artist:test` -> by painter), or says it is not known."""
    for part in source_name.split(" + "):
        if part.startswith("wga/"):
            config = part[len("wga/") :].partition(":")[0]
            if config in SPLIT_RULES:
                return SPLIT_RULES[config]
    return "not stated: give --split-rule (a labelled folder's split is whatever made it)"


def data_majority_classes(source: Source) -> dict[str, int | None]:
    """Per head, the evaluated data's own most frequent known class (None when no label is known)."""
    majority = {}
    for head in labels.HEADS:
        known = source.labels[head][source.labels[head] >= 0]
        majority[head] = int(np.bincount(known).argmax()) if len(known) else None
    return majority


def majority_classes(counts: dict[str, list[int]] | None, source: Source) -> dict[str, int]:
    """Per head, the train split's most frequent class (or, lacking counts, the evaluated split's)."""
    of_data = data_majority_classes(source)
    return {
        head: int(np.argmax(counts[head])) if counts and sum(counts.get(head) or []) else (of_data[head] or 0)
        for head in labels.HEADS
    }


def baselines(y_true: np.ndarray, head: str, train_class: int | None, data_class: int | None) -> dict:
    """Chance and the two majority answers, each naming its class: what a model must beat to mean anything."""
    names = labels.VOCABULARIES[head]
    known = y_true[y_true >= 0]

    def answering(index):
        if index is None:
            return None
        return {"class": names[index], "top1": float(np.mean(known == index)) if len(known) else None}

    return {"chance": 1 / len(names), "train_majority": answering(train_class), "data_majority": answering(data_class)}


def evaluate(
    model,
    source: Source,
    out_dir: str | Path,
    train_counts=None,
    batch_size: int = 32,
    split_rule: str | None = None,
    train_year: float | None = None,
    calibration: dict | None = None,
) -> dict:
    """Score `model` on `source` into `out_dir` (see the top). `train_year`: the training split's mean year, the
    constant answer the year head is compared with (default: the evaluated data's own mean, optimistic).
    `calibration`: per head, a `calibration.HeadCalibration` fitted on another split (see the top)."""
    files = Evaluation(Path(out_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    probabilities = predict_probabilities(model, source, batch_size)
    majority = majority_classes(train_counts, source)
    data_majority = data_majority_classes(source)
    report = {
        "model": getattr(model, "backbone_name", model.name),
        "data": source.name,
        "split_rule": split_rule or split_rule_of(source.name),
        "examples": len(source),
        "majority_baseline_from": (
            "the training split's label counts"
            if train_counts
            else "the evaluated data itself (no training label counts were given: an optimistic baseline)"
        ),
        "heads": {},
    }
    for head in model.heads:
        names = list(labels.VOCABULARIES[head])
        y_true = source.labels[head]
        result = metrics.head_metrics(y_true, probabilities[head], names, majority[head])
        # majority_baseline stays the training majority's top-1 (others read it); the named baselines are added.
        result.update(baselines(y_true, head, majority[head] if train_counts else None, data_majority[head]))
        # Answers that may abstain: the risk-coverage area, and the least this accuracy allows (the oracle's).
        result.update(
            aurc=metrics.aurc(y_true, probabilities[head]), aurc_oracle=metrics.oracle_aurc(y_true, probabilities[head])
        )
        if head == "timeframe":  # time is ordered: how far off, in blocks and (where known) in years
            result.update(metrics.timeframe_year_metrics(y_true, probabilities[head], names, source.years))
        report["heads"][head] = result
        calibrated = None
        if calibration and head in calibration:  # the report gains the key only then: old reports stay as they were
            calibrated = calibration[head].probabilities(probabilities[head])
            per_head = report.setdefault("calibration", {})
            per_head[head] = calibration_metrics(y_true, probabilities[head], calibration[head])
        if result["n"]:
            plots.plot_reliability_diagram(
                y_true, probabilities[head], files.reliability_png(head), head, calibrated_probs=calibrated
            )
            plots.plot_risk_coverage(
                y_true, probabilities[head], risk_coverage_png(files, head), head, calibrated_probs=calibrated
            )
            plots.plot_confusion_matrix(np.asarray(result["confusion_matrix"]), names, files.confusion_png(head), head)
            if result.get("block_distance_fractions"):
                plots.plot_block_distance(result["block_distance_fractions"], files.distance_png(head), head)
    if labels.YEAR in probabilities:  # the year head, scored in years and read as a block
        report[labels.YEAR] = year_metrics(
            source.years, probabilities[labels.YEAR], source.labels["timeframe"], constant=train_year
        )
        if report[labels.YEAR].get("block_distance_fractions"):
            plots.plot_block_distance(
                report[labels.YEAR]["block_distance_fractions"], files.distance_png(labels.YEAR), "year head"
            )
    files.report_json.write_text(json.dumps(report, indent=2))
    files.report_md.write_text(format_report_markdown(report))
    truth = {f"{h}_true": source.labels[h] for h in labels.HEADS}
    np.savez_compressed(files.predictions, **probabilities, **truth, year_true=source.years, painter=source.painters)
    return report
