"""What the four arms share: identical backbone, data, budget, augmentation and seed; they differ only in heads.

Variants (the part after `:` in `--config file.py:variant`):
- `cpu`: EfficientNet-Lite0 with its offline ImageNet weights on the real WikiArt sample
  (../shared/wikiart-sample) split 70/15/15 by painter: 2 epochs of heads on the frozen backbone, then 2
  epochs fine-tuning its last two stages (block6a on, 2.7 of 3.4 M weights). ~12 minutes per arm on 2 cores.
  The fine-tuning is what makes the arms differ: with the whole backbone frozen the heads are independent
  linear classifiers and multi-head training is exactly three single-head trainings.
- `cpu_random`: the same, split by image (file name): the leakage comparison.
- `full`: the headline. NASNetLarge at 331 px with Keras ImageNet weights on `wga/artist`, the 2020 report's
  recipe (SGD, momentum 0.88, lr 2.5e-4 with cosine decay, batch 8 per replica, early stopping on validation
  loss), two phases, mixed precision and MirroredStrategy over the GPUs present. GPU machine with internet.
- `full_random`: the same on `wga/random` (image-level, comparable with the 2020 report and SemArt).
- `sample`: the README's main job: the `cpu` backbone, optimiser and augmentation on `wga/sample`, heads only
  (8 epochs on the frozen backbone: its ~70 training paintings are too few to fine-tune; a minute on a CPU).
"""

from __future__ import annotations

import os

from artnet.config import DataConfig, TrainConfig
from artnet.data import Augment

WIKIART = os.environ.get("ARTNET_WIKIART_DIR", "../shared/wikiart-sample")
WGA_DATA_DIR = os.environ.get("ARTNET_DATA_DIR", "data/tfds")
VARIANTS = ("cpu", "cpu_random", "full", "full_random", "sample")


def arm(heads: tuple[str, ...], variant: str | None, description: str) -> TrainConfig:
    variant = variant or "cpu"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if variant == "sample":
        config = arm(heads, "cpu", description)
        config.data = DataConfig(
            source="wga", wga_config="sample", data_dir=WGA_DATA_DIR, batch_size=16, augment=config.data.augment
        )
        config.epochs = config.head_epochs = 8
        return config
    if variant.startswith("cpu"):
        return TrainConfig(
            description=description,
            backbone="efficientnet_lite0",
            backbone_weights="imagenet",
            heads=heads,
            dropout=0.3,
            data=DataConfig(
                source="folder",
                folder=WIKIART,
                split_by="author" if variant == "cpu" else "file",
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
    return TrainConfig(
        description=description,
        backbone="nasnet_large",
        backbone_weights="imagenet",
        image_size=331,
        heads=heads,
        dropout=0.5,
        data=DataConfig(
            source="wga",
            wga_config="artist" if variant == "full" else "random",
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
