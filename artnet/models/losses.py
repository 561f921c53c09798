"""Per-head losses: sparse cross-entropy, optionally with label smoothing.

Keras 3's `SparseCategoricalCrossentropy` has no `label_smoothing`; the categorical one has, but wants one-hot
targets. The pipeline yields integer labels (masked ones already at class 0 with weight 0), so this loss
one-hots them itself. With smoothing 0 it equals the sparse loss (tested).
"""

from __future__ import annotations

import keras


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


def head_loss(head: str, num_classes: int, label_smoothing: float = 0.0) -> keras.losses.Loss:
    if label_smoothing:
        return SmoothedSparseCrossentropy(num_classes, label_smoothing, name=f"{head}_loss")
    return keras.losses.SparseCategoricalCrossentropy(name=f"{head}_loss")
