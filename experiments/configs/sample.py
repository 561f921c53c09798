"""The sample recipe, the README's main job: the cpu recipe's backbone, optimiser and augmentation on `wga/sample`.

    .venv/bin/artnet train --config experiments/configs/sample.py:multihead --workdir runs/sample

Heads only (8 epochs on the frozen backbone): its ~70 training paintings are too few to fine-tune; a minute on
a CPU.
"""

from __future__ import annotations

import os

from artnet.config import DataConfig, TrainConfig, parse_arm

from . import cpu

WGA_DATA_DIR = os.environ.get("ARTNET_DATA_DIR", "data/tfds")


def get_config(arg: str | None = None) -> TrainConfig:
    arm, options = parse_arm(arg)
    if options:
        raise ValueError(f"sample recipe: takes no options; got {arg!r}")
    config = cpu.get_config(arm)
    config.description = f"sample recipe, {arm}, wga/sample"
    config.data = DataConfig(
        source="wga", wga_config="sample", data_dir=WGA_DATA_DIR, batch_size=16, augment=config.data.augment
    )
    config.epochs = config.head_epochs = 8
    return config
