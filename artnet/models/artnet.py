"""ArtNet: one backbone, pooled features, dropout, and named softmax heads (dict outputs).

With `style_layers` (names of backbone layers) the heads also see each of those layers' per-channel mean and
standard deviation over the image, batch-normalised (`ChannelStatistics`): the texture and colour statistics of
mid-level features that describe a painting's style (Gatys et al., 2016; Huang & Belongie, 2017), which the
pooled last feature map, tuned for ImageNet objects, mostly averages away.

With `year_head=True` it has one more output, `year`: (μ, log σ) of the painting's year (`artnet.models.year`).
`heads` are always the classification heads; `tasks` are what trains: the heads, then `year` if there is one.

A single-head model is the same class with `heads=("school",)`. Heads always appear in the fixed order of
`artnet.labels.HEADS`, whatever order they are asked for in, and their softmax runs in float32 under any
mixed-precision policy. The pooled features are exposed (`embedding_model`) for search and explanations.

The model owns its serving preprocessing, as keras-hub's image converters do: `serving_function()` takes uint8
images of any size, makes them square exactly as the training pipeline does (its `framing`: centre crop or
squash), and returns float32 probabilities. The SavedModel export and the `Predictor` both serve through it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from artnet import labels
from artnet.data.preprocessing import check_framing, resize_and_crop
from artnet.models.backbones import build_backbone, get_spec, leaf_layers
from artnet.models.year import LOG_SIGMA_MAX, LOG_SIGMA_MIN, YEAR, YEAR_CENTRE, YEAR_SCALE

POOLED = "pooled"
YEAR_SIGMA = "year_sigma"  # served beside `year`: the standard deviation of the predicted year
EMBEDDING = "embedding"
STYLE = "style_statistics"  # the per-channel (mean, std) of the style layers, concatenated
STYLE_NORM = "style_norm"
FEATURES = "features"  # what the heads see with style layers: [pooled, normalised style statistics]
# What serving takes: a batch of uint8 RGB images, any height and width (each resized to the model's size).
SERVING_INPUT = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


@keras.saving.register_keras_serializable(package="artnet")
class ChannelStatistics(keras.layers.Layer):
    """[feature maps (B, H, W, C_i)] -> (B, sum of 2 C_i): each map's per-channel mean, then its standard
    deviation, over the spatial positions, in float32. The feature cache computes them with this same layer."""

    def call(self, maps):
        statistics = []
        for feature_map in maps:
            feature_map = keras.ops.cast(feature_map, "float32")
            mean = keras.ops.mean(feature_map, axis=(1, 2))
            variance = keras.ops.mean(keras.ops.square(feature_map), axis=(1, 2)) - keras.ops.square(mean)
            statistics += [mean, keras.ops.sqrt(keras.ops.maximum(variance, 0.0) + 1e-6)]
        return keras.ops.concatenate(statistics, axis=-1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], sum(2 * shape[-1] for shape in input_shapes))


def style_statistics_model(backbone: keras.Model, style_layers) -> keras.Model:
    """The backbone's input -> `ChannelStatistics` of `style_layers` (shares the backbone's layers)."""
    maps = [backbone.get_layer(name).output for name in style_layers]
    return keras.Model(backbone.input, ChannelStatistics(name=STYLE)(maps), name="style_taps")


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
        style_layers=(),
        framing: str = "crop",
        **kwargs,
    ):
        heads = labels.validate_heads(heads)
        framing = check_framing(framing)
        style_layers = tuple(style_layers)
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

        if style_layers:
            known = {layer.name for layer in leaf_layers(backbone_model)}
            unknown = [name for name in style_layers if name not in known]
            if unknown:
                raise ValueError(f"style_layers {unknown} are not layers of {backbone}")
            # One nested model with the last map and the style layers' maps as outputs (the backbone's layers).
            taps = keras.Model(
                backbone_model.input,
                [backbone_model.output, *(backbone_model.get_layer(name).output for name in style_layers)],
                name="backbone_taps",
            )
            statistics = ChannelStatistics(name=STYLE)
            style_norm = keras.layers.BatchNormalization(name=STYLE_NORM)
            joined = keras.layers.Concatenate(name=FEATURES)

        # === Functional Model ===
        images = keras.Input((image_size, image_size, 3), name="image")
        if style_layers:
            feature_map, *style_maps = taps(images)
            pooled = pooling(feature_map)
            features = dropout_layer(joined([pooled, style_norm(statistics(style_maps))]))
        else:
            pooled = pooling(backbone_model(images))
            features = dropout_layer(pooled)
        outputs = {head: layer(features) for head, layer in head_layers.items()}
        kwargs.setdefault("name", "artnet")
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone_name = backbone
        self.heads = heads
        self.year_head = bool(year_head)
        self.style_layers = style_layers
        self.tasks = (*heads, YEAR) if year_head else heads
        self.image_size = image_size
        self.framing = framing  # how the serving signature makes a painting square: as in training
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
            "style_layers": list(self.style_layers),
            "framing": self.framing,
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
        image_size, framing = self.image_size, self.framing

        @tf.function(input_signature=[SERVING_INPUT])
        def serve(images):
            pixels = tf.cast(resize_and_crop(images, image_size, framing), tf.float32)
            results = {name: tf.cast(tensor, tf.float32) for name, tensor in network(pixels, training=False).items()}
            if YEAR in results:
                raw = results.pop(YEAR)
                results[YEAR] = YEAR_CENTRE + YEAR_SCALE * raw[:, 0]
                results[YEAR_SIGMA] = YEAR_SCALE * tf.exp(tf.clip_by_value(raw[:, 1], LOG_SIGMA_MIN, LOG_SIGMA_MAX))
            return results

        return serve

    def head_features(self, batch, training: bool = False):
        """(the backbone's last feature map, what the heads' dropout takes) for a batch, through the model's own
        layers: for Grad-CAM, which needs hold of the feature map."""
        if not self.style_layers:
            feature_map = self.backbone(batch, training=training)
            return feature_map, self.get_layer(POOLED)(feature_map)
        feature_map, *style_maps = self.get_layer("backbone_taps")(batch, training=training)
        style = self.get_layer(STYLE_NORM)(self.get_layer(STYLE)(style_maps), training=training)
        return feature_map, self.get_layer(FEATURES)([self.get_layer(POOLED)(feature_map), style])

    def embedding_model(self) -> keras.Model:
        """Images -> pooled backbone features (before dropout)."""
        return keras.Model(self.inputs, self.get_layer(POOLED).output, name=f"{self.name}_embedding")
