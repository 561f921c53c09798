"""The full recipe, the headline: NASNetLarge at 331 px with Keras ImageNet weights on the whole WGA collection.

    .venv/bin/artnet train --config experiments/configs/full.py:multihead --workdir runs/full/multihead   # GPUs
    .venv/bin/artnet train --config experiments/configs/full.py:multihead,split=random \
        --workdir runs/full_random/multihead
    # several machines (TF_CONFIG on each, or under srun; the workdir on shared storage; README "Training on
    # several machines"):
    .venv/bin/artnet train --config experiments/configs/full.py:multihead --workdir /shared/runs/full_mw \
        --set strategy=multi_worker

`split=artist` (default: `wga/artist`, author-disjoint) or `split=random` (`wga/random`, image-level, comparable
with the 2020 report and SemArt). The 2020 report's recipe: SGD, momentum 0.88, lr 2.5e-4 with cosine decay,
batch 8 per replica, early stopping on validation loss; two phases, mixed precision and MirroredStrategy over
the GPUs present. Needs a GPU machine with internet (for the ImageNet weights) and a built dataset.
"""

from __future__ import annotations

import os

from artnet.config import ARMS, Augment, DataConfig, TrainConfig, parse_arm

WGA_DATA_DIR = os.environ.get("ARTNET_DATA_DIR", "data/tfds")
SPLITS = ("artist", "random")


def get_config(arg: str | None = None) -> TrainConfig:
    arm, options = parse_arm(arg)
    split = options.pop("split", "artist")
    if options or split not in SPLITS:
        raise ValueError(f"full recipe: options are split={'|'.join(SPLITS)}; got {arg!r}")
    return TrainConfig(
        description=f"full recipe, {arm}, wga/{split}",
        backbone="nasnet_large",
        backbone_weights="imagenet",
        image_size=331,
        heads=ARMS[arm],
        dropout=0.5,
        data=DataConfig(
            source="wga",
            wga_config=split,
            data_dir=WGA_DATA_DIR,
            batch_size=8,
            cache=False,  # 30k images at 331 px do not fit in memory as uint8 on most machines
            augment=Augment(flip=True, rotation_degrees=10, shift=0.1, zoom=0.1),
        ),
        optimizer="sgd",
        momentum=0.88,
        learning_rate=2.5e-4,
        fine_tune_learning_rate=1e-4,
        schedule="cosine",
        epochs=30,
        head_epochs=2,
        unfreeze="all",
        early_stopping_patience=4,
        precision="auto",
        strategy="auto",
        seed=0,
    )
