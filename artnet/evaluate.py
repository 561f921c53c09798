"""Evaluate a model on a source: report.json, report.md, a reliability diagram and a confusion matrix per head.

Every head is scored over the examples whose label for that head is known; the majority baseline answers the
train split's most frequent class (from `label_counts.json`, written by training beside the model).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from artnet import labels, metrics
from artnet.pipeline import make_dataset
from artnet.sources import Source
from artnet.workdir import Evaluation


def predict_probabilities(model, source: Source, batch_size: int = 32) -> dict[str, np.ndarray]:
    dataset = make_dataset(source, model.heads, model.image_size, batch_size, training=False)
    images_only = dataset.map(lambda images, y, w: images)
    outputs = model.predict(images_only, verbose=0)
    return {head: np.asarray(outputs[head], dtype=np.float64) for head in model.heads}


def majority_classes(counts: dict[str, list[int]] | None, source: Source) -> dict[str, int]:
    """Per head, the train split's most frequent class (or, lacking counts, the evaluated split's)."""
    majority = {}
    for head in labels.HEADS:
        if counts and head in counts and sum(counts[head]):
            majority[head] = int(np.argmax(counts[head]))
        else:
            known = source.labels[head][source.labels[head] >= 0]
            majority[head] = int(np.bincount(known).argmax()) if len(known) else 0
    return majority


def evaluate(model, source: Source, out_dir: str | Path, train_counts=None, batch_size: int = 32) -> dict:
    files = Evaluation(Path(out_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    probabilities = predict_probabilities(model, source, batch_size)
    majority = majority_classes(train_counts, source)
    report = {
        "model": getattr(model, "backbone_name", model.name),
        "data": source.name,
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
        report["heads"][head] = result
        if result["n"]:
            metrics.plot_reliability_diagram(y_true, probabilities[head], files.reliability_png(head), head)
            metrics.plot_confusion_matrix(
                np.asarray(result["confusion_matrix"]), names, files.confusion_png(head), head
            )
    files.report_json.write_text(json.dumps(report, indent=2))
    files.report_md.write_text(metrics.format_report_markdown(report))
    np.savez_compressed(files.predictions, **probabilities, **{f"{h}_true": source.labels[h] for h in labels.HEADS})
    return report
