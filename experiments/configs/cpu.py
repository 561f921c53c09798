"""The cpu recipe: EfficientNet-Lite0 (offline ImageNet weights) on the real WikiArt sample, on 2 CPU cores.

    .venv/bin/artnet train --config experiments/configs/cpu.py:multihead --workdir runs/cpu/multihead
    .venv/bin/artnet train --config experiments/configs/cpu.py:single_school --workdir runs/cpu/single_school
    .venv/bin/artnet train --config experiments/configs/cpu.py:multihead,split=image --workdir runs/cpu_random/multihead

Data: ../shared/wikiart-sample (or $ARTNET_WIKIART_DIR) split 70/15/15 by painter, group-stratified (`split=painter`,
default) or by image file (`split=image`, the leakage comparison). Trained from the feature cache (2 views: each
image and its mirror): heads on the frozen backbone's pooled features for up to 15 epochs, then the last stage
(block7a and the top convolution, 1.0 of 3.4 M weights) fine-tuned for up to 12 more, early stopping on
validation loss (patience 2, best weights kept). About 10 minutes on 2 cores, most of it the one-off feature
extraction.

Chosen on validation (experiments/results/recipe_search.md): the best mean balanced accuracy of the fine-tuned
variants in the first search (57.8 %; 57.5 % when rerun for the ordinal comparison: training on 2 threads is not
bit-reproducible, and the variants lie within 0.3 points of each other except class weights ^0.5 and the
ordinal timeframe loss, both worse), but NOT better than the linear probe on the same validation images
(58.7 %): on this sample, fine-tuning has not yet earned its cost over a logistic regression on frozen features.
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
            feature_views=2,
            augment=Augment(flip=True, rotation_degrees=10, shift=0.1, zoom=0.1),
        ),
        optimizer="adam",
        learning_rate=1e-3,
        schedule="cosine",
        epochs=27,
        head_epochs=15,
        unfreeze="block7a_expand_conv",  # the last stage: ~40 s per epoch from the cache on 2 cores
        fine_tune_learning_rate=1e-4,
        early_stopping_patience=2,
        precision="float32",
        strategy="none",
        seed=0,
    )
