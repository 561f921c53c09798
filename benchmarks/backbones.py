"""Backbone benchmark: parameters, forward and training-step speed of each registered backbone with three heads.

    .venv/bin/python benchmarks/backbones.py                       # every backbone, float32 and mixed_bfloat16
    .venv/bin/python benchmarks/backbones.py --backbones tiny efficientnet_lite0 --precisions float32

Random weights (no downloads: the speed of a network does not depend on its weights), random images at each
backbone's own size, batch 8. Each figure is the median of `--steps` timed steps after one untimed step (which
builds and traces the graph; its time is reported separately as `first step s`). On a GPU machine the same
script gives the mixed_float16 vs float32 comparison (`--precisions float32 mixed_float16`).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from artnet.models.artnet import ArtNet  # noqa: E402
from artnet.models.backbones import REGISTRY  # noqa: E402

ORDER = (
    "tiny",
    "efficientnet_lite0",
    "efficientnet_lite2",
    "nasnet_mobile",
    "efficientnetv2_b0",
    "convnext_tiny",
    "nasnet_large",
)


def measure(backbone: str, precision: str, batch: int, steps: int) -> dict:
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = ArtNet(backbone, backbone_weights=None)
        model.compile(
            optimizer=keras.optimizers.SGD(1e-4, momentum=0.88),
            loss={h: "sparse_categorical_crossentropy" for h in model.heads},
        )
        rng = np.random.default_rng(0)
        size = model.image_size
        x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
        y = {h: tf.zeros(batch, tf.int64) for h in model.heads}
        forward = tf.function(lambda images: model(images, training=False), jit_compile=False)

        started = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - started
        train_times, forward_times = [], []
        forward(x)
        for _ in range(steps):
            started = time.perf_counter()
            model.train_on_batch(x, y)
            train_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            forward(x)
            forward_times.append(time.perf_counter() - started)
        return {
            "backbone": backbone,
            "precision": precision,
            "size": size,
            "parameters": model.count_params(),
            "first step s": first,
            "train step s": float(np.median(train_times)),
            "train img/s": batch / float(np.median(train_times)),
            "forward ms/img": 1000 * float(np.median(forward_times)) / batch,
        }
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=[b for b in ORDER if b in REGISTRY])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    devices = ", ".join(d.device_type for d in tf.config.list_physical_devices())
    print(f"devices: {devices}; batch {args.batch}; median of {args.steps} steps\n")
    print("| backbone | precision | px | parameters | first step s | train step s | train img/s | forward ms/img |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backbone in args.backbones:
        for precision in args.precisions:
            row = measure(backbone, precision, args.batch, args.steps)
            print(
                f"| {row['backbone']} | {row['precision']} | {row['size']} | {row['parameters'] / 1e6:.2f} M | "
                f"{row['first step s']:.1f} | {row['train step s']:.2f} | {row['train img/s']:.1f} | "
                f"{row['forward ms/img']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
