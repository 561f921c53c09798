"""A synthetic, learnable task: each head's label is painted into the image's colour.

school -> red level, timeframe -> green level, type -> blue level (plus noise). A model whose data, weights,
losses and heads are wired right learns all three in a few epochs; one that routes a label to the wrong head
cannot. Used by the tests and as a smoke test of a new machine.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from artnet import labels

_CHANNEL = {"school": 0, "timeframe": 1, "type": 2}


def synthetic_labels(n: int, seed: int = 0, unknown_fraction: float = 0.2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    result = {}
    for head in labels.HEADS:
        values = rng.integers(0, len(labels.VOCABULARIES[head]), size=n)
        values[rng.random(n) < unknown_fraction] = labels.UNKNOWN
        result[head] = values.astype(np.int64)
    return result


def synthetic_image(label_by_head: dict[str, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (size, size, 3); an unknown label paints a random level (the image still exists)."""
    image = np.empty((size, size, 3), dtype=np.float32)
    for head, channel in _CHANNEL.items():
        classes = len(labels.VOCABULARIES[head])
        label = label_by_head[head] if label_by_head[head] >= 0 else rng.integers(0, classes)
        image[..., channel] = 20 + 215 * label / (classes - 1)
    image += rng.normal(0, 4, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_source(n: int, size: int = 32, seed: int = 0, unknown_fraction: float = 0.2):
    """An `artnet.data.sources.Source` of PNG-encoded synthetic images."""
    # Imported here, not at the top: TensorFlow (which `sources` imports too) is heavy and only this function needs
    # it; the labels, images and folders above are plain numpy and PIL.
    import tensorflow as tf

    from artnet.data.sources import Source

    rng = np.random.default_rng(seed + 1)
    label_arrays = synthetic_labels(n, seed, unknown_fraction)
    encoded = []
    for i in range(n):
        image = synthetic_image({h: int(label_arrays[h][i]) for h in labels.HEADS}, size, rng)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    images = tf.data.Dataset.from_tensor_slices(tf.constant(encoded, dtype=tf.string))
    return Source(name=f"synthetic(n={n}, seed={seed})", images=images, labels=label_arrays)


def write_synthetic_folder(
    folder: str | Path, n: int, size: int = 32, seed: int = 0, authors: int = 40, years: bool = False
) -> Path:
    """A labelled folder (images/ + labels.csv, blank = unknown), like ../shared/wikiart-sample. With `years`, a
    `year` column too: a year inside the painting's timeframe block (so the image's green level tells it to within
    50 years), blank for about a third of the paintings and wherever the timeframe is unknown."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    label_arrays = synthetic_labels(n, seed)
    lines = ["file,author,timeframe,school,type" + (",year" if years else "")]
    year_rng = np.random.default_rng(seed + 2)
    for i in range(n):
        row = {h: int(label_arrays[h][i]) for h in labels.HEADS}
        name = f"images/{i:05d}.jpg"
        Image.fromarray(synthetic_image(row, size, rng)).save(folder / name, quality=95)
        names = {h: labels.label_name(h, row[h]) or "" for h in labels.HEADS}
        line = f"{name},painter {i % authors},{names['timeframe']},{names['school']},{names['type']}"
        if years:
            dated = row["timeframe"] >= 0 and year_rng.random() < 0.67
            line += f",{1401 + 50 * row['timeframe'] + int(year_rng.integers(0, 50))}" if dated else ","
        lines.append(line)
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder
