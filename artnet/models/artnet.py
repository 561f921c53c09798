"""ArtNet: one backbone, pooled features, dropout, and named softmax heads (dict outputs).

A single-head model is the same class with `heads=("school",)`. Heads always appear in the fixed order of
`artnet.labels.HEADS`, whatever order they are asked for in, and their softmax runs in float32 under any
mixed-precision policy. The pooled features are exposed (`embedding_model`) for search and explanations.
"""

from __future__ import annotations

import keras

from artnet import labels
from artnet.models.backbones import build_backbone, get_spec

POOLED = "pooled"


def ordered_heads(heads) -> tuple[str, ...]:
    heads = tuple(heads)
    unknown = [head for head in heads if head not in labels.HEADS]
    if unknown or not heads:
        raise ValueError(f"heads must be a non-empty subset of {labels.HEADS}; got {heads}")
    return tuple(head for head in labels.HEADS if head in heads)


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
        **kwargs,
    ):
        heads = ordered_heads(heads)
        image_size = image_size or get_spec(backbone).image_size

        # === Layers ===
        backbone_model = build_backbone(backbone, weights=backbone_weights, image_size=image_size)
        pooling = keras.layers.GlobalAveragePooling2D(name=POOLED)
        dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        head_layers = {
            head: keras.layers.Dense(len(labels.VOCABULARIES[head]), activation="softmax", dtype="float32", name=head)
            for head in heads
        }

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
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> ArtNet:
        return cls(**config)

    def embedding_model(self) -> keras.Model:
        """Images -> pooled backbone features (before dropout)."""
        return keras.Model(self.inputs, self.get_layer(POOLED).output, name=f"{self.name}_embedding")
