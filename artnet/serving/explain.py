"""Grad-CAM: where in the painting a head looked, as a heat-map over the image.

The gradient of a head's chosen class with respect to the backbone's last feature map, averaged per channel,
weighs that feature map; its positive part, upsampled to the image, is the map (Selvaraju et al., 2017).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class GradCam:
    """Heat-maps for every head of an ArtNet model: one gradient tape through the model's own backbone,
    pooling and head layers per map (no second model is built)."""

    def __init__(self, model):
        self.model = model
        self._heads = {head: model.get_layer(head) for head in model.heads}

    def _forward(self, batch):
        """The model's own layers, called step by step to keep hold of the feature map (dropout is off here)."""
        feature_map, features = self.model.head_features(batch)
        return feature_map, {head: layer(features) for head, layer in self._heads.items()}

    def heatmap(self, pixels: np.ndarray, head: str, class_index: int | None = None) -> np.ndarray:
        """`pixels`: (S, S, 3) in [0, 255] at the model's size -> (S, S) float in [0, 1]."""
        batch = tf.convert_to_tensor(pixels[None].astype(np.float32))
        with tf.GradientTape() as tape:
            feature_map, outputs = self._forward(batch)
            probabilities = outputs[head]
            chosen = int(tf.argmax(probabilities[0])) if class_index is None else class_index
            score = probabilities[:, chosen]
        gradients = tape.gradient(score, feature_map)
        feature_map = tf.cast(feature_map, tf.float32)
        if gradients is None:
            return np.zeros(pixels.shape[:2], np.float32)
        gradients = tf.cast(gradients, tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))[0]
        cam = cam / (tf.reduce_max(cam) + 1e-8)
        cam = tf.image.resize(cam[..., None], pixels.shape[:2], method="bilinear")[..., 0]
        return cam.numpy().astype(np.float32)


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The painting with a 'jet'-coloured heat-map blended over it (uint8, same size)."""
    from matplotlib import colormaps  # heavy (0.3 s to import) and only Grad-CAM draws: imported when it does

    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colours
    return np.clip(blended, 0, 255).astype(np.uint8)
