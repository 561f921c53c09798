"""The feature cache: a frozen backbone runs once per image (and once per augmented view), never again.

Heads-only training and the linear probe then take seconds instead of minutes of backbone passes per epoch.
`FeatureSpec` says what was computed (backbone, weights, image size, layer, views and their augmentation); the
cache key adds the data itself (a digest of every encoded image, in order), so a cache is never used for other
images, another layer or other weights. Files: `<cache_dir>/<key>.npz` holding `features` (views, n, ...) as
float16, with `<key>.json` beside it saying what they are.

Views: 0 is the plain resize and centre crop (what evaluation sees), 1 is its mirror image (test-time flip),
2 and on are random affine warps of the training augmentation, each seeded by its view number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from artnet.config import Augment
from artnet.preprocessing import affine_warp, decode_and_resize
from artnet.sources import Source

POOLED = "pooled"


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    image_size: int | None = None  # None = the backbone's own
    layer: str = POOLED  # "pooled" (global average of the last feature map) or a backbone layer's name
    views: int = 1
    augment: Augment = dataclasses.field(default_factory=Augment)  # for views 2 and on
    batch_size: int = 32

    def to_dict(self) -> dict:
        spec = dataclasses.asdict(self)
        spec["augment"].pop("mixup")  # applied to batches of cached features in training: the cache is the same
        return spec


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARTNET_FEATURE_CACHE") or Path.home() / ".cache" / "artnet" / "features")


def data_digest(source: Source) -> str:
    """sha256 over every encoded image of `source`, in order: the cache's notion of "the same data".

    Remembered on the source (reading every image again costs seconds per call)."""
    if source.digest is None:
        digest = hashlib.sha256()
        for encoded in source.images.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
            digest.update(hashlib.sha256(encoded).digest())
        source.digest = digest.hexdigest()
    return source.digest


def cache_key(spec: FeatureSpec, digest: str) -> str:
    weights = spec.weights
    if weights not in (None, "imagenet") and Path(weights).is_file():  # a weights file: its content, not its name
        weights = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    key = {"spec": spec.to_dict(), "weights": weights, "data": digest, "format": 1}
    text = json.dumps(key, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def feature_extractor(spec: FeatureSpec):
    """(frozen Keras model: [0, 255] float images -> features, its image size)."""
    import keras

    from artnet.models.backbones import build_backbone, get_spec, leaf_layers

    size = spec.image_size or get_spec(spec.backbone).image_size
    backbone = build_backbone(spec.backbone, weights=spec.weights, image_size=size)
    backbone.trainable = False
    if spec.layer == POOLED:
        pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
        return keras.Model(backbone.input, pooled, name=f"{spec.backbone}_pooled"), size
    layers = {layer.name: layer for layer in leaf_layers(backbone)}
    if spec.layer not in layers:
        raise ValueError(f"layer {spec.layer!r} is not a layer of {spec.backbone}; use 'pooled' or a layer name")
    return keras.Model(backbone.input, layers[spec.layer].output, name=f"{spec.backbone}_{spec.layer}"), size


def compute_features(source: Source, spec: FeatureSpec) -> np.ndarray:
    """(views, n, ...) float16 features of every image of `source` (no cache)."""
    from tqdm.auto import tqdm

    model, size = feature_extractor(spec)
    pixels = source.images.map(lambda encoded: decode_and_resize(encoded, size), num_parallel_calls=tf.data.AUTOTUNE)
    batches = pixels.batch(spec.batch_size).prefetch(tf.data.AUTOTUNE)
    views = []
    for view in range(spec.views):
        tf.random.set_seed(view)  # a random view is the same view on every machine and every rerun
        chunks = []
        with tqdm(total=len(source), unit="img", desc=f"features view {view + 1}/{spec.views}") as progress:
            for batch in batches:
                images = tf.cast(batch, tf.float32)
                if view == 1:
                    images = tf.reverse(images, axis=[2])
                elif view >= 2:
                    images = affine_warp(batch, spec.augment)
                chunks.append(np.asarray(model(images, training=False), dtype=np.float16))
                progress.update(len(batch))
        views.append(np.concatenate(chunks) if chunks else np.zeros((0,), np.float16))
    return np.stack(views)


def cached_features(source: Source, spec: FeatureSpec, cache_dir: str | Path | None = None) -> np.ndarray:
    """`compute_features`, read from the cache when this spec has already run over these exact images.

    A subset (`artnet.sources.subset`) takes its rows of the features of the source it came from."""
    if source.origin is not None:
        root, indices = source.origin
        return cached_features(root, spec, cache_dir)[:, indices]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(spec, data_digest(source))
    path = folder / f"{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["features"]
    started = time.monotonic()
    features = compute_features(source, spec)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{key}.{os.getpid()}.partial.npz"
    np.savez(partial, features=features)
    os.replace(partial, path)  # a killed extraction never leaves a file that looks complete
    about = {"spec": spec.to_dict(), "source": source.name, "examples": len(source), "shape": list(features.shape)}
    about["seconds"] = round(time.monotonic() - started, 1)
    (folder / f"{key}.json").write_text(json.dumps(about, indent=2))
    return features
