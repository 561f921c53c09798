"""What else could a linear probe see, or weigh? Two ideas for unseen painters, on validation only.

The cpu recipe is a linear probe on EfficientNet-Lite0's pooled features and the per-channel mean and std of five
stage outputs (recipe_search.md: 60.6 % mean validation balanced accuracy against 58.7 % for pooled alone). Two
cheap ways it might see or learn more, each scored on the painter-disjoint validation split:

- **Second-order style features**: the channel covariance of each stage's output (the Gram matrix of Gatys et al.
  2016, centred; bilinear pooling, Lin et al. 2015), upper triangle, signed square root, as texture descriptors
  beside the moments. Stage 6 (192 channels) is first projected to 64 by a fixed random orthonormal matrix.
- **Painter weighting**: each training image weighs n^(alpha-1), n = its painter's images (in its class, for
  `painter+class`), then classes are balanced by total weight: alpha = 1 is the probe's own class weighting,
  alpha = 0 counts every painter once, so prolific painters stop dominating what "Dutch" or "1601-1650" means.

One plain view per image (no mirror), features kept in `--cache` (resumable), C chosen per head on validation
balanced accuracy over `C_GRID` (standardised features, warm-started path as `artnet.training.probe`).

    .venv/bin/python experiments/probe_variants.py    # writes experiments/results/probe_variants.md / .csv
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECIPE = str(Path(__file__).resolve().parent / "configs" / "cpu.py") + ":multihead"
LAYERS = ("block2b_add", "block3b_add", "block4c_add", "block5c_add", "block6d_add")
PROJECTED = {"block6d_add": 64}  # channels -> this many (fixed random orthonormal projection, seed 0)
C_GRID = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003)
HEADS = ("school", "timeframe", "type")
# name -> (feature blocks, weighting, alpha)
VARIANTS = {
    "pooled (the probe)": (["pooled"], "image", 1.0),
    "pooled + moments (the cpu recipe)": (["pooled", "moments"], "image", 1.0),
    "pooled + moments + covariance, stages 2-4": (["pooled", "moments", *LAYERS[:3]], "image", 1.0),
    "pooled + moments + covariance, stages 2-6": (["pooled", "moments", *LAYERS], "image", 1.0),
    "pooled, painters ^0.5": (["pooled"], "painter", 0.5),
    "pooled, painters equal": (["pooled"], "painter", 0.0),
    "pooled, painters ^0.5 within class": (["pooled"], "painter+class", 0.5),
    "pooled + moments, painters ^0.5": (["pooled", "moments"], "painter", 0.5),
}


def extract(source, path: Path) -> None:
    """Pooled features, moments (`ChannelStatistics`) and channel covariances of `LAYERS`, one pass per image."""
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    from artnet.data.preprocessing import decode_and_resize
    from artnet.models.artnet import ChannelStatistics
    from artnet.models.backbones import build_backbone

    backbone = build_backbone("efficientnet_lite0", weights="imagenet", image_size=224)
    backbone.trainable = False
    maps = [backbone.get_layer(name).output for name in LAYERS]
    pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
    model = keras.Model(backbone.input, [pooled, ChannelStatistics()(maps), *maps])
    rng = np.random.default_rng(0)
    projections = {
        name: tf.constant(
            np.linalg.qr(rng.standard_normal((backbone.get_layer(name).output.shape[-1], k)))[0], tf.float32
        )
        for name, k in PROJECTED.items()
    }

    def covariance(feature_map, projection=None):
        x = tf.cast(feature_map, tf.float32)
        batch, height, width, channels = x.shape
        x = tf.reshape(x, (batch, height * width, channels))
        if projection is not None:
            x, channels = x @ projection, projection.shape[1]
        x = x - tf.reduce_mean(x, axis=1, keepdims=True)
        matrix = tf.reshape(tf.einsum("bpi,bpj->bij", x, x) / (height * width), (batch, channels * channels))
        rows, columns = np.triu_indices(channels)
        return tf.gather(matrix, rows * channels + columns, axis=1).numpy()

    images = source.images.map(lambda encoded: decode_and_resize(encoded, 224, "squash"), num_parallel_calls=-1)
    parts = {key: [] for key in ("pooled", "moments", *LAYERS)}
    for batch in tqdm(images.batch(32).prefetch(2), total=-(-len(source) // 32), desc=f"features {path.stem}"):
        outputs = model(tf.cast(batch, tf.float32), training=False)
        parts["pooled"].append(np.asarray(outputs[0]))
        parts["moments"].append(np.asarray(outputs[1]))
        for name, feature_map in zip(LAYERS, outputs[2:], strict=True):
            parts[name].append(covariance(feature_map, projections.get(name)))
    labelled = {f"y_{head}": source.labels[head] for head in HEADS}
    np.savez(path, **{key: np.concatenate(value) for key, value in parts.items()}, **labelled)


def block(features, key: str) -> np.ndarray:
    values = features[key].astype(np.float64)
    return values if key in ("pooled", "moments") else np.sign(values) * np.sqrt(np.abs(values))  # signed sqrt


def sample_weights(y: np.ndarray, painters: np.ndarray, weighting: str, alpha: float) -> np.ndarray:
    """Per image n^(alpha - 1) for its painter's n images (in its class, with `painter+class`); then every class
    gets the same total weight (the probe's `balanced`); mean weight 1."""
    weights = np.ones(len(y))
    if weighting != "image":
        keys = np.char.add(painters, np.char.add("|", y.astype(str))) if weighting == "painter+class" else painters
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        weights = counts[inverse] ** (alpha - 1.0)
    _, classes = np.unique(y, return_inverse=True)
    weights = weights / np.bincount(classes, weights=weights)[classes]
    return weights * len(y) / weights.sum()


def score_variant(train, validation, painters, blocks, weighting, alpha) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([block(train, key) for key in blocks], axis=1)
    x_val = np.concatenate([block(validation, key) for key in blocks], axis=1)
    scaler = StandardScaler().fit(x)
    z, z_val = scaler.transform(x), scaler.transform(x_val)
    rows = []
    for head in HEADS:
        y, y_val = train[f"y_{head}"], validation[f"y_{head}"]
        known, known_val = y >= 0, y_val >= 0
        weights = sample_weights(y[known], painters[known], weighting, alpha)
        regression = LogisticRegression(max_iter=3000, tol=1e-4, warm_start=True)
        started, best = time.monotonic(), None
        for C in C_GRID:
            regression.set_params(C=C).fit(z[known], y[known], sample_weight=weights)
            predicted = regression.predict(z_val[known_val])
            balanced = balanced_accuracy_score(y_val[known_val], predicted)
            if best is None or balanced > best["balanced_accuracy"]:
                best = {"C": C, "balanced_accuracy": balanced, "top1": accuracy_score(y_val[known_val], predicted)}
        rows.append(
            {"head": head, "n": int(known_val.sum()), "dimensions": x.shape[1], **best}
            | {"seconds": round(time.monotonic() - started, 1)}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("runs/probe_variants"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/probe_variants"))
    args = parser.parse_args(argv)
    from artnet.config import load_config
    from artnet.data.sources import load_sources

    sources = load_sources(load_config(RECIPE))
    args.cache.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        if not (args.cache / f"{split}.npz").is_file():
            extract(sources[split], args.cache / f"{split}.npz")
    train, validation = np.load(args.cache / "train.npz"), np.load(args.cache / "validation.npz")
    painters = sources["train"].painters
    rows = []
    for name, (blocks, weighting, alpha) in VARIANTS.items():
        for row in score_variant(train, validation, painters, blocks, weighting, alpha):
            rows.append({"variant": name, **row})
            print(rows[-1], flush=True)
    command = shlex.join([".venv/bin/python", "experiments/probe_variants.py", *(argv or sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Probe variants: second-order style features and painter weighting (validation split only)",
        "",
        "- data: ../shared/wikiart-sample split by painter (the cpu recipe's split); train 110 painters, "
        "validation 25 others; EfficientNet-Lite0 (ImageNet), 224 px, squash, one plain view per image",
        "- each head: its C chosen on validation balanced accuracy over " + ", ".join(f"{c:g}" for c in C_GRID),
        f"- command: `{command}`",
        "",
        "| variant | dims | school bal. % | timeframe bal. % | type bal. % | mean bal. % | school top-1 % | "
        "timeframe top-1 % | type top-1 % | fit s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in VARIANTS:
        by_head = {row["head"]: row for row in rows if row["variant"] == name}
        balanced = [100 * by_head[head]["balanced_accuracy"] for head in HEADS]
        top1 = [100 * by_head[head]["top1"] for head in HEADS]
        seconds = sum(by_head[head]["seconds"] for head in HEADS)
        lines.append(
            f"| {name} | {by_head['school']['dimensions']} | "
            + " | ".join(f"{value:.1f}" for value in balanced)
            + f" | **{np.mean(balanced):.1f}** | "
            + " | ".join(f"{value:.1f}" for value in top1)
            + f" | {seconds:.0f} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
