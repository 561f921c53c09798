"""The SavedModel's answers as artnet serves them: each calibrated head's temperature and conformal set, in
TensorFlow, so that `tf.saved_model.load` alone (TF Serving, no artnet, no numpy) gives what the predictor gives.

`calibrated(serve, calibration)` wraps the model's serving function (`ArtNet.serving_function`). For each head
that `calibration` (per head, an `artnet.evaluation.calibration.HeadCalibration`) covers, the outputs become:

- `<head>`: the calibrated probabilities, softmax(log p / T), the ones the predictor and the demo show;
- `<head>_raw`: the network's own softmax, which an export without calibration serves under `<head>`;
- `<head>_set`: booleans per class, the conformal set at the stored coverage (the top class always in it).

The arithmetic is `artnet.evaluation.calibration` and `artnet.evaluation.conformal`'s, in float64 as theirs is, so
a set boundary falls where numpy puts it; the tests compare both on the same images. Heads without a calibration
(and a year head's `year` / `year_sigma`) pass through unchanged.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from artnet.evaluation.calibration import HeadCalibration
from artnet.models.artnet import SERVING_INPUT

RAW = "_raw"  # suffix of a calibrated head's raw softmax
SET = "_set"  # suffix of a calibrated head's conformal set (booleans per class)
# As `calibration._logits`: log p floored at float32's smallest normal, so a probability that underflowed to 0
# stays a finite logit.
_LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))


def calibrated_probabilities(probs: tf.Tensor, temperature: float) -> tf.Tensor:
    """softmax(max(log p, floor) / T) in float64: `HeadCalibration.probabilities` in TensorFlow."""
    logits = tf.maximum(tf.math.log(tf.cast(probs, tf.float64)), _LOG_FLOOR)
    return tf.nn.softmax(logits / float(temperature), axis=-1)


def set_mask(probs: tf.Tensor, qhat: float, lam: float = 0.0, k_reg: int = 0) -> tf.Tensor:
    """(n, classes) booleans, `conformal.prediction_set_mask` in TensorFlow: a class is in the set when the mass of
    the classes ranked at or above it (plus RAPS' `lam` per rank beyond `k_reg`) is at most `qhat`; the top class
    scores 0. Ties rank the lower index first, as numpy's stable argsort does."""
    probs = tf.cast(probs, tf.float64)
    order = tf.argsort(-probs, axis=-1, stable=True)
    ranked = tf.gather(probs, order, batch_dims=1)
    scores = tf.cumsum(ranked, axis=-1)
    classes = tf.shape(probs)[-1]
    if lam:
        ranks = tf.cast(tf.range(1, classes + 1), tf.float64)
        scores += lam * tf.maximum(ranks - float(k_reg), 0.0)
    scores = tf.concat([tf.zeros_like(scores[:, :1]), scores[:, 1:]], axis=-1)  # the top class is always in
    in_class_order = tf.gather(scores, tf.argsort(order, axis=-1, stable=True), batch_dims=1)
    return in_class_order <= qhat  # qhat inf: every class


def calibrated(serve, calibration: dict[str, HeadCalibration]):
    """`serve` (images -> {head: probabilities}) with each calibrated head's outputs as the top describes."""
    rules = {head: (float(c.temperature), c.sets) for head, c in calibration.items()}

    @tf.function(input_signature=[SERVING_INPUT])
    def serve_calibrated(images):
        results = dict(serve(images))
        for head, (temperature, sets) in rules.items():
            if head not in results:
                continue
            raw = results[head]
            scaled = calibrated_probabilities(raw, temperature)
            results[f"{head}{RAW}"] = raw
            results[head] = tf.cast(scaled, tf.float32)
            results[f"{head}{SET}"] = set_mask(scaled, sets.qhat, sets.lam, sets.k_reg)
        return results

    return serve_calibrated
