"""Serving benchmark: one three-head ArtNet vs three single-head models on the same backbone.

    .venv/bin/python benchmarks/serving.py --backbone nasnet_large        # the headline model (slow on a CPU)
    .venv/bin/python benchmarks/serving.py --backbone efficientnet_lite0

Random weights (speed does not depend on them), random images at the backbone's size. For batch 1 and 8: p50 and
p95 latency of a request, images/s, and the ratio three single-head passes / one three-head pass. The two setups
run interleaved request by request, so that a noisy machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from artnet import labels  # noqa: E402
from artnet.models.artnet import ArtNet  # noqa: E402


def compiled(model):
    return tf.function(lambda images: model(images, training=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per batch size and setup")
    args = parser.parse_args()

    multi = ArtNet(args.backbone, backbone_weights=None)
    singles = [ArtNet(args.backbone, heads=(head,), backbone_weights=None) for head in labels.HEADS]
    size = multi.image_size
    multi_fn, single_fns = compiled(multi), [compiled(model) for model in singles]
    print(
        f"{args.backbone} at {size} px: three-head {multi.count_params() / 1e6:.1f} M parameters, "
        f"three single-head models {sum(m.count_params() for m in singles) / 1e6:.1f} M in all\n"
    )
    print("| batch | setup | p50 ms | p95 ms | images/s | ratio |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
        multi_fn(images)
        for fn in single_fns:
            fn(images)
        times = {"one three-head model": [], "three single-head models": []}
        for _ in range(args.requests):
            started = time.perf_counter()
            multi_fn(images)["school"].numpy()
            times["one three-head model"].append(time.perf_counter() - started)
            started = time.perf_counter()
            for fn in single_fns:
                next(iter(fn(images).values())).numpy()
            times["three single-head models"].append(time.perf_counter() - started)
        p50 = {name: float(np.median(values)) for name, values in times.items()}
        for name, values in times.items():
            ratio = p50[name] / p50["one three-head model"]
            print(
                f"| {batch} | {name} | {1000 * p50[name]:.1f} | {1000 * np.percentile(values, 95):.1f} | "
                f"{batch / p50[name]:.1f} | {ratio:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
