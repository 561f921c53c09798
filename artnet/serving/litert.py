"""The export's LiteRT (TFLite) model, `model.tflite`: the classifier for a phone or a gallery's kiosk, offline.

`tflite_model(model)` converts, with `tf.lite.TFLiteConverter`, one function of the model: a batch of
`BATCH` uint8 RGB images of exactly the model's `image_size` (square) in, and the same named outputs as the
SavedModel's `serving_default` out (one float32 probability vector per head; with a year head `year` and
`year_sigma`, in years). Its one signature is `serving_default`, so that
`ai_edge_litert.interpreter.Interpreter(...).get_signature_runner()(images=batch)` returns a dict by name.

Why a fixed square input, when the SavedModel takes any size: the serving function's resize is TensorFlow's
antialiased `ScaleAndTranslate`, which is not a LiteRT builtin operator (the converter refuses it, and a Flex
delegate would bring TensorFlow's kernels back onto the phone). So the caller makes the image square and
`image_size` pixels wide, as every mobile image pipeline does; `prepare_image` is that step in numpy/PIL (the
training pipeline's framing: a centre crop, or a squash for a model trained with `framing="squash"`). Inside
the model, everything after the resize is the serving function's own arithmetic (the cast to float32 pixels
0-255, the network, the year head's de-normalisation), so on a square image of the model's size the answers are
the SavedModel's to float rounding (tests/test_sharing.py).

Quantisation: none by default (float32 weights, answers equal to the Keras model's within 1e-4). `"float16"`
halves the file with float16 weights (computed in float32); `"dynamic"` stores int8 weights (about a quarter)
at some cost in agreement. Labels are not inside the file: `labels.json` beside it names each output's classes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from keras import export as keras_export
from PIL import Image

from artnet.data.atomic_files import write_atomically
from artnet.models.artnet import YEAR_SIGMA
from artnet.models.year import LOG_SIGMA_MAX, LOG_SIGMA_MIN, YEAR, YEAR_CENTRE, YEAR_SCALE

TFLITE_FILE = "model.tflite"
BATCH = 1  # one photograph at a time: what an offline app classifies
QUANTIZATIONS = ("none", "float16", "dynamic")


def litert_function(model):
    """(BATCH, S, S, 3) uint8 images -> {output name: float32}, as the model's serving function after its resize."""

    def serve(images):
        pixels = tf.cast(images, tf.float32)
        results = {name: tf.cast(tensor, tf.float32) for name, tensor in model(pixels, training=False).items()}
        if YEAR in results:
            raw = results.pop(YEAR)
            results[YEAR] = YEAR_CENTRE + YEAR_SCALE * raw[:, 0]
            results[YEAR_SIGMA] = YEAR_SCALE * tf.exp(tf.clip_by_value(raw[:, 1], LOG_SIGMA_MIN, LOG_SIGMA_MAX))
        return results

    return serve


def input_spec(model) -> tf.TensorSpec:
    size = int(model.image_size)
    return tf.TensorSpec([BATCH, size, size, 3], tf.uint8, name="images")


def tflite_model(model, quantization: str = "none") -> bytes:
    """The LiteRT flatbuffer of `model` (see the top), with builtin operators only and its weights as constants.

    Through a SavedModel written by Keras' own `ExportArchive`, as `keras.Model.export(format="litert")` does:
    `TFLiteConverter.from_concrete_functions` on a Keras 3 model leaves its variables as uninitialised LiteRT
    resource variables, whose answers are NaN (measured with TF 2.21 and Keras 3.15).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"LiteRT quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    with tempfile.TemporaryDirectory(prefix="artnet-litert-") as folder:
        archive = keras_export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", litert_function(model), input_signature=[input_spec(model)])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = False  # weights frozen into the file
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def prepare_image(image: Image.Image, image_size: int, framing: str = "crop") -> np.ndarray:
    """A PIL image -> the (1, S, S, 3) uint8 batch `model.tflite` takes: RGB, centre-cropped to a square
    (`framing="crop"`) or squashed (`"squash"`), resized to `image_size` with an antialiasing filter."""
    image = image.convert("RGB")
    if framing == "crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8)[np.newaxis]


def write_tflite(model, folder: Path, quantization: str = "none") -> Path | None:
    """`folder/model.tflite`, or None with a warning on stderr when the converter refuses the model: the export's
    other files (the `.keras` model, the SavedModel) are what a run cannot do without, so a backbone whose
    operators LiteRT lacks costs only the offline file, never the run's export."""
    path = Path(folder) / TFLITE_FILE
    try:
        data = tflite_model(model, quantization)
    except Exception as error:  # the converter raises ConverterError, RuntimeError, ValueError...
        print(f"artnet export: warning: no {TFLITE_FILE} ({type(error).__name__}: {error})"[:2000], file=sys.stderr)
        return None
    write_atomically(path, data)
    return path
