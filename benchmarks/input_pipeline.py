"""Input pipeline benchmark: artnet's tf.data pipeline vs the 2020 report's way, images/s to the model's input.

    .venv/bin/python benchmarks/input_pipeline.py [--images 1024] [--size 331]

Both read the same real JPEGs (../shared/wikiart-sample, else ../shared/wga-sample, else synthetic) and deliver
augmented float32 batches of 32 at `--size` px with the same augmentations (flip, rotation +-10 deg, shift +-10 %,
zoom +-10 %). The 2020 way is `ImageDataGenerator.flow_from_directory` (Keras 3 keeps it only in
`keras.src.legacy.preprocessing.image`; skipped when that import fails; it squashes to `--size`, no crop). The
per-image PIL loop does artnet's training work in one thread: decode, aspect-preserving resize + centre crop +
augmentation as ONE bilinear affine to `--size`, float32; it differs only in filling outside the image with black
(artnet reflects) and in 8-bit fixed-point interpolation. Rounds interleave the three; medians of `--rounds`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from artnet.config import Augment  # noqa: E402
from artnet.data.pipeline import make_dataset  # noqa: E402
from artnet.data.sources import Source  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def find_images(limit: int) -> list[Path]:
    for folder in (ROOT.parent / "shared" / "wikiart-sample" / "images", ROOT.parent / "shared" / "wga-sample" / "art"):
        if folder.is_dir():
            files = sorted(folder.rglob("*.jpg"))[:limit]
            if files:
                return files
    out = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for i in range(limit):
        Image.fromarray(rng.integers(0, 256, (300, 240, 3), dtype=np.uint8)).save(out / f"{i}.jpg")
    return sorted(out.glob("*.jpg"))


def artnet_pipeline(files: list[Path], size: int, batch: int) -> float:
    import tensorflow as tf

    labels = {head: np.zeros(len(files), np.int64) for head in ("school", "timeframe", "type")}
    images = tf.data.Dataset.from_tensor_slices([str(f) for f in files]).map(tf.io.read_file)
    source = Source(name="bench", images=images, labels=labels)
    dataset = make_dataset(source, labels, size, batch, training=True, augment=Augment())
    started = time.perf_counter()
    count = sum(int(images.shape[0]) for images, _, _ in dataset)
    return count / (time.perf_counter() - started)


def pil_loop(files: list[Path], size: int, batch: int) -> float:
    """artnet's training work per image, in one Python thread: decode (draft-downscaled when the JPEG is >= 2x
    the target, like `decode_jpeg(ratio=)`; an antialiased reduction when still > 1.25x), then ONE bilinear affine
    transform straight to `size` that composes the aspect-preserving resize, centre crop, flip, rotation, shift
    and zoom (the same matrix as `crop_warp_transform`), then float32. Differences: PIL fills outside the image
    with black where artnet reflects, and PIL's bilinear is 8-bit fixed point."""
    rng = random.Random(0)
    started = time.perf_counter()
    count = 0
    for start in range(0, len(files), batch):
        arrays = []
        for path in files[start : start + batch]:
            image = Image.open(path)
            image.draft("RGB", (size, size))
            image = image.convert("RGB")
            if min(image.size) > 1.25 * size:
                ratio = size / min(image.size)
                image = image.resize((math.ceil(image.width * ratio), math.ceil(image.height * ratio)), Image.BILINEAR)
            width, height = image.size
            scale = size / min(width, height)
            new_w, new_h = math.ceil(width * scale), math.ceil(height * scale)
            sx, sy = width / new_w, height / new_h
            ox, oy = (new_w - size) // 2, (new_h - size) // 2
            mirror = -1.0 if rng.random() < 0.5 else 1.0
            angle = math.radians(rng.uniform(-10, 10))
            zoom = 1 + rng.uniform(-0.1, 0.1)
            shift_x, shift_y = (rng.uniform(-0.1, 0.1) * size for _ in range(2))
            cos, sin, centre = math.cos(angle) / zoom, math.sin(angle) / zoom, (size - 1) / 2
            a0, a1, b0, b1 = mirror * cos, -sin, mirror * sin, cos
            a2 = centre - a0 * centre - a1 * centre + shift_x
            b2 = centre - b0 * centre - b1 * centre + shift_y
            # PIL samples at pixel centres (index + 0.5) on both sides: c' = c + 0.5 - 0.5 * (row sum).
            cx = sx * (a2 + ox + 0.5) - 0.5 + 0.5 - 0.5 * sx * (a0 + a1)
            cy = sy * (b2 + oy + 0.5) - 0.5 + 0.5 - 0.5 * sy * (b0 + b1)
            matrix = (sx * a0, sx * a1, cx, sy * b0, sy * b1, cy)
            image = image.transform((size, size), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
            arrays.append(np.asarray(image, dtype=np.float32))
        count += len(np.stack(arrays))
    return count / (time.perf_counter() - started)


def flow_from_directory(files: list[Path], size: int, batch: int) -> float | None:
    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError:
        return None
    folder = Path(tempfile.mkdtemp()) / "class0"
    folder.mkdir(parents=True)
    for path in files:
        shutil.copy(path, folder / path.name)
    generator = ImageDataGenerator(
        horizontal_flip=True, rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1
    ).flow_from_directory(str(folder.parent), target_size=(size, size), batch_size=batch, class_mode="sparse")
    started = time.perf_counter()
    count = sum(len(generator[i][0]) for i in range(len(generator)))
    rate = count / (time.perf_counter() - started)
    shutil.rmtree(folder.parent)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=331)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = find_images(args.images)
    print(
        f"{len(files)} JPEGs from {files[0].parent}, to {args.size} px float32 batches of {args.batch}, "
        f"{os.cpu_count()} cores\n"
    )
    ways = {
        "artnet tf.data (decode + one fused warp, XLA)": artnet_pipeline,
        "ImageDataGenerator.flow_from_directory (2020)": flow_from_directory,
        "per-image PIL loop (the same work, one thread)": pil_loop,
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            rate = way(files, args.size, args.batch)
            if rate is not None:
                rates[name].append(rate)
    base = np.median(rates["artnet tf.data (decode + one fused warp, XLA)"])
    print("| pipeline | images/s (median) | artnet is |")
    print("| --- | ---: | ---: |")
    for name, values in rates.items():
        if values:
            print(f"| {name} | {np.median(values):.0f} | {base / np.median(values):.1f}x |")


if __name__ == "__main__":
    main()
