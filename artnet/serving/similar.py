"""Similar paintings: the training collection's pooled embeddings, searched by cosine similarity.

Built once at export time (`build_index`) and stored beside the model as `index/embeddings.npy`,
`index/items.json` (author, title, date, url, labels), `index/thumbs/*.jpg` (small thumbnails of the user's own
copies, for the demo; never committed anywhere) and `index/features.npz` (each painting's SIFT features, made from
the image itself rather than its thumbnail, so that a photo of an indexed painting can be named:
`artnet.serving.naming`). An index without `features.npz` (exported before naming existed) serves as before and
names nothing.

An index is data, read as such (`SimilarityIndex.load`): its files must be regular files inside the export
(`artnet.serving.files`), `embeddings.npy` a finite 2-D float array with one row per entry of `items.json`, each
entry an object whose shown fields are text, numbers or null. A bad index is refused with a message naming the
file, never served in part: an `items.json` shorter than the embeddings once failed every request.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from PIL import Image

from artnet import labels
from artnet.data.atomic_files import atomic_path, write_atomically
from artnet.data.images import ImageError, open_image
from artnet.data.preprocessing import decode_and_resize
from artnet.serving.cards import named_record
from artnet.serving.files import (
    ExportError,
    FileRefused,
    inside,
    open_regular,
    read_json_inside,
    regular_inside,
    shown_name,
)
from artnet.serving.naming import IndexFeatures, PaintingNamer
from artnet.workdir import SimilarityFiles

if TYPE_CHECKING:  # serving never imports the training data code; only the type is named
    from artnet.data.sources import Source

THUMB_SIZE = 160
SHOWN_FIELDS = ("author", "title", "date", "url")  # what the demo shows of an item, besides its labels
EMBEDDING_DTYPES = (np.float16, np.float32, np.float64)


class SimilarityIndex:
    def __init__(
        self,
        embeddings: np.ndarray,
        items: list[dict],
        folder: Path | None = None,
        thumbnails: list[Path | None] | None = None,
        features: IndexFeatures | None = None,
    ):
        """`thumbnails`: each item's thumbnail (a checked real path, see `load`) or None; by default those of
        `folder`, checked the same way. `features`: the paintings' local features, for naming (or None)."""
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
        self.items = items
        self.folder = folder
        self.files = SimilarityFiles(Path(folder)) if folder else None
        if thumbnails is None:
            thumbnails = checked_thumbnails(self.files, len(items), Path(folder)) if folder else [None] * len(items)
        self.thumbnails = thumbnails
        self.features = features

    def __len__(self) -> int:
        return len(self.items)

    def query(self, embedding: np.ndarray, k: int = 6) -> list[dict]:
        """The k most similar items, best first, each with `score` (cosine) and `thumbnail` (a path or None)."""
        return self.query_batch(np.asarray(embedding, np.float32).reshape(1, -1), k)[0]

    def query_batch(self, embeddings: np.ndarray, k: int = 6) -> list[list[dict]]:
        """`query` for each row of `embeddings` (n, d), in one matrix product: the index is read from memory
        once for all n (one query alone reads all of it, 26 MB for 5,120 x 1,280, to score it)."""
        vectors = np.asarray(embeddings, np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        scores = vectors @ self.embeddings.T  # (n, items)
        k = min(k, len(self.items))
        answers = []
        for row in scores:
            best = np.argpartition(-row, k - 1)[:k] if 0 < k < len(row) else np.arange(len(row))
            best = best[np.argsort(-row[best], kind="stable")][:k]
            answers.append([self._item(int(index), float(row[index])) for index in best])
        return answers

    @functools.cached_property
    def namer(self) -> PaintingNamer | None:
        """The namer over the paintings' features, made when first asked (an export that only writes the index
        never builds one); None for an index exported before naming existed: it names nothing."""
        return PaintingNamer.from_features(self.features) if self.features is not None and self.features.count else None

    def name(self, painting: np.ndarray, candidates=()) -> dict | None:
        """The indexed painting `painting` (a photo's cut-out) shows, as `cards.named_record` (with the `inliers`
        that verified it), or None: no features in the index, or no match sure enough. `candidates`: index
        positions to verify (the embedding's nearest), beside the namer's own vote."""
        if self.namer is None:
            return None
        naming = self.namer.name(painting, candidates)
        return None if naming.item is None else named_record(self.items[naming.item], naming.item, naming.inliers)

    def _item(self, index: int, score: float) -> dict:
        item = dict(self.items[index], score=score, position=index)
        thumb = self.thumbnails[index]
        item["thumbnail"] = str(thumb) if thumb is not None else None
        return item

    @classmethod
    def load(cls, folder: str | Path, root: str | Path | None = None) -> SimilarityIndex:
        """The index in `folder`, every file of it checked (see the top), or `ExportError` saying what is wrong.

        `root`: the export folder that the index's files must lie inside (by default `folder` itself)."""
        files = SimilarityFiles(Path(folder))
        root = Path(root) if root is not None else files.root
        if not os.path.lexists(files.embeddings):
            raise FileNotFoundError(f"no similarity index in {folder}: export the model with an index")
        embeddings = read_embeddings(root, files.embeddings)
        items = read_items(root, files.items)
        if len(items) != len(embeddings):
            raise ExportError(
                f"the similarity index in {root} does not hold together: {shown_name(root, files.items)} lists "
                f"{len(items):,} paintings but {shown_name(root, files.embeddings)} holds {len(embeddings):,} "
                "embeddings (written in part, or by two exports): export the model again"
            )
        features = IndexFeatures.load(root, files.features, len(items)) if os.path.lexists(files.features) else None
        return cls(embeddings, items, files.root, checked_thumbnails(files, len(items), root), features)


def read_embeddings(root: Path, path: Path) -> np.ndarray:
    """`embeddings.npy`, a regular file inside `root`: a finite 2-D float array whose header matches its size (its
    header is read first: a header claiming 10^12 rows allocates nothing), or `ExportError`."""
    name = shown_name(root, path)
    real = regular_inside(root, path)
    try:
        with open_regular(real, max_bytes=2**40, follow_links=False) as stream:
            size = os.fstat(stream.fileno()).st_size
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if len(shape) != 2 or dtype not in EMBEDDING_DTYPES:
                raise ValueError(f"a {dtype} array of shape {shape}, not a 2-D float array")
            expected = math.prod(shape) * dtype.itemsize
            if size - stream.tell() != expected:
                raise ValueError(
                    f"its header says {shape} {dtype} ({expected:,} bytes) but it holds {size - stream.tell():,}"
                )
            matrix = np.frombuffer(stream.read(expected), dtype=dtype)
            matrix = matrix.reshape(shape, order="F" if fortran else "C")
    except FileRefused as error:
        raise ExportError(f"{name} in the export {root}: {error}") from None
    except (ValueError, OSError, TypeError) as error:
        raise ExportError(
            f"{name} in the export {root} is not a readable embedding matrix ({error}): export the model again"
        ) from None
    if not np.isfinite(matrix).all():
        raise ExportError(f"{name} in the export {root} holds NaN or infinite values: export the model again")
    return matrix


def read_items(root: Path, path: Path) -> list[dict]:
    """`items.json`, a regular file inside `root`: a list of objects whose shown fields are text, numbers or null
    (NaN and infinities become null) and whose `labels` map heads to class names or null; or `ExportError`."""
    name = shown_name(root, path)
    items = read_json_inside(root, path)
    if not isinstance(items, list):
        raise ExportError(f"{name} in the export {root} holds a {type(items).__name__}, not a list of paintings")
    return [_checked_item(item, number, name) for number, item in enumerate(items)]


def _checked_item(item, number: int, name: str) -> dict:
    if not isinstance(item, dict):
        raise ExportError(
            f"{name}: painting {number} is a {type(item).__name__}, not an object: export the model again"
        )
    item = dict(item)
    for key in SHOWN_FIELDS:
        item[key] = _scalar(item.get(key), f"{name}: painting {number}'s {key!r}")
    item_labels = item.get("labels")
    if item_labels is None:
        item_labels = {}
    if not isinstance(item_labels, dict):
        raise ExportError(f"{name}: painting {number}'s labels are a {type(item_labels).__name__}, not an object")
    item["labels"] = {
        str(head): _scalar(value, f"{name}: painting {number}'s label {head!r}") for head, value in item_labels.items()
    }
    return item


def _scalar(value, what: str):
    """Text, a finite number or None (NaN and infinities are None: JSON has no NaN), or `ExportError`."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExportError(f"{what} is a {type(value).__name__}, not text or a number: export the model again")
    return value if math.isfinite(value) else None


def checked_thumbnails(files: SimilarityFiles, count: int, root: Path) -> list[Path | None]:
    """Each item's thumbnail, as the real path of a regular file inside `root`, or None where it has none; a
    thumbnail folder or file that links out of `root` (or is a FIFO, device, ...) is an `ExportError` naming it."""
    if not os.path.lexists(files.thumbs):
        return [None] * count
    regular_folder_inside(root, files.thumbs)
    thumbnails = []
    for index in range(count):
        path = files.thumb(index)
        thumbnails.append(regular_inside(root, path) if os.path.lexists(path) else None)
    return thumbnails


def regular_folder_inside(root: Path, path: Path) -> Path:
    """The real path of the folder `path`, inside `root`, or `ExportError`."""
    real = inside(root, path)
    if not real.is_dir():
        raise ExportError(f"{shown_name(root, path)} in the export {root} is not a folder: export the model again")
    return real


def build_index(model, source: Source, folder: str | Path, batch_size: int = 32) -> SimilarityIndex:
    """Embed every image of `source` with `model` and save the index (with thumbnails) in `folder`.

    The thumbnails and `features.npz` first, then `embeddings.npy`, then `items.json`, each written whole or not at all
    (a temporary file, fsynced, renamed): a build killed halfway leaves files that disagree, which `load` refuses."""
    files = SimilarityFiles(Path(folder))
    files.thumbs.mkdir(parents=True, exist_ok=True)
    embedder = model.embedding_model()
    size, framing = model.image_size, model.framing
    pixels = source.images.map(
        lambda encoded: decode_and_resize(encoded, size, framing), num_parallel_calls=tf.data.AUTOTUNE
    )
    embeddings = []
    for number, batch in enumerate(pixels.batch(batch_size).prefetch(tf.data.AUTOTUNE)):
        embeddings.append(np.asarray(embedder(tf.cast(batch, tf.float32), training=False)))
        for offset, image in enumerate(batch.numpy()):
            thumb = Image.fromarray(image)
            thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
            thumb.save(files.thumb(number * batch_size + offset), quality=85)
    matrix = np.concatenate(embeddings) if embeddings else np.zeros((0, 1), np.float32)
    features = IndexFeatures.of_images(_full_images(source))
    features.save(files.features)
    items = [dict(meta) for meta in source.meta] if len(source.meta) == len(matrix) else [{} for _ in matrix]
    for number, item in enumerate(items):
        # Each neighbour's own labels travel with it: the demo shows and returns them (None = unknown).
        item["labels"] = {
            head: (labels.VOCABULARIES[head][int(codes[number])] if int(codes[number]) >= 0 else None)
            for head, codes in source.labels.items()
            if head in labels.VOCABULARIES and len(codes) == len(items)
        }
    with atomic_path(files.embeddings) as partial:
        np.save(partial, matrix.astype(np.float32))
    items = [json_safe(item) for item in items]  # a CSV's empty cell is NaN: JSON has none, null it is
    write_atomically(files.items, json.dumps(items, ensure_ascii=False, allow_nan=False).encode())
    return SimilarityIndex(matrix, items, files.root, features=features)


def _full_images(source: Source):
    """Each image of `source` decoded as itself (upright RGB, a large JPEG at a reduced size), for its local
    features; an image that does not decode gets none (an empty array), so positions still match the index."""
    for encoded in source.images.as_numpy_iterator():
        try:
            yield np.asarray(open_image(bytes(encoded)))
        except ImageError:
            yield np.zeros((1, 1, 3), np.uint8)


def json_safe(value):
    """`value` with every NaN or infinity (nested in dicts and lists) replaced by None, and numpy scalars as
    Python numbers: what `json.dumps(..., allow_nan=False)` writes."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
