"""Per-head losses: sparse cross-entropy, optionally with label smoothing, and an ordinal-aware timeframe loss.

Keras 3's `SparseCategoricalCrossentropy` has no `label_smoothing`; the categorical one has, but wants one-hot
targets. The pipeline yields integer labels (masked ones already at class 0 with weight 0), so this loss
one-hots them itself. With smoothing 0 it equals the sparse loss (tested).
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="artnet")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against probabilities, targets smoothed towards uniform."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, name: str = "smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        targets = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), self.num_classes)
        return keras.losses.categorical_crossentropy(
            targets, keras.ops.reshape(y_pred, [-1, self.num_classes]), label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "label_smoothing": self.label_smoothing}


def ordinal_targets(num_classes: int, sigma: float) -> np.ndarray:
    """Row c: a discretised Gaussian over class distance |k - c| with width `sigma` (in classes), summing to 1."""
    distance = np.arange(num_classes)[None, :] - np.arange(num_classes)[:, None]
    weights = np.exp(-0.5 * (distance / sigma) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


@keras.saving.register_keras_serializable(package="artnet")
class OrdinalSoftCrossentropy(keras.losses.Loss):
    """Cross-entropy against soft targets spread over neighbouring classes (the timeframe's 50-year blocks).

    A painting of 1655 labelled 1651-1700 also teaches a little 1601-1650 and 1701-1750 and nothing of 1401-1450,
    so a near miss costs less than a blunder, which plain cross-entropy scores alike.
    """

    def __init__(self, num_classes: int, sigma: float = 1.0, name: str = "ordinal_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self._table = ordinal_targets(self.num_classes, self.sigma)

    def call(self, y_true, y_pred):
        index = keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32")
        targets = keras.ops.take(keras.ops.convert_to_tensor(self._table), index, axis=0)
        return keras.losses.categorical_crossentropy(targets, keras.ops.reshape(y_pred, [-1, self.num_classes]))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "sigma": self.sigma}


def head_loss(head: str, num_classes: int, label_smoothing: float = 0.0, timeframe_loss: str = "crossentropy"):
    """The loss of one head; `timeframe_loss="ordinal"` makes the timeframe head's targets ordinal-aware."""
    if head == "timeframe" and timeframe_loss == "ordinal":
        return OrdinalSoftCrossentropy(num_classes, sigma=1.0, name=f"{head}_loss")
    if label_smoothing:
        return SmoothedSparseCrossentropy(num_classes, label_smoothing, name=f"{head}_loss")
    return keras.losses.SparseCategoricalCrossentropy(name=f"{head}_loss")
