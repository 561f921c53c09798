"""The feature cache: a frozen backbone runs once per image (and once per augmented view), never again.

Heads-only training and the linear probe then take seconds instead of minutes of backbone passes per epoch.
`FeatureSpec` says what was computed (backbone, weights, image size, layer, views and their augmentation); the
cache key adds the data itself (a digest of every encoded image, in order), so a cache is never used for other
images, another layer or other weights. Files: `<cache_dir>/<key>.npz` holding `features` (views, n, ...) as
float16 (style statistics: float32), with `<key>.json` beside it saying what they are.

Both are written whole or not at all (`artnet.data.atomic_files`: temporary file, fsync, rename), and a cached
file is checked when read: it opens, holds `features`, of the dtype, views and examples asked for (and the shape
its `.json` records), all finite. A bad one is named in one line and computed again; temporary files that a
killed extraction left are swept away.

Views: 0 is the plain resize and framing (what evaluation sees), 1 is its mirror image (test-time flip),
2 and on are random affine warps of the training augmentation, each seeded by its view number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from artnet.config import Augment
from artnet.data.atomic_files import atomic_path, remove_stale_parts, write_atomically
from artnet.data.photo_residue import photo_residues
from artnet.data.preprocessing import affine_warp, decode_and_resize, randaugment_layer
from artnet.data.sources import Source
from artnet.models.artnet import style_statistics_model
from artnet.models.backbones import build_backbone, get_spec, leaf_layers
from artnet.training.checked_files import warn

POOLED = "pooled"
STYLE_PREFIX = "style:"
# What artnet before 0.2 named a cache file while writing it (`.<key>.<pid>.partial.npz`): swept like the new ones.
_LEGACY_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.(?P<pid>[0-9]+)\.partial\.npz")


def is_style(layer: str) -> bool:
    return layer.startswith(STYLE_PREFIX)


def style_layer_spec(style_layers) -> str:
    """The `FeatureSpec.layer` of the style statistics of `style_layers`."""
    return STYLE_PREFIX + ",".join(style_layers)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    image_size: int | None = None  # None = the backbone's own
    # "pooled" (global average of the last feature map), a backbone layer's name, or "style:<layer>,<layer>,..."
    # (those layers' per-channel mean and standard deviation, as `ArtNet(style_layers=...)` computes them)
    layer: str = POOLED
    views: int = 1
    augment: Augment = dataclasses.field(default_factory=Augment)  # for views 2 and on
    batch_size: int = 32
    framing: str = "crop"  # how each image is made square (`artnet.data.preprocessing.resize_and_crop`)

    def to_dict(self) -> dict:
        spec = dataclasses.asdict(self)
        spec["augment"].pop("mixup")  # applied to batches of cached features in training: the cache is the same
        if spec["framing"] == "crop":  # the only framing before there was a choice: its keys stay what they were
            spec.pop("framing")
        # Likewise for the switches added since (the photo views, the camera's processing on them, the frame taken
        # with the picture): off, they leave no key, so caches made before them keep theirs.
        for switch in ("photo", "camera", "frame"):
            if not spec["augment"][switch]:
                spec["augment"].pop(switch)
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
    # format 2: style statistics stored as float32 (`cached_dtype`); everything else is still format 1
    described = spec.to_dict()
    if described["image_size"] is None:  # the backbone's own size, by name or by number: the same features
        described["image_size"] = get_spec(spec.backbone).image_size
    key = {"spec": described, "weights": weights, "data": digest, "format": 2 if is_style(spec.layer) else 1}
    text = json.dumps(key, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_dtype(layer: str):
    """float16 for feature maps and pooled features (half the disk and memory); float32 for style statistics,
    whose channel means vary little between images relative to their size, so float16 rounding would be a
    large part of their standardised value."""
    return np.float32 if is_style(layer) else np.float16


def _layer_output(backbone, layer: str, backbone_name: str):
    if layer == POOLED:
        return keras.layers.GlobalAveragePooling2D()(backbone.output)
    if is_style(layer):
        return style_statistics_model(backbone, layer[len(STYLE_PREFIX) :].split(",")).output
    layers = {item.name: item for item in leaf_layers(backbone)}
    if layer not in layers:
        raise ValueError(
            f"layer {layer!r} is not a layer of {backbone_name}; use 'pooled', 'style:<layers>' or a layer name"
        )
    return layers[layer].output


def feature_extractor(spec: FeatureSpec, layers: list[str] | None = None):
    """(frozen Keras model: [0, 255] float images -> a list of features, one per layer, its image size).

    `layers` defaults to `[spec.layer]`; several layers come out of one forward pass."""
    size = spec.image_size or get_spec(spec.backbone).image_size
    backbone = build_backbone(spec.backbone, weights=spec.weights, image_size=size)
    backbone.trainable = False
    outputs = [_layer_output(backbone, layer, spec.backbone) for layer in (layers or [spec.layer])]
    return keras.Model(backbone.input, outputs, name=f"{spec.backbone}_features"), size


def compute_layers(source: Source, spec: FeatureSpec, layers: list[str]) -> list[np.ndarray]:
    """(views, n, ...) features (`cached_dtype`) of every image of `source` at each of `layers` (`spec.layer` ignored),
    from one pass of the backbone per view (no cache)."""
    model, size = feature_extractor(spec, layers)
    pixels = source.images.map(
        lambda encoded: decode_and_resize(encoded, size, spec.framing), num_parallel_calls=tf.data.AUTOTUNE
    )
    batches = pixels.batch(spec.batch_size).prefetch(tf.data.AUTOTUNE)
    views = [[] for _ in layers]  # per layer, per view: the view's features
    for view in range(spec.views):
        tf.random.set_seed(view)  # a random view is the same view on every machine and every rerun
        randaugment = randaugment_layer(seed=view) if view >= 2 and spec.augment.randaugment else None
        chunks = [[] for _ in layers]
        with tqdm(total=len(source), unit="img", desc=f"features view {view + 1}/{spec.views}") as progress:
            for number, batch in enumerate(batches):
                images = tf.cast(batch, tf.float32)
                if view == 1:
                    images = tf.reverse(images, axis=[2])
                elif view >= 2 and spec.augment.photo:  # a phone photo's cut-out; every other one mirrored
                    residues = photo_residues(
                        batch.numpy(),
                        seed=view * 1_000_003 + number,
                        camera=spec.augment.camera,
                        frame=spec.augment.frame,
                    )
                    images = tf.cast(residues[:, :, ::-1] if view % 2 else residues, tf.float32)
                elif view >= 2:
                    images = affine_warp(batch, spec.augment)
                    if randaugment is not None:  # after the warp, as in the image pipeline
                        images = randaugment(images)
                outputs = model(images, training=False)
                outputs = outputs if isinstance(outputs, list | tuple) else [outputs]  # Keras unwraps one output
                for layer, chunk, output in zip(layers, chunks, outputs, strict=True):
                    chunk.append(np.asarray(output, dtype=cached_dtype(layer)))
                progress.update(len(batch))
        for per_layer, chunk in zip(views, chunks, strict=True):
            per_layer.append(np.concatenate(chunk) if chunk else np.zeros((0,), np.float16))
    return [np.stack(per_layer) for per_layer in views]


def compute_features(source: Source, spec: FeatureSpec) -> np.ndarray:
    """(views, n, ...) features of every image of `source` at `spec.layer` (no cache)."""
    return compute_layers(source, spec, [spec.layer])[0]


def cached_features(source: Source, spec: FeatureSpec, cache_dir: str | Path | None = None) -> np.ndarray:
    """`compute_features`, read from the cache when this spec has already run over these exact images."""
    return cached_layers(source, [spec], cache_dir)[0]


def cached_layers(source: Source, specs: list[FeatureSpec], cache_dir: str | Path | None = None) -> list[np.ndarray]:
    """The cached features of each spec; those not cached yet are computed together, one backbone pass per view
    for all the specs that differ only in their layer (the pooled features and style statistics of one model).

    A subset (`artnet.data.sources.subset`) takes its rows of the features of the source it came from."""
    if source.origin is not None:
        root, indices = source.origin
        return [features[:, indices] for features in cached_layers(root, specs, cache_dir)]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    sweep(folder)
    digest = data_digest(source)
    paths = [folder / f"{cache_key(spec, digest)}.npz" for spec in specs]
    results: list[np.ndarray | None] = [
        read_cached(path, spec, len(source)) for spec, path in zip(specs, paths, strict=True)
    ]
    missing: dict[str, tuple[FeatureSpec, list[int]]] = {}  # one pass per spec-but-the-layer
    for index, spec in enumerate(specs):
        if results[index] is None:
            shared = dataclasses.replace(spec, layer=POOLED)
            key = json.dumps(shared.to_dict(), sort_keys=True)
            missing.setdefault(key, (shared, []))[1].append(index)
    for shared, indices in missing.values():
        started = time.monotonic()
        layers = list(dict.fromkeys(specs[index].layer for index in indices))
        computed = dict(zip(layers, compute_layers(source, shared, layers), strict=True))
        seconds = round(time.monotonic() - started, 1)
        folder.mkdir(parents=True, exist_ok=True)
        for index in indices:
            spec, path, features = specs[index], paths[index], computed[specs[index].layer]
            with atomic_path(path) as partial:  # a killed extraction never leaves a file that looks complete
                np.savez(partial, features=features)
            about = {"spec": spec.to_dict(), "source": source.name, "examples": len(source)}
            about |= {"shape": list(features.shape), "seconds": seconds, "computed_with": layers}
            write_atomically(path.with_suffix(".json"), json.dumps(about, indent=2).encode())
            results[index] = features
    return results


def sweep(folder: Path) -> int:
    """Delete the temporary files that killed extractions left in the cache folder (those of live ones stay)."""
    return remove_stale_parts(folder, recursive=False, also=(_LEGACY_PARTIAL,))


def read_cached(path: Path, spec: FeatureSpec, examples: int) -> np.ndarray | None:
    """The features cached at `path` if they are what `spec` over `examples` images computes: the file opens and
    holds a finite `features` array of the cached dtype with `spec.views` views of `examples` examples (and the
    shape its `.json` records). None when there is no such file; a bad one is named in one line (and computed
    again by the caller, who writes over it)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            if "features" not in stored.files:
                raise KeyError(f"no `features` in it (it holds {', '.join(stored.files) or 'nothing'})")
            features = stored["features"]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
        warn(f"feature cache {path} is unreadable ({type(error).__name__}: {error}); computing it again")
        return None
    expected = (spec.views, examples)
    problem = None
    if features.dtype != cached_dtype(spec.layer):
        problem = f"dtype {features.dtype}, not {np.dtype(cached_dtype(spec.layer))}"
    elif features.ndim < 2 or features.shape[:2] != expected:
        problem = f"shape {features.shape}, not ({spec.views} views, {examples} examples, ...)"
    elif (recorded := _recorded_shape(path)) is not None and list(features.shape) != recorded:
        problem = f"shape {features.shape}, not the {tuple(recorded)} recorded beside it"
    elif not np.isfinite(features).all():
        problem = "values that are not finite"
    if problem is not None:
        warn(f"feature cache {path} holds {problem}; computing it again")
        return None
    return features


def _recorded_shape(path: Path) -> list | None:
    """The shape the `.json` beside a cache file records, if it can be read."""
    try:
        shape = json.loads(path.with_suffix(".json").read_text()).get("shape")
    except (OSError, ValueError, AttributeError):
        return None
    return shape if isinstance(shape, list) else None
