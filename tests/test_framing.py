"""Framing: how a painting becomes a square, the same way in training, evaluation, the cache and serving."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from artnet import labels
from artnet.config import Augment, DataConfig, TrainConfig
from artnet.data import pipeline, preprocessing
from artnet.data.sources import Source

NONE = Augment(flip=False, rotation_degrees=0.0, shift=0.0, zoom=0.0)
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _thirds(height: int = 40, width: int = 120) -> np.ndarray:
    """A wide painting in three vertical bands: red | green | blue."""
    image = np.zeros((height, width, 3), np.uint8)
    for band, colour in enumerate((RED, GREEN, BLUE)):
        image[:, band * width // 3 : (band + 1) * width // 3] = colour
    return image


def _colour_at(square: np.ndarray, column: int) -> tuple[int, ...]:
    """The band colour nearest the pixel at mid-height (antialiasing blurs the bands' edges a little)."""
    pixel = square[square.shape[0] // 2, column].astype(float)
    return min((RED, GREEN, BLUE), key=lambda colour: np.abs(pixel - colour).sum())


def test_crop_cuts_the_ends_of_a_wide_painting_and_squash_keeps_them():
    image = tf.constant(_thirds())
    cropped = preprocessing.resize_and_crop(image, 30).numpy()
    squashed = preprocessing.resize_and_crop(image, 30, "squash").numpy()
    assert cropped.shape == squashed.shape == (30, 30, 3) and squashed.dtype == np.uint8
    assert _colour_at(cropped, 0) == GREEN and _colour_at(cropped, 29) == GREEN  # only the centre band
    assert _colour_at(squashed, 0) == RED and _colour_at(squashed, 15) == GREEN and _colour_at(squashed, 29) == BLUE
    square = tf.constant(np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8))
    for size in (50, 25):  # a square painting: the same resize either way (the WikiArt sample at 224 px)
        np.testing.assert_array_equal(
            preprocessing.resize_and_crop(square, size).numpy(),
            preprocessing.resize_and_crop(square, size, "squash").numpy(),
        )
    with pytest.raises(ValueError, match="framing must be one of"):
        preprocessing.resize_and_crop(image, 30, "stretch")


def test_the_fused_training_warp_squashes_like_the_evaluation_resize():
    for height, width, size in [(40, 120, 64), (120, 40, 64), (30, 50, 64), (300, 100, 64)]:
        image = _thirds(height, width) if width > height else _thirds(width, height).transpose(1, 0, 2).copy()
        encoded = tf.io.encode_png(image)
        decoded = preprocessing.decode_for_warp(encoded, size, "squash")
        assert max(decoded.shape[:2]) <= 1.25 * size  # the whole painting fits the canvas: nothing is cut
        transform = preprocessing.crop_warp_transform(tf.shape(decoded), size, NONE, framing="squash")
        canvas, moved, height_width = preprocessing.to_canvas(decoded, transform, preprocessing.canvas_size(size))
        fused = preprocessing.warp_canvases(canvas[None], moved[None], height_width[None], size)[0].numpy()
        reference = preprocessing.decode_and_resize(encoded, size, "squash").numpy().astype(np.float32)
        # bilinear vs antialiased resampling differ only near the band edges; the bands themselves agree
        assert np.median(np.abs(fused - reference)) <= 1.0, (height, width)
        for column in (2, size // 2, size - 3):
            row = size // 2
            assert np.abs(fused[row, column] - reference[row, column]).max() <= 2.0, (height, width, column)


def test_training_batches_and_evaluation_batches_frame_alike():
    images = [tf.io.encode_png(_thirds()).numpy()] * 4
    label_arrays = {head: np.zeros(4, np.int64) for head in labels.HEADS}
    source = Source(name="t", images=tf.data.Dataset.from_tensor_slices(images), labels=label_arrays)
    for framing, left in (("crop", GREEN), ("squash", RED)):
        for training in (True, False):
            batch = next(
                iter(
                    pipeline.make_dataset(source, labels.HEADS, 30, 4, training=training, augment=NONE, framing=framing)
                )
            )[0].numpy()
            np.testing.assert_allclose(batch[0, 15, 1], left, atol=2)


def test_a_squashing_model_serves_and_reloads_squashing(tmp_path):
    import keras

    from artnet.models.artnet import ArtNet

    model = ArtNet("tiny", image_size=32, framing="squash")
    wide = _thirds(40, 120)
    served = model.serving_function()(tf.constant(wide[None]))
    squashed = preprocessing.resize_and_crop(tf.constant(wide), 32, "squash")
    direct = model(tf.cast(squashed, tf.float32)[None], training=False)
    for head in labels.HEADS:
        np.testing.assert_allclose(served[head].numpy(), direct[head].numpy(), atol=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.framing == "squash"
    assert ArtNet("tiny", image_size=32).framing == "crop"
    from artnet.serving.predictor import Predictor

    pixels = Predictor(reloaded).prepare(wide)
    assert _colour_at(pixels, 0) == RED and _colour_at(pixels, 31) == BLUE


def test_the_feature_cache_keys_framing_and_keeps_the_old_crop_keys():
    from artnet.training.feature_cache import FeatureSpec, cache_key

    crop, squash = FeatureSpec(backbone="tiny"), FeatureSpec(backbone="tiny", framing="squash")
    assert "framing" not in crop.to_dict()  # caches filled before framing existed stay valid
    assert cache_key(crop, "d") != cache_key(squash, "d")
    # the backbone's own size, left blank (the probe's config) or spelt out (a built model's): one cache entry
    from artnet.models.backbones import get_spec

    spelt = FeatureSpec(backbone="tiny", image_size=get_spec("tiny").image_size)
    assert cache_key(crop, "d") == cache_key(spelt, "d") != cache_key(FeatureSpec(backbone="tiny", image_size=48), "d")


def test_a_config_refuses_an_unknown_framing():
    with pytest.raises(ValueError, match="data.framing"):
        TrainConfig(backbone="tiny", data=DataConfig(framing="letterbox")).validate()
