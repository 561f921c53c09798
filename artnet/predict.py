"""Predict with a trained ArtNet: one image, a list of images, or a batch of files written as JSON lines or CSV.

Every prediction is ONE forward pass of a compiled function that returns the head probabilities and the pooled
embedding together. Images are decoded by `artnet.wga.images.open_image` (the dataset builder's guarded
decoder: EXIF upright, any colour mode -> RGB, size limits) and resized by `artnet.data.resize_and_crop`, the
same resize the training pipeline and the exported SavedModel use, so predictions see the pixels training saw.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from artnet import labels
from artnet.data import resize_and_crop
from artnet.models.artnet import POOLED
from artnet.wga.images import MAX_BYTES, MAX_PIXELS, ImageError, _to_rgb, open_image

EMBEDDING = "embedding"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
# The centre crop keeps only the middle square, so a strip longer than this many times its short side is cut
# down first: resizing a 1 x 4000 strip whole would make a 331 x 1.3 M float tensor (5 GB). The dataset stores
# images at most 3:1, so nothing the model was trained on is affected.
MAX_ASPECT = 4
# Images whose short side exceeds this many times the model's input size are box-reduced first (bounded memory
# for a 100 Mpx scan); the antialiased resize that follows would average those pixels anyway.
MAX_OVERSIZE = 4


# --- decoding --------------------------------------------------------------------------------------------


def load_rgb(image) -> np.ndarray:
    """A path, encoded bytes, a PIL image or a uint8 array -> uint8 (H, W, 3) RGB, or `ImageError` saying why.

    One entry point for every input type, so each gets the same guards (file size, pixel count, colour modes,
    EXIF orientation; an animated GIF gives its first frame).
    """
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        try:
            return _load_path(path)
        except ImageError as error:
            raise ImageError(f"{path}: {error}") from error
    if isinstance(image, bytes | bytearray | memoryview):
        return np.asarray(open_image(bytes(image)))
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(
        f"cannot read an image from a {type(image).__name__}: give a path, encoded bytes, a PIL image "
        "or a uint8 numpy array (H, W, 3) or (H, W)"
    )


def _load_path(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageError("no such file")
    if path.is_dir():
        raise ImageError("is a folder, not an image file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # checked before reading, so a huge file is never loaded into memory
            raise ImageError(f"file too large: {size / 2**20:.0f} MiB > {MAX_BYTES / 2**20:.0f} MiB")
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read the file: {error.strerror or error}") from error
    return np.asarray(open_image(data))


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image too large: {width}x{height} > {MAX_PIXELS / 1e6:.0f} Mpx")
    try:
        image.load()  # an image fresh from Image.open is lazy: a truncated file fails here
        image = ImageOps.exif_transpose(image)
        return np.asarray(_to_rgb(image))
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"unreadable PIL image: {error}") from error


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"a numpy image must be uint8 in [0, 255], got {array.dtype}: convert it first")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ImageError(f"a numpy image must be (H, W, 3), (H, W, 4) or (H, W); got shape {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"empty image: shape {array.shape}")
    if height * width > MAX_PIXELS:
        raise ImageError(f"image too large: {width}x{height} > {MAX_PIXELS / 1e6:.0f} Mpx")
    if array.shape[-1] == 4:  # transparency goes on white, as in the dataset
        return np.asarray(_to_rgb(Image.fromarray(array, "RGBA")))
    return np.ascontiguousarray(array)


def bound_size(array: np.ndarray, image_size: int) -> np.ndarray:
    """Cut extreme strips to their centre and box-reduce huge images, so resizing needs bounded memory.

    A no-op for every image of aspect ratio up to `MAX_ASPECT` and short side up to `MAX_OVERSIZE` x
    `image_size`: those are resized exactly as in training.
    """
    height, width = array.shape[:2]
    longest = MAX_ASPECT * min(height, width)
    if height > longest:
        top = (height - longest) // 2
        array = array[top : top + longest]
    if width > longest:
        left = (width - longest) // 2
        array = array[:, left : left + longest]
    factor = min(array.shape[:2]) // (2 * image_size)
    if min(array.shape[:2]) > MAX_OVERSIZE * image_size and factor >= 2:
        array = np.asarray(Image.fromarray(np.ascontiguousarray(array)).reduce(factor))
    return array


# --- the predictor ---------------------------------------------------------------------------------------


class Predictor:
    """Ranked labels and the embedding for images, from one compiled forward pass per call.

    `forward_passes` counts the calls of the compiled model function (one per `predict` / `predict_batch`).
    """

    def __init__(self, model_or_path, top_k: int = 3):
        if isinstance(model_or_path, str | os.PathLike):
            from artnet.export import load_model

            model_or_path = load_model(model_or_path)
        self.model = model_or_path
        self.heads: tuple[str, ...] = tuple(self.model.heads)
        self.image_size = int(self.model.image_size)
        self.top_k = _check_top_k(top_k)
        self.forward_passes = 0

        # One Keras model with both the heads and the pooled features: a single forward pass yields both.
        outputs = {head: self.model.get_layer(head).output for head in self.heads}
        outputs[EMBEDDING] = self.model.get_layer(POOLED).output
        joint = keras.Model(self.model.input, outputs, name=f"{self.model.name}_predict")
        image_size = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def forward(images):
            pixels = tf.cast(resize_and_crop(images, image_size), tf.float32)
            results = joint(pixels, training=False)
            return {name: tf.cast(tensor, tf.float32) for name, tensor in results.items()}

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
        def resize(image):
            return resize_and_crop(image, image_size)

        # Trace now, once: the first request should not pay for it, and the signature never retraces.
        self._forward = forward.get_concrete_function()
        self._resize = resize.get_concrete_function()

    def prepare(self, image) -> np.ndarray:
        """Any accepted input -> the uint8 (image_size, image_size, 3) pixels the model reads."""
        return self._fit(load_rgb(image))

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        array = bound_size(rgb, self.image_size)
        if array.shape[:2] == (self.image_size, self.image_size):
            return array  # resize_and_crop is the identity at the target size (tested)
        return self._resize(tf.constant(array)).numpy()

    def predict(self, image, top_k: int | None = None) -> dict:
        """{head: [(label, probability), ...] best first, "embedding": float32 vector} for one image."""
        array = bound_size(load_rgb(image), self.image_size)
        return self._rank(self._run(array[np.newaxis]), 0, top_k)

    def predict_batch(self, images: list, top_k: int | None = None) -> list[dict]:
        """`predict` for many images (any sizes) in one forward pass; an empty list makes no pass."""
        if not images:
            return []
        batch = np.stack([self.prepare(image) for image in images])
        results = self._run(batch)
        return [self._rank(results, index, top_k) for index in range(len(images))]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.forward_passes += 1
        return {name: tensor.numpy() for name, tensor in self._forward(tf.constant(batch)).items()}

    def _rank(self, results: dict[str, np.ndarray], index: int, top_k: int | None) -> dict:
        top_k = self.top_k if top_k is None else _check_top_k(top_k)
        prediction = {}
        for head in self.heads:
            probabilities = results[head][index]
            best = np.argsort(-probabilities, kind="stable")[:top_k]
            prediction[head] = [(labels.VOCABULARIES[head][i], float(probabilities[i])) for i in best]
        prediction[EMBEDDING] = results[EMBEDDING][index]
        return prediction


def _check_top_k(top_k: int) -> int:
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    return int(top_k)


# --- batch prediction over files -------------------------------------------------------------------------


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files as given (whatever their extension, so a bad one gets its error line), folders recursively
    (sorted) for image extensions. A path that does not exist is kept: it gets a "no such file" line."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            paths.extend(sorted(found))
        else:
            paths.append(path)
    return paths


def predict_paths(
    predictor: Predictor, paths: list[Path], batch_size: int = 16, top_k: int | None = None
) -> Iterator[dict]:
    """One JSON-friendly record per path, in input order; a bad file gives `ok: False` and never stops the rest.

    Files are decoded and resized in a small thread pool (PIL and TF release the GIL) a little ahead of the
    forward passes, so decoding overlaps inference while memory stays bounded to a few batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    def prepare(path: Path):
        try:
            return predictor._fit(_load_path(Path(path))), None
        except ImageError as error:
            return None, str(error)
        except Exception as error:  # noqa: BLE001 (one strange file must not abort a batch of thousands)
            return None, f"{type(error).__name__}: {error}"

    workers = max(1, min(4, os.cpu_count() or 1))
    pending: collections.deque = collections.deque()
    remaining = iter(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="artnet-decode") as pool:

        def submit_next() -> None:
            path = next(remaining, None)
            if path is not None:
                pending.append((path, pool.submit(prepare, path)))

        for _ in range(2 * batch_size):
            submit_next()
        chunk: list[tuple[Path, np.ndarray | None, str | None]] = []
        while pending:
            path, future = pending.popleft()
            submit_next()
            chunk.append((path, *future.result()))
            if len(chunk) == batch_size or not pending:
                yield from _predict_chunk(predictor, chunk, top_k)
                chunk = []


def _predict_chunk(predictor: Predictor, chunk: list, top_k: int | None) -> Iterator[dict]:
    good = [pixels for _, pixels, _ in chunk if pixels is not None]
    predictions = iter(predictor.predict_batch(good, top_k=top_k))
    for path, pixels, error in chunk:
        if pixels is None:
            yield {"path": str(path), "ok": False, "error": error}
            continue
        prediction = next(predictions)
        record = {"path": str(path), "ok": True}
        for head in predictor.heads:
            record[head] = [[label, round(probability, 6)] for label, probability in prediction[head]]
        yield record


def csv_columns(heads: Iterable[str], top_k: int) -> list[str]:
    """path, ok, error, then `<head>_<rank>` and `<head>_<rank>_p` for each head and rank."""
    columns = ["path", "ok", "error"]
    for head in heads:
        for rank in range(1, top_k + 1):
            columns += [f"{head}_{rank}", f"{head}_{rank}_p"]
    return columns


def _csv_row(record: dict, heads: Iterable[str]) -> dict:
    row = {"path": record["path"], "ok": record["ok"], "error": record.get("error", "")}
    for head in heads:
        for rank, (label, probability) in enumerate(record.get(head, []), start=1):
            row[f"{head}_{rank}"] = label
            row[f"{head}_{rank}_p"] = probability
    return row


def run_batch_prediction(model, inputs: list[str], out: str | None, top_k: int = 3, batch_size: int = 16) -> int:
    """Predict every image under `inputs` into `out` (JSON lines; CSV when it ends in .csv; stdout for None/"-").

    Returns 0 when the batch completed, even if some files failed (each has its own error record); 1 when the
    inputs hold no file at all (likely a wrong folder). `model` is an ArtNet, a model path or a `Predictor`.
    """
    from tqdm import tqdm

    paths = expand_inputs(inputs)
    if not paths:
        print(f"no image files found in {', '.join(map(str, inputs)) or 'the inputs'}", file=sys.stderr)
        return 1
    top_k = _check_top_k(top_k)
    predictor = model if isinstance(model, Predictor) else Predictor(model, top_k=top_k)
    to_stdout = out is None or str(out) == "-"
    as_csv = not to_stdout and str(out).lower().endswith(".csv")
    if not to_stdout:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    stream = sys.stdout if to_stdout else open(out, "w", newline="" if as_csv else None, encoding="utf-8")
    counts = collections.Counter()
    try:
        writer = None
        if as_csv:
            writer = csv.DictWriter(stream, fieldnames=csv_columns(predictor.heads, top_k))
            writer.writeheader()
        with tqdm(total=len(paths), unit="img", file=sys.stderr, desc="predict") as progress:
            for record in predict_paths(predictor, paths, batch_size=batch_size, top_k=top_k):
                if writer is not None:
                    writer.writerow(_csv_row(record, predictor.heads))
                else:
                    stream.write(json.dumps(record) + "\n")
                counts["ok" if record["ok"] else "failed"] += 1
                progress.update(1)
        stream.flush()
    finally:
        if not to_stdout:
            stream.close()
    destination = "stdout" if to_stdout else out
    print(f"{counts['ok']} ok, {counts['failed']} failed, {len(paths)} files -> {destination}", file=sys.stderr)
    return 0
