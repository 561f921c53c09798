"""Pixels in, pixels out: decode, resize/crop and the augmentation warp (TensorFlow ops).

Shared by the training pipeline and the model's serving function, so that training, evaluation, export and
the predictor all see the same pixels. Augmentation is ONE affine warp per batch (flip, rotation, shift and
zoom composed into a single `ImageProjectiveTransformV3`), measured ~2.6x faster on 2 cores than chaining
Keras' random layers.
"""

from __future__ import annotations

import math

import tensorflow as tf

from artnet.config import FRAMINGS, Augment

# How a painting becomes a square: "crop" scales its shorter side to the square and cuts the centre (the ends of
# an elongated painting are lost, proportions kept); "squash" scales each side to the square (the whole painting,
# stretched), as Keras' `flow_from_directory` did in the 2020 project and as the WikiArt sample's 224 px images
# already are. On square images both are the same resize (up to the crop's rounding of the resized side).


def check_framing(framing: str) -> str:
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    return framing


def resize_and_crop(images: tf.Tensor, image_size: int, framing: str = "crop") -> tf.Tensor:
    """An image (H, W, 3) or a batch (N, H, W, 3) -> uint8 `image_size` square, framed by `framing`: the shorter
    side scaled to `image_size` and centre-cropped ("crop"), or both sides scaled to it ("squash").

    Shared by the input pipeline and the exported serving signature, so both see the same pixels.
    """
    if check_framing(framing) == "squash":
        resized = tf.image.resize(images, (image_size, image_size), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    shape = tf.cast(tf.shape(images)[-3:-1], tf.float32)
    scale = tf.cast(image_size, tf.float32) / tf.reduce_min(shape)
    new_shape = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    resized = tf.image.resize(images, new_shape, method="bilinear", antialias=True)
    cropped = tf.image.resize_with_crop_or_pad(resized, image_size, image_size)
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)


def decode_and_resize(encoded: tf.Tensor, image_size: int, framing: str = "crop") -> tf.Tensor:
    """Bytes (JPEG, PNG, GIF's first frame, BMP) -> uint8 RGB, `image_size` square (`resize_and_crop`)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return resize_and_crop(image, image_size, framing)


def random_affine(shape, size, augment: Augment, mirror: tf.Tensor | None = None) -> tuple[tf.Tensor, ...]:
    """One random flip + rotation + shift + zoom per element of `shape`, on a `size` square: the coefficients
    (a0, a1, a2, b0, b1, b2) of the map from output pixel (x, y) to input pixel A @ (x - c, y - c) + c + shift
    (A = rotation / zoom, flipped in x). `mirror` (+-1) forces the flip instead of drawing it."""
    centre = (size - 1.0) / 2.0

    def uniform(low, high):
        return tf.random.uniform(shape, low, high)

    if mirror is None:
        mirror = tf.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if augment.flip else tf.ones(shape)
    angle = uniform(-1.0, 1.0) * augment.rotation_degrees * math.pi / 180.0
    zoom = 1.0 + uniform(-1.0, 1.0) * augment.zoom
    shift_x = uniform(-1.0, 1.0) * augment.shift * size
    shift_y = uniform(-1.0, 1.0) * augment.shift * size
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = mirror * cos, -sin
    b0, b1 = mirror * sin, cos
    a2 = centre - a0 * centre - a1 * centre + shift_x
    b2 = centre - b0 * centre - b1 * centre + shift_y
    return a0, a1, a2, b0, b1, b2


def randaugment_layer(seed: int | None = None):
    """keras-cv's RandAugment as the training pipeline and the feature cache's augmented views apply it: two
    random operations per image at magnitude 0.3, on 0-255 pixels. `seed` makes its draws repeatable."""
    # Imported here, not at the top: keras-cv takes seconds to load, and only RandAugment runs need it.
    import keras_cv

    return keras_cv.layers.RandAugment(value_range=(0, 255), augmentations_per_image=2, magnitude=0.3, seed=seed)


def affine_warp(images: tf.Tensor, augment: Augment) -> tf.Tensor:
    """One random flip + rotation + shift + zoom per image, applied to the whole batch in a single op."""
    batch = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    a0, a1, a2, b0, b1, b2 = random_affine([batch], size, augment)
    zeros = tf.zeros([batch])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return warped


# --- The training fast path: decode, then ONE warp per image straight to the model's input size. ---------------
#
# Measured on 2 cores (benchmarks/input_pipeline.py): `decode_and_resize` + a batch `affine_warp` resamples every
# training image twice, once in the antialiased resize (the dearest op after the warp) and once in the warp. For
# training the resize/crop is folded into the warp's matrix instead, so each output pixel is interpolated once
# from the decoded image. Evaluation and serving keep `resize_and_crop` (antialiased, pixel-exact, tested).


def decode_for_warp(encoded: tf.Tensor, image_size: int, framing: str = "crop") -> tf.Tensor:
    """Bytes -> uint8 RGB (H, W, 3), no smaller than needed for a bilinear warp to `image_size` px.

    JPEGs whose shorter side is at least 2x `image_size` are decoded DCT-downscaled (`ratio` 2, 4 or 8, never
    below `image_size`): cheaper to decode and an antialiased reduction, which the bilinear warp is not. Images
    still more than 1.25x the target after that get an antialiased resize: of their shorter side to `image_size`
    ("crop"), or of both sides to the square ("squash": the warp then only augments, and the whole painting fits
    `to_canvas`). Smaller images (upscaling: the WikiArt sample's 224 px to 331 px) are decoded at full quality
    and left alone.
    """
    check_framing(framing)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        shorter = tf.reduce_min(shape[:2])
        # Branch i decodes at ratio 2**i; the largest ratio that keeps the shorter side >= image_size.
        index = tf.reduce_sum(tf.cast(shorter // tf.constant([2, 4, 8]) >= image_size, tf.int32))
        branches = [lambda ratio=ratio: tf.io.decode_jpeg(encoded, channels=3, ratio=ratio) for ratio in (1, 2, 4, 8)]
        return tf.switch_case(index, branches)

    def other():
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, 3])
    shape = tf.shape(image)[:2]
    # squash: any side beyond 1.25x is shrunk (to the square); crop: the shorter side decides (the rest is cut)
    deciding = tf.cast(tf.reduce_max(shape) if framing == "squash" else tf.reduce_min(shape), tf.float32)

    def shrink():
        if framing == "squash":
            new_shape = tf.constant([image_size, image_size])
        else:
            new_shape = tf.cast(tf.math.ceil(tf.cast(shape, tf.float32) * (image_size / deciding)), tf.int32)
        resized = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    return tf.cond(deciding > 1.25 * image_size, shrink, lambda: image)


def crop_warp_transform(
    image_shape: tf.Tensor,
    image_size: int,
    augment: Augment | None,
    *,
    flip: tf.Tensor | None = None,
    framing: str = "crop",
) -> tf.Tensor:
    """The (8,) `ImageProjectiveTransformV3` matrix: `resize_and_crop` to `image_size` (with `framing`), then
    `affine_warp`'s random flip + rotation + shift + zoom (Augment's ranges), composed into one map from output
    to input pixels.

    `augment=None` (or all-zero ranges) is the bare resize (+ centre crop); `flip` forces the mirror (tests).
    """
    size = float(image_size)
    hw = tf.cast(image_shape[:2], tf.float32)
    if check_framing(framing) == "squash":  # each side scaled to image_size, nothing cut
        new_hw, offset = tf.stack([size, size]), tf.zeros([2])
    else:  # the shorter side scaled to image_size (ceil), then a centre crop of offset (new - size) // 2
        new_hw = tf.math.ceil(hw * (size / tf.reduce_min(hw)))
        offset = tf.floor((new_hw - size) / 2.0)
    scale = hw / new_hw  # input pixels per resized pixel, per axis (half-pixel centres, as tf.image.resize)
    if augment is None:
        augment = Augment(flip=False, rotation_degrees=0.0, shift=0.0, zoom=0.0)
    # affine_warp's map, output pixel -> pixel of the cropped square (same algebra, same ranges) ...
    mirror = tf.where(flip, -1.0, 1.0) if flip is not None else None
    a0, a1, a2, b0, b1, b2 = random_affine([], size, augment, mirror)
    # ... then cropped-square pixel q -> input pixel scale * (q + offset + 0.5) - 0.5, as resize_and_crop samples.
    sy, sx = scale[0], scale[1]
    oy, ox = offset[0], offset[1]
    return tf.stack(
        [
            sx * a0,
            sx * a1,
            sx * (a2 + ox + 0.5) - 0.5,
            sy * b0,
            sy * b1,
            sy * (b2 + oy + 0.5) - 0.5,
            0.0,
            0.0,
        ]
    )


def crop_warp(
    image: tf.Tensor,
    image_size: int,
    augment: Augment | None,
    *,
    flip: tf.Tensor | None = None,
    framing: str = "crop",
) -> tf.Tensor:
    """A decoded uint8 image (H, W, 3) -> float32 (image_size, image_size, 3): resize, crop and augmentation in
    ONE bilinear `ImageProjectiveTransformV3` (REFLECT fill, like `affine_warp`).

    With no augmentation it equals `resize_and_crop` (before its uint8 rounding) wherever the resize upscales;
    for a downscale it is plain bilinear, so feed it `decode_for_warp`'s output, which is at most 1.25x the
    target. Borders reflect about the decoded image's edges, not the crop's, so a shifted non-square painting
    shows more of itself rather than a mirror of the crop.
    """
    transform = crop_warp_transform(tf.shape(image), image_size, augment, flip=flip, framing=framing)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform[None],
        output_shape=tf.constant([image_size, image_size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return warped[0]


# `crop_warp` is the one-op reference, but `ImageProjectiveTransformV3`'s CPU kernel is slow: ~8-12 ms per
# 331 px image on one of our 2 cores, 2-3x PIL's whole decode + affine. The pipeline therefore samples with the
# same matrix through `warp_canvases`: a bilinear gather that XLA compiles into one loop (~1.8 ms per image,
# measured). XLA wants fixed shapes, so each decoded image travels on a fixed `canvas_size` square with its true
# (height, width): an image larger than the canvas keeps the centred window that the warp samples from.


def canvas_size(image_size: int) -> int:
    """The canvas side for `image_size`: `decode_for_warp` leaves the shorter side at most 1.25x the target."""
    return int(math.ceil(1.25 * image_size)) + 2


def to_canvas(image: tf.Tensor, transform: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(uint8 (size, size, 3) canvas, transform moved onto it, float32 (height, width) of the real pixels).

    Sides longer than `size` keep their centred window (the warp's reflection then happens at the window's edge:
    only far corners of strongly rotated/shifted elongated paintings); shorter sides are zero-padded, never read.
    """
    shape = tf.shape(image)[:2]
    kept = tf.minimum(shape, size)
    start = (shape - kept) // 2
    window = image[start[0] : start[0] + kept[0], start[1] : start[1] + kept[1]]
    canvas = tf.pad(window, [[0, size - kept[0]], [0, size - kept[1]], [0, 0]])
    canvas.set_shape([size, size, 3])
    offset = tf.cast(start, tf.float32)
    moved = transform - tf.stack([0.0, 0.0, offset[1], 0.0, 0.0, offset[0], 0.0, 0.0])
    return canvas, moved, tf.cast(kept, tf.float32)


def _reflect(coordinate: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    # ImageProjectiveTransformV3's REFLECT (d c b a | a b c d, about -0.5 and length - 0.5), one bounce (the
    # augmentation never reaches further), then clamped like its kernel.
    coordinate = tf.where(coordinate < -0.5, -1.0 - coordinate, coordinate)
    coordinate = tf.where(coordinate > length - 0.5, 2.0 * length - 1.0 - coordinate, coordinate)
    return tf.clip_by_value(coordinate, 0.0, length - 1.0)


@tf.function(jit_compile=True)
def _warp_canvases(canvases, transforms, heights_widths, image_size):
    batch, rows, cols = tf.shape(canvases)[0], tf.shape(canvases)[1], tf.shape(canvases)[2]
    pixels = tf.range(image_size, dtype=tf.float32)
    t = transforms[:, :, None, None]
    xs, ys = pixels[None, None, :], pixels[None, :, None]
    x = _reflect(t[:, 0] * xs + t[:, 1] * ys + t[:, 2], heights_widths[:, 1, None, None])
    y = _reflect(t[:, 3] * xs + t[:, 4] * ys + t[:, 5], heights_widths[:, 0, None, None])
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, cols - 1), tf.minimum(y0 + 1, rows - 1)
    index = tf.broadcast_to(tf.range(batch)[:, None, None], tf.shape(x0))

    def at(yy, xx):
        return tf.cast(tf.gather_nd(canvases, tf.stack([index, yy, xx], axis=-1)), tf.float32)

    top_left, top_right, bottom_left, bottom_right = at(y0, x0), at(y0, x1), at(y1, x0), at(y1, x1)
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    return top + (bottom - top) * fy


def warp_canvases(canvases: tf.Tensor, transforms: tf.Tensor, heights_widths: tf.Tensor, image_size: int) -> tf.Tensor:
    """A batch of `to_canvas` outputs -> float32 (B, image_size, image_size, 3): `crop_warp`'s pixels (bilinear,
    REFLECT fill) in one XLA-compiled gather, ~4x faster than `ImageProjectiveTransformV3` on CPU."""
    return _warp_canvases(canvases, transforms, heights_widths, int(image_size))
