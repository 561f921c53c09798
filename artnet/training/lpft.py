"""LP-FT (`heads_from=probe`): the heads start as the linear probe, and fine-tuning from it must earn its keep.

The heads phase becomes the probe written into the heads (`artnet.training.probe.probe_into_heads`); after
fine-tuning, the probe's weights come back unless the heads' mean validation balanced accuracy rose. Used alike
by training on images and on cached features, so both keep or undo fine-tuning by the same measure.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import balanced_accuracy_score

from artnet.config import TrainConfig
from artnet.data.atomic_files import write_atomically
from artnet.data.sources import Source
from artnet.models.artnet import ArtNet
from artnet.training.checked_files import warn
from artnet.training.probe import probe_into_heads
from artnet.workdir import Workdir


def mean_balanced_accuracy(network: keras.Model, data: tf.data.Dataset, source: Source, heads) -> float:
    """The heads' mean balanced accuracy over `data` (batches of `source`'s examples, in order, one view)."""
    predicted = network.predict(data.map(lambda x, y, w: (x,)), verbose=0)  # (x,): a tuple x is the inputs
    scores = []
    for head in heads:
        known = source.labels[head] >= 0
        if known.any():
            choice = np.asarray(predicted[head]).argmax(axis=1)
            scores.append(balanced_accuracy_score(source.labels[head][known], choice[known]))
    return float(np.mean(scores))


def heads_from_probe(model: ArtNet, config: TrainConfig, sources: dict, workdir: Workdir) -> None:
    """The heads phase of `heads_from=probe`: each head becomes its linear probe, fitted by scikit-learn on the
    frozen features that the heads see (from the feature cache), its C chosen on validation (see
    `artnet.training.probe`)."""
    choices = probe_into_heads(model, config, sources)
    write_atomically(workdir.probe_choices, json.dumps({"choices": choices}, indent=2).encode())
    print(
        "phase heads: each head is its linear probe (C chosen on validation): "
        + ", ".join(
            f"{head} C={choice['C']:g} {choice['class_weight'] or 'unweighted'}" for head, choice in choices.items()
        ),
        flush=True,
    )


def keep_fine_tuning_if_better(
    model: ArtNet, network: keras.Model, val_data, source: Source, workdir: Workdir, start_score: float, start_weights
) -> bool:
    """After fine-tuning from the probe: keep it only if it raised the heads' mean validation balanced accuracy
    (the measure the probe was chosen by; the loss falls as the heads sharpen towards the majority), else put the
    probe's weights back. Records both scores in the workdir's probe.json; returns whether it was kept."""
    end_score = mean_balanced_accuracy(network, val_data, source, model.heads)
    kept = end_score > start_score
    if not kept:
        model.set_weights(start_weights)
    verdict = "kept" if kept else "undone: the probe it started from was better"
    print(
        f"fine-tuning {verdict} (mean validation balanced accuracy {100 * start_score:.1f} % at the start, "
        f"{100 * end_score:.1f} % after)",
        flush=True,
    )
    record = read_probe_choices(workdir)
    record["fine_tune"] = {
        "kept": kept,
        "validation_mean_balanced_accuracy_start": start_score,
        "validation_mean_balanced_accuracy_end": end_score,
    }
    write_atomically(workdir.probe_choices, json.dumps(record, indent=2).encode())
    return kept


def read_probe_choices(workdir: Workdir) -> dict:
    """probe.json as an earlier run (or this one) wrote it; {} with a one-line warning when it cannot be read."""
    path = workdir.probe_choices
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            return record
        problem = "not a JSON object"
    except (OSError, ValueError) as error:
        problem = f"{type(error).__name__}: {error}"
    warn(f"{path} is unreadable ({problem}); it is written again without the probe's choices")
    return {}
