"""The training pipeline: a `Source` in, batches of (images, labels, per-head sample weights) out.

Unknown labels are masked, not dropped: they become class 0 with sample weight 0, so they add no loss and
count in no weighted metric. A known label's weight is its head's balanced class weight, scaled so that the
mean weight over *all* training examples is 1 and the loss keeps its scale. Decoding, resizing and the
augmentation warp come from `artnet.data.preprocessing`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.config import Augment
from artnet.data.preprocessing import (
    affine_warp,
    canvas_size,
    crop_warp_transform,
    decode_and_resize,
    decode_for_warp,
    randaugment_layer,
    to_canvas,
    warp_canvases,
)
from artnet.data.sources import Source
from artnet.data.years import normalised_years, year_sample_weights

AUTOTUNE = tf.data.AUTOTUNE
YEAR_WEIGHT = "year_weight"  # travels beside the year target until the (targets, weights) split


def class_weights(label_array: np.ndarray, num_classes: int, power: float = 1.0) -> np.ndarray:
    """Balanced class weights n_known / (C * n_c), raised to `power` (0 = no weighting).

    Classes absent from `label_array` get weight 0 (there is nothing to weigh).
    """
    known = label_array[label_array >= 0]
    counts = np.bincount(known, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = (len(known) / (present.sum() * counts[present])) ** power
    return weights


def head_weight_tables(train_labels: dict[str, np.ndarray], heads, power: float = 1.0) -> dict[str, np.ndarray]:
    """Per head, the weight of each class, scaled so the mean sample weight over all examples is 1."""
    tables = {}
    for head in heads:
        label_array = train_labels[head]
        weights = class_weights(label_array, len(labels.VOCABULARIES[head]), power)
        known = label_array[label_array >= 0]
        mean = weights[known].sum() / max(1, len(label_array))
        tables[head] = (weights / mean if mean > 0 else weights).astype(np.float32)
    return tables


def sample_weights(label_array: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Numpy twin of the pipeline's lookup: table[label] for known labels, 0 for unknown."""
    return np.where(label_array >= 0, table[np.clip(label_array, 0, None)], 0.0).astype(np.float32)


def make_dataset(
    source: Source,
    heads,
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    weight_tables: dict[str, np.ndarray] | None = None,
    augment: Augment | None = None,
    cache: bool | str = False,
    shuffle_buffer: int = 2048,
    seed: int = 0,
    drop_remainder: bool = False,
    year: bool = False,
    framing: str = "crop",
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], {head: label}, {head: sample weight}).

    Each image is made square by `framing` (`artnet.data.preprocessing.resize_and_crop`). `weight_tables` (from
    `head_weight_tables` on the TRAIN labels) weighs known labels; without it every known label weighs 1. Unknown
    labels always weigh 0. With `year`, also the year head's target (`year`: the normalised year of
    `Source.years`) and weight (0 where unknown; with `weight_tables`, i.e. in training, scaled so that the mean
    weight is 1, as the heads' are).
    """
    heads = labels.validate_heads(heads)
    label_tensors = _label_tensors(source, heads, year=year, balance_year=weight_tables is not None)
    tables = _weight_table_constants(heads, weight_tables)
    dataset = tf.data.Dataset.zip(source.images, tf.data.Dataset.from_tensor_slices(label_tensors))
    augment = augment if training else None
    if augment is not None and not cache:
        return _fused_training_dataset(
            dataset,
            heads,
            tables,
            image_size,
            batch_size,
            augment,
            shuffle_buffer,
            seed,
            drop_remainder,
            len(source),
            framing,
        )
    dataset = dataset.map(
        lambda encoded, y: (decode_and_resize(encoded, image_size, framing), y), num_parallel_calls=AUTOTUNE
    )
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if training:
        dataset = dataset.shuffle(min(shuffle_buffer, max(1, len(source))), seed=seed, reshuffle_each_iteration=True)

    dataset = dataset.map(
        lambda image, y: (image, *_targets_and_weights(y, heads, tables)), num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    if augment is not None:
        randaugment = randaugment_layer() if augment.randaugment else None

        def augment_batch(images, y, w):
            images = affine_warp(images, augment)
            if randaugment is not None:
                images = randaugment(images)
            return mix_batch(images, y, w, augment.mixup)

        dataset = dataset.map(augment_batch, num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(lambda images, y, w: (tf.cast(images, tf.float32), y, w), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def _label_tensors(source: Source, heads, *, year: bool, balance_year: bool) -> dict[str, tf.Tensor]:
    """The raw labels per head (-1 = unknown), and with `year` the year target and its weight beside them."""
    label_tensors = {head: tf.constant(source.labels[head], dtype=tf.int64) for head in heads}
    if year:
        targets, _ = normalised_years(source.years)
        label_tensors[labels.YEAR] = tf.constant(targets, dtype=tf.float32)
        weights = year_sample_weights(source.years, balance=balance_year)
        label_tensors[YEAR_WEIGHT] = tf.constant(weights, dtype=tf.float32)
    return label_tensors


def _weight_table_constants(heads, weight_tables: dict[str, np.ndarray] | None) -> dict[str, tf.Tensor]:
    """Each head's class weights as a constant: `weight_tables`' entry, or 1 for every class without tables."""
    return {
        head: tf.constant(
            weight_tables[head]
            if weight_tables is not None
            else np.ones(len(labels.VOCABULARIES[head]), dtype=np.float32),
            dtype=tf.float32,
        )
        for head in heads
    }


def mix_batch(x, y: dict, w: dict, alpha: float, seed: int | None = None):
    """MixUp of a batch, by duplication: each input is blended with a partner of the same batch, lambda ~
    Beta(alpha, alpha) per example, and the blend appears twice, once with its own targets weighted lambda and
    once with its partner's weighted 1 - lambda. The sum of the two rows' losses is MixUp's loss, for every loss
    here (sparse, smoothed, ordinal, the year's) and masks stay exact: an unknown label still weighs 0. Weights
    are doubled because Keras averages over the (doubled) rows. `alpha` 0 is no MixUp: the batch as it came."""
    if not alpha:
        return x, y, w
    n = tf.shape(tf.nest.flatten(x)[0])[0]
    seeds = (None, None) if seed is None else (seed, seed + 1)
    first = tf.random.gamma([n], alpha, seed=seeds[0])
    second = tf.random.gamma([n], alpha, seed=seeds[1])
    lam = first / tf.maximum(first + second, 1e-12)
    partner = tf.random.shuffle(tf.range(n), seed=seed)

    def blend(inputs):  # each input of a tuple (cached features of two layers) blends with the same partner
        inputs = tf.cast(inputs, tf.float32)
        shape = tf.concat([[n], tf.ones([tf.rank(inputs) - 1], tf.int32)], axis=0)
        mixed = tf.reshape(lam, shape) * inputs + tf.reshape(1.0 - lam, shape) * tf.gather(inputs, partner)
        return tf.concat([mixed, mixed], axis=0)

    mixed_y = {name: tf.concat([value, tf.gather(value, partner)], axis=0) for name, value in y.items()}
    mixed_w = {
        name: 2.0 * tf.concat([value * lam, tf.gather(value, partner) * (1.0 - lam)], axis=0)
        for name, value in w.items()
    }
    return tf.nest.map_structure(blend, x), mixed_y, mixed_w


def _targets_and_weights(y, heads, tables):
    """Unknown labels (-1) -> class 0 with weight 0; known ones weigh their class's table entry. The year target
    and its weight pass through (computed in `make_dataset`)."""
    known = {head: y[head] >= 0 for head in heads}
    targets = {head: tf.where(known[head], y[head], 0) for head in heads}
    weights = {head: tf.where(known[head], tf.gather(tables[head], targets[head]), 0.0) for head in heads}
    if labels.YEAR in y:
        targets[labels.YEAR] = y[labels.YEAR]
        weights[labels.YEAR] = y[YEAR_WEIGHT]
    return targets, weights


def _fused_training_dataset(
    dataset, heads, tables, image_size, batch_size, augment, shuffle_buffer, seed, drop_remainder, length, framing
):
    """Augmented training batches, each image resampled ONCE from its decoded pixels (the fast path).

    What it changes, measured by benchmarks/input_pipeline.py on 2 cores (keep what wins):
    - shuffle the encoded bytes, not decoded images: the buffer holds ~20 KB JPEGs, not 330 KB pixels;
    - decode (DCT-downscaled for big JPEGs) and fold resize + crop + flip/rotation/shift/zoom into one matrix per
      image (`crop_warp_transform`), so there is no antialiased resize and no second resampling;
    - labels, weights and the matrix are computed in that same map: one dataset stage per image, not three;
    - sample the batch in one XLA-compiled bilinear gather (`warp_canvases`), ~4x ImageProjectiveTransformV3;
    - the float32 cast happens inside the warp, on output pixels only (the batch moves as uint8 until then);
    - `deterministic=False`: training order is random anyway, so a slow image never stalls the batch.
    With `cache=True` the old path stays (decoded, resized uint8 reused every epoch, warped per batch).
    """
    canvas = canvas_size(image_size)
    dataset = dataset.shuffle(min(shuffle_buffer, max(1, length)), seed=seed, reshuffle_each_iteration=True)

    def prepare(encoded, y):
        image = decode_for_warp(encoded, image_size, framing)
        transform = crop_warp_transform(tf.shape(image), image_size, augment, framing=framing)
        pixels, transform, height_width = to_canvas(image, transform, canvas)
        return (pixels, transform, height_width), *_targets_and_weights(y, heads, tables)

    dataset = dataset.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=False)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    randaugment = randaugment_layer() if augment.randaugment else None

    def warp(canvases, y, w):
        images = warp_canvases(*canvases, image_size)
        if randaugment is not None:
            images = randaugment(images)
        return mix_batch(images, y, w, augment.mixup)

    dataset = dataset.map(warp, num_parallel_calls=AUTOTUNE, deterministic=False)
    return dataset.prefetch(AUTOTUNE)
