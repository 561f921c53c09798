"""The cpu recipe: EfficientNet-Lite0 (offline ImageNet weights) on the real WikiArt sample, on 2 CPU cores.

    .venv/bin/artnet train --config experiments/configs/cpu.py:multihead --workdir runs/cpu/multihead
    .venv/bin/artnet train --config experiments/configs/cpu.py:single_school --workdir runs/cpu/single_school
    .venv/bin/artnet train --config experiments/configs/cpu.py:multihead,split=image --workdir runs/cpu_random/multihead

Data: ../shared/wikiart-sample (or $ARTNET_WIKIART_DIR) split 70/15/15 by painter (`split=painter`, default) or
by image file (`split=image`, the leakage comparison). 2 epochs of heads on the frozen backbone, then 2 epochs
fine-tuning its last two stages (block6a on, 2.7 of 3.4 M weights). ~12 minutes per arm on 2 cores. The
fine-tuning is what makes the arms differ: with the whole backbone frozen the heads are independent linear
classifiers and multi-head training is exactly three single-head trainings.

Measured (painter split; experiments/results/wikiart_cpu.md): each head of `multihead` within the 95 % interval
of its single-head arm, at a third of the inference cost; balanced accuracy well above chance on every head,
but top-1 below the majority baseline for school and timeframe (class weights trade one for the other).
"""

from __future__ import annotations

import os

from artnet.config import ARMS, Augment, DataConfig, TrainConfig, parse_arm

WIKIART = os.environ.get("ARTNET_WIKIART_DIR", "../shared/wikiart-sample")
SPLITS = {"painter": "author", "image": "file"}


def get_config(arg: str | None = None) -> TrainConfig:
    arm, options = parse_arm(arg)
    split = options.pop("split", "painter")
    if options or split not in SPLITS:
        raise ValueError(f"cpu recipe: options are split={'|'.join(SPLITS)}; got {arg!r}")
    return TrainConfig(
        description=f"cpu recipe, {arm}, split by {split}",
        backbone="efficientnet_lite0",
        backbone_weights="imagenet",
        heads=ARMS[arm],
        dropout=0.3,
        data=DataConfig(
            source="folder",
            folder=WIKIART,
            split_by=SPLITS[split],
            batch_size=32,
            cache=True,
            augment=Augment(flip=True, rotation_degrees=10, shift=0.1, zoom=0.1),
        ),
        optimizer="adam",
        learning_rate=1e-3,
        schedule="cosine",
        epochs=4,
        head_epochs=2,
        unfreeze="block6a_expand_conv",  # the last two stages: cheap to back-propagate at 7x7 on a CPU
        fine_tune_learning_rate=1e-4,
        early_stopping_patience=0,
        precision="float32",
        strategy="none",
        seed=0,
    )
