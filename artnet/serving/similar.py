"""Similar paintings: the training collection's pooled embeddings, searched by cosine similarity.

Built once at export time (`build_index`) and stored beside the model as `index/embeddings.npy`,
`index/items.json` (author, title, date, url, labels) and `index/thumbs/*.jpg` (small thumbnails of the user's own
copies, for the demo; never committed anywhere).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from PIL import Image

from artnet import labels
from artnet.data.preprocessing import decode_and_resize
from artnet.workdir import SimilarityFiles

if TYPE_CHECKING:  # serving never imports the training data code; only the type is named
    from artnet.data.sources import Source

THUMB_SIZE = 160


class SimilarityIndex:
    def __init__(self, embeddings: np.ndarray, items: list[dict], folder: Path | None = None):
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
        self.items = items
        self.folder = folder
        self.files = SimilarityFiles(Path(folder)) if folder else None

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

    def _item(self, index: int, score: float) -> dict:
        item = dict(self.items[index], score=score)
        thumb = self.files.thumb(index) if self.files else None
        item["thumbnail"] = str(thumb) if thumb is not None and thumb.is_file() else None
        return item

    @classmethod
    def load(cls, folder: str | Path) -> SimilarityIndex:
        files = SimilarityFiles(Path(folder))
        if not files.embeddings.is_file():
            raise FileNotFoundError(f"no similarity index in {folder}: export the model with an index")
        items = json.loads(files.items.read_text())
        return cls(np.load(files.embeddings), items, files.root)


def build_index(model, source: Source, folder: str | Path, batch_size: int = 32) -> SimilarityIndex:
    """Embed every image of `source` with `model` and save the index (with thumbnails) in `folder`."""
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
    items = [dict(meta) for meta in source.meta] if len(source.meta) == len(matrix) else [{} for _ in matrix]
    for number, item in enumerate(items):
        # Each neighbour's own labels travel with it: the demo shows and returns them (None = unknown).
        item["labels"] = {
            head: (labels.VOCABULARIES[head][int(codes[number])] if int(codes[number]) >= 0 else None)
            for head, codes in source.labels.items()
            if head in labels.VOCABULARIES and len(codes) == len(items)
        }
    np.save(files.embeddings, matrix.astype(np.float32))
    files.items.write_text(json.dumps(items, ensure_ascii=False))
    return SimilarityIndex(matrix, items, files.root)
