"""The full recipe, the headline: NASNetLarge at 331 px with Keras ImageNet weights on the whole WGA collection.

    .venv/bin/artnet train --config experiments/configs/full.py:multihead --workdir runs/full/multihead   # GPUs
    .venv/bin/artnet train --config experiments/configs/full.py:multihead,split=random \
        --workdir runs/full_random/multihead
    # several machines (TF_CONFIG on each, or under srun; the workdir on shared storage; README "Training on
    # several machines"; the probe is a one-machine fit, so the heads train by epochs there):
    .venv/bin/artnet train --config experiments/configs/full.py:multihead --workdir /shared/runs/full_mw \
        --set strategy=multi_worker --set heads_from=epochs

`split=artist` (default: `wga/artist`, author-disjoint) or `split=random` (`wga/random`, image-level, comparable
with the 2020 report and SemArt). The 2020 report's recipe: SGD, momentum 0.88, lr 2.5e-4 with cosine decay,
batch 8 per replica, early stopping on validation loss; two phases, mixed precision and MirroredStrategy over
the GPUs present. Needs a GPU machine with internet (for the ImageNet weights) and a built dataset.

What won the cpu recipe search (experiments/results/recipe_search.md), scaled up: the heads also see the style
statistics (per-channel mean and std) of the ends of NASNetLarge's stem and first two cell stages, and start as
the linear probe on those frozen features (`heads_from=probe`: one backbone pass over train + validation into the
feature cache, then scikit-learn); the whole network then fine-tunes on images, and is kept only if that raises
the mean validation balanced accuracy. Unlike the cpu recipe, the style layers lie in the part that fine-tunes:
their statistics train with it.
"""

from __future__ import annotations

import os

from artnet.config import ARMS, Augment, DataConfig, TrainConfig, parse_arm

WGA_DATA_DIR = os.environ.get("ARTNET_DATA_DIR", "data/tfds")
SPLITS = ("artist", "random")
# The ends of the stem (42 px, 336 channels) and of the first two cell stages (42 px, 1008; 21 px, 2016): 6,720
# style statistics beside the 4,032 pooled features. The last stage's own end is what the pooling sees.
STYLE_LAYERS = ("reduction_concat_stem_2", "normal_concat_5", "normal_concat_12")


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
        style_layers=STYLE_LAYERS,
        heads_from="probe",
        early_stopping_patience=4,
        precision="auto",
        strategy="auto",
        seed=0,
    )
