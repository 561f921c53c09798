"""ArtNet: one backbone, pooled features, dropout, and named softmax heads (dict outputs).

With `year_head=True` it has one more output, `year`: (μ, log σ) of the painting's year (`artnet.models.year`).
`heads` are always the classification heads; `tasks` are what trains: the heads, then `year` if there is one.

A single-head model is the same class with `heads=("school",)`. Heads always appear in the fixed order of
`artnet.labels.HEADS`, whatever order they are asked for in, and their softmax runs in float32 under any
mixed-precision policy. The pooled features are exposed (`embedding_model`) for search and explanations.

The model owns its serving preprocessing, as keras-hub's image converters do: `serving_function()` takes uint8
images of any size, resizes and centre-crops them exactly as the training pipeline does, and returns float32
probabilities. The SavedModel export and the `Predictor` both serve through it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from artnet import labels
from artnet.models.backbones import build_backbone, get_spec
from artnet.models.year import LOG_SIGMA_MAX, LOG_SIGMA_MIN, YEAR, YEAR_CENTRE, YEAR_SCALE
from artnet.preprocessing import resize_and_crop

POOLED = "pooled"
YEAR_SIGMA = "year_sigma"  # served beside `year`: the standard deviation of the predicted year
EMBEDDING = "embedding"
# What serving takes: a batch of uint8 RGB images, any height and width (each resized to the model's size).
SERVING_INPUT = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


@keras.saving.register_keras_serializable(package="artnet")
class ArtNet(keras.Model):
    """Images ([0, 255] RGB, `image_size` square) -> {head: class probabilities}."""

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        heads=labels.HEADS,
        image_size: int | None = None,
        dropout: float = 0.2,
        backbone_weights: str | None = None,
        year_head: bool = False,
        **kwargs,
    ):
        heads = labels.validate_heads(heads)
        image_size = image_size or get_spec(backbone).image_size

        # === Layers ===
        backbone_model = build_backbone(backbone, weights=backbone_weights, image_size=image_size)
        pooling = keras.layers.GlobalAveragePooling2D(name=POOLED)
        dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        head_layers = {
            head: keras.layers.Dense(len(labels.VOCABULARIES[head]), activation="softmax", dtype="float32", name=head)
            for head in heads
        }
        if year_head:  # (μ, log σ) of the normalised year; float32 like the softmax heads
            head_layers[YEAR] = keras.layers.Dense(2, dtype="float32", name=YEAR)

        # === Functional Model ===
        images = keras.Input((image_size, image_size, 3), name="image")
        pooled = pooling(backbone_model(images))
        features = dropout_layer(pooled)
        outputs = {head: layer(features) for head, layer in head_layers.items()}
        kwargs.setdefault("name", "artnet")
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone_name = backbone
        self.heads = heads
        self.year_head = bool(year_head)
        self.tasks = (*heads, YEAR) if year_head else heads
        self.image_size = image_size
        self.dropout_rate = dropout
        self.backbone = backbone_model

    def get_config(self) -> dict:
        # Weights travel in the saved file: reloading must not fetch ImageNet weights again.
        return {
            "backbone": self.backbone_name,
            "heads": list(self.heads),
            "image_size": self.image_size,
            "dropout": self.dropout_rate,
            "backbone_weights": None,
            "year_head": self.year_head,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> ArtNet:
        # Loading never fetches weights, whatever the file says: the saved file carries them, and a crafted
        # `backbone_weights` (a name or URL) would otherwise make opening a model reach out to the network.
        return cls(**{**config, "backbone_weights": None})

    def serving_function(self, embedding: bool = False):
        """A `tf.function` over `SERVING_INPUT`: uint8 images of any size -> {head: float32 probabilities}, plus
        the pooled features under `EMBEDDING` when asked (from the same forward pass). A year head serves as
        `year` (mean year) and `year_sigma` (its standard deviation, in years)."""
        network = self
        if embedding:
            outputs = {task: self.get_layer(task).output for task in self.tasks}
            outputs[EMBEDDING] = self.get_layer(POOLED).output
            network = keras.Model(self.input, outputs, name=f"{self.name}_serving")
        image_size = self.image_size

        @tf.function(input_signature=[SERVING_INPUT])
        def serve(images):
            pixels = tf.cast(resize_and_crop(images, image_size), tf.float32)
            results = {name: tf.cast(tensor, tf.float32) for name, tensor in network(pixels, training=False).items()}
            if YEAR in results:
                raw = results.pop(YEAR)
                results[YEAR] = YEAR_CENTRE + YEAR_SCALE * raw[:, 0]
                results[YEAR_SIGMA] = YEAR_SCALE * tf.exp(tf.clip_by_value(raw[:, 1], LOG_SIGMA_MIN, LOG_SIGMA_MAX))
            return results

        return serve

    def embedding_model(self) -> keras.Model:
        """Images -> pooled backbone features (before dropout)."""
        return keras.Model(self.inputs, self.get_layer(POOLED).output, name=f"{self.name}_embedding")
