"""The training fast path (decode -> one fused warp per image, XLA-sampled) against the reference ops."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.config import Augment
from artnet.data import pipeline, preprocessing
from artnet.data.sources import Source

NONE = Augment(flip=False, rotation_degrees=0.0, shift=0.0, zoom=0.0)


def _image(height, width, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _canvas_warp(image, size, augment, flip=None):
    transform = preprocessing.crop_warp_transform(tf.shape(image), size, augment, flip=flip)
    canvas, transform, height_width = preprocessing.to_canvas(image, transform, preprocessing.canvas_size(size))
    return preprocessing.warp_canvases(canvas[None], transform[None], height_width[None], size)[0].numpy()


def test_unaugmented_fused_warp_is_resize_and_crop_when_upscaling():
    # Tolerance 0.51: resize_and_crop rounds to uint8 (<= 0.5), plus float32 interpolation error.
    for height, width, size in [(224, 224, 331), (224, 300, 331), (300, 224, 331), (20, 31, 32), (32, 32, 32)]:
        image = _image(height, width)
        reference = preprocessing.resize_and_crop(image, size).numpy().astype(np.float32)
        for fused in (preprocessing.crop_warp(image, size, None).numpy(), _canvas_warp(image, size, NONE)):
            assert fused.shape == (size, size, 3) and fused.dtype == np.float32
            assert np.abs(fused - reference).max() <= 0.51


def test_canvas_warp_matches_the_projective_transform_op_with_augmentation():
    tf.random.set_seed(3)
    for height, width in [(64, 64), (60, 78), (78, 60), (40, 40)]:  # what decode_for_warp leaves
        image = _image(height, width, seed=1)
        transform = preprocessing.crop_warp_transform(tf.shape(image), 64, Augment())
        reference = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.cast(image, tf.float32)[None],
            transforms=transform[None],
            output_shape=tf.constant([64, 64]),
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="REFLECT",
        )[0].numpy()
        canvas, moved, height_width = preprocessing.to_canvas(image, transform, preprocessing.canvas_size(64))
        ours = preprocessing.warp_canvases(canvas[None], moved[None], height_width[None], 64)[0].numpy()
        np.testing.assert_allclose(ours, reference, atol=0.05)


def test_flip_is_a_mirror():
    image = _image(40, 52, seed=2)
    plain = _canvas_warp(image, 32, NONE)
    mirrored = _canvas_warp(image, 32, NONE, flip=tf.constant(True))
    np.testing.assert_allclose(mirrored, plain[:, ::-1], atol=0.02)


def test_big_jpegs_are_decoded_downscaled_but_never_below_the_target():
    for height, width, size in [(1000, 700, 331), (1000, 700, 100), (300, 400, 331)]:
        encoded = tf.io.encode_jpeg(_image(height, width))
        decoded = preprocessing.decode_for_warp(encoded, size)
        shorter = min(decoded.shape[:2])
        assert decoded.dtype == tf.uint8 and min(size, height, width) <= shorter <= max(
            size * 1.25 + 1, min(height, width)
        )
    png = tf.io.encode_png(_image(900, 500))
    assert min(preprocessing.decode_for_warp(png, 331).shape[:2]) == 331


def test_fast_training_batches_keep_the_contract():
    images = [tf.io.encode_jpeg(_image(h, w, seed=i)).numpy() for i, (h, w) in enumerate([(40, 40), (30, 50)] * 5)]
    label_arrays = {head: np.array([0, -1] * 5, np.int64) for head in labels.HEADS}
    source = Source(name="t", images=tf.data.Dataset.from_tensor_slices(images), labels=label_arrays)
    batches = list(pipeline.make_dataset(source, labels.HEADS, 32, 4, training=True, augment=Augment()))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    for images_, targets, weights in batches:
        assert images_.dtype == tf.float32 and images_.shape[1:] == (32, 32, 3)
        assert 0.0 <= float(tf.reduce_min(images_)) and float(tf.reduce_max(images_)) <= 255.0
        for head in labels.HEADS:
            assert targets[head].dtype == tf.int64 and set(targets[head].numpy()) <= {0}
            assert set(weights[head].numpy()) <= {0.0, 1.0}
    total = sum(float(tf.reduce_sum(w[labels.HEADS[0]])) for _, _, w in batches)
    assert total == 5.0  # every known label weighs 1, every unknown 0
    dropped = list(
        pipeline.make_dataset(source, labels.HEADS, 32, 4, training=True, augment=Augment(), drop_remainder=True)
    )
    assert [len(b[0]) for b in dropped] == [4, 4]
