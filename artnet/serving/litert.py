"""The export's LiteRT (TFLite) models: the classifier for a phone or a gallery's kiosk, offline.

`artnet export --litert` writes three files of one function of the model: a batch of `BATCH` uint8 RGB images
of exactly the model's `image_size` (square) in, and the same named outputs as the SavedModel's `serving_default`
out (one float32 probability vector per head; with a year head `year` and `year_sigma`, in years). Their one
signature is `serving_default`, so that `Interpreter(...).get_signature_runner()(images=batch)` returns a dict
by head name (`examples/litert_predict.py`: the whole client, without TensorFlow).

- `model.tflite`: float32 weights; answers equal to the Keras model's within 1e-4 (the reference).
- `model_fp16.tflite`: float16 weights (half the file), computed in float32.
- `model_int8.tflite`: full-integer quantisation (int8 weights and activations, about a quarter of the file),
  calibrated by `converter.representative_dataset` on a few hundred training images. The image input stays
  uint8 pixels (the graph's first op casts them, before the first quantise) and the outputs stay float32
  probabilities (the converter dequantises them at the end), so a caller treats all three files alike.

Why a fixed square input, when the SavedModel takes any size: the serving function's resize is TensorFlow's
antialiased `ScaleAndTranslate`, which is not a LiteRT builtin operator (the converter refuses it, and a Flex
delegate would bring TensorFlow's kernels back onto the phone). So the caller makes the image square and
`image_size` pixels wide, as every mobile image pipeline does, framed as the model was trained (`framing` in
`model_card.json`: a centre crop, or a squash). Inside the model, everything after the resize is the serving
function's own arithmetic (the cast to float32 pixels 0-255, the network, the year head's de-normalisation).

A model the converter refuses (an operator LiteRT has no builtin for) raises `LiteRTError` naming the layer and
the operator, found in the converter's message.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from keras import export as keras_export

from artnet.data.atomic_files import write_atomically
from artnet.data.preprocessing import resize_and_crop
from artnet.models.artnet import YEAR_SIGMA
from artnet.models.year import LOG_SIGMA_MAX, LOG_SIGMA_MIN, YEAR, YEAR_CENTRE, YEAR_SCALE

TFLITE_FILE = "model.tflite"
FP16_FILE = "model_fp16.tflite"
INT8_FILE = "model_int8.tflite"
FILES = {"none": TFLITE_FILE, "float16": FP16_FILE, "int8": INT8_FILE}  # what `write_litert` writes
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
BATCH = 1  # one photograph at a time: what an offline app classifies
REPRESENTATIVE_IMAGES = 300  # the int8 calibration set: "a few hundred" as LiteRT's guide asks
OPS_GUIDE = "https://ai.google.dev/edge/litert/models/ops_compatibility"
# The converter's message: `'tf.Igamma' op is neither a custom op nor a flex op`, and where: a location
# `fused["Igamma:", "functional_1/odd_layer_1/Igamma@__inference_serve_142"]` whose path holds the layer's scope.
_REFUSED_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
_LOCATION = re.compile(r'fused\["(\w+):", "([^"@]+)@')


class LiteRTError(ValueError):
    """The converter refused the model: the message names the layer and operator where it can."""


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


def write_serving_archive(model, folder: Path) -> None:
    """The SavedModel the converter reads, written by Keras' own `ExportArchive` as `keras.Model.export(format=
    "litert")` does: `TFLiteConverter.from_concrete_functions` on a Keras 3 model leaves its variables as
    uninitialised LiteRT resource variables, whose answers are NaN (measured with TF 2.21 and Keras 3.15)."""
    archive = keras_export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", litert_function(model), input_signature=[input_spec(model)])
    archive.write_out(str(folder), verbose=False)


def calibration_batches(model, images: Sequence[np.ndarray]):
    """A `representative_dataset`: each uint8 image framed to the model's square (as the serving function does),
    one batch of `BATCH` at a time."""
    size, framing = int(model.image_size), getattr(model, "framing", "crop")

    def batches():
        for image in images:
            image = np.asarray(image, dtype=np.uint8)
            if image.shape != (size, size, 3):
                image = resize_and_crop(tf.constant(image), size, framing).numpy()
            yield [image[np.newaxis]]

    return batches


def convert(model, folder: Path, quantization: str = "none", representative=None) -> bytes:
    """The LiteRT flatbuffer of the archive in `folder` (`write_serving_archive(model, folder)`), builtin
    operators only, weights as constants; `LiteRTError` naming the layer when the converter refuses it."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"LiteRT quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if quantization == "int8" and not representative:
        raise ValueError("int8 quantization needs representative images (a few hundred training images)")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = False  # weights frozen into the file
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        # Full integer: every operator int8 or the conversion fails (no silent float fallback).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = calibration_batches(model, representative)
    try:
        return converter.convert()
    except Exception as error:  # ConverterError, RuntimeError, ValueError...: all say what went wrong in text
        raise LiteRTError(explain_failure(model, str(error), quantization)) from error


def tflite_model(model, quantization: str = "none", representative=None) -> bytes:
    """One LiteRT flatbuffer of `model` (see the top)."""
    with tempfile.TemporaryDirectory(prefix="artnet-litert-") as folder:
        write_serving_archive(model, Path(folder))
        return convert(model, Path(folder), quantization, representative)


def layer_names(model) -> set[str]:
    """Every layer's name, nested ones (a backbone's blocks) too."""
    return {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}


def explain_failure(model, message: str, quantization: str = "none") -> str:
    """The converter's message -> one that names each refused operator and the layer it sits in (the deepest
    scope of its location that is a layer of the model; Keras' scopes may add a `_1`), and says what to do."""
    known = layer_names(model)
    refused = []
    for op in dict.fromkeys(_REFUSED_OP.findall(message)):
        paths = [path for name, path in _LOCATION.findall(message) if name == op]
        layer = None
        for part in reversed(paths[0].split("/") if paths else []):
            for candidate in (part, re.sub(r"_\d+$", "", part)):
                if candidate in known:
                    layer = candidate
                    break
            if layer:
                break
        where = f"layer {layer}" if layer else f"{paths[0] if paths else 'a layer'}"
        refused.append(f"{where} (op {op})")
    kind = "" if quantization == "none" else f" ({quantization})"
    if refused:
        return (
            f"LiteRT conversion{kind} failed: {', '.join(refused)} has no LiteRT builtin; replace it with builtin "
            f"operations ({OPS_GUIDE}) or export without --litert"
        )
    first = next((line for line in message.splitlines() if line.strip()), "no message")
    return f"LiteRT conversion{kind} failed ({first.strip()[:500]}); export without --litert to skip LiteRT"


def write_litert(model, folder: Path, representative: Sequence[np.ndarray] | None = None) -> dict[str, Path]:
    """`folder/model.tflite`, `model_fp16.tflite` and, with `representative` images, `model_int8.tflite`
    (see the top); {quantization: path}. Raises `LiteRTError` when the converter refuses the model."""
    written = {}
    with tempfile.TemporaryDirectory(prefix="artnet-litert-") as archive:
        write_serving_archive(model, Path(archive))  # once: each quantization converts the same archive
        for quantization, name in FILES.items():
            if quantization == "int8" and not representative:
                print(
                    f"artnet export: {INT8_FILE} not written: int8 calibrates on a few hundred training images "
                    "and none were given (export a run's folder, whose config names its data, or pass "
                    "--representative DIR)",
                    file=sys.stderr,
                )
                continue
            data = convert(model, Path(archive), quantization, representative)
            written[quantization] = Path(folder) / name
            write_atomically(written[quantization], data)
    return written
